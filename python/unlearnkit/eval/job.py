"""``unlearnkit.eval.run``: every feature-space metric of forget/retain/test feature banks.

Two streamed passes over each bank (see ``docs/eval.md``):

1. **scan**: validate every chunk (shape, NaN/Inf), count labels, accumulate the retain
   bank's float64 moments, copy out the seeded sample rows (k-means fit rows, the probe's
   training rows, the k-NN query rows).
2. **fit** (driver, in memory): retain eigenspace (eigh of the merged second moment /
   covariance), logistic-regression probe, one k-means per set (k = number of classes).
3. **score**: probe hits on every row, dimensional-alignment sum on every row, nearest-
   centroid assignment of every row into a contingency table (when k-means was fit on a
   sample), k-NN candidates of the query rows in the retain and test banks.
4. **attack**: k-NN membership features of the query rows, and the attack score.

Shards are runs of whole chunks; partial results are merged in shard order, so the single-
process and Ray paths (``ray=``) add the same numbers in the same order.

Each chunk of a pass is one call of the Rust engine (``_core.eval_chunk``, see
``unlearnkit.eval.shards``): the chunk as stored (float16 upcast inside the engine, slab by
slab), every per-row metric and the k-NN search of all query groups at once, on all cores with
the GIL released, while a reader thread reads the next chunk. The result's ``timings`` says
where the time went (per stage wall / CPU seconds, CPU utilisation, reader wait, engine time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import pathlib
import tempfile
import time
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from . import _engine as E
from .memory import Plan, format_size, make_plan, parse_size, peak_rss, reset_peak_rss
from .options import _ALIASES, Config, EvalConfig, option_fields  # noqa: F401 - Config: the old name
from .readers import Bank, BankSpec, open_bank, resolve_spec
from .shards import KnnQueries, ScoreModels, scan_shard, score_shard, shard_ranges

if TYPE_CHECKING:
    from .distributed import RayExecutor

__all__ = ["SETS", "EvalConfig", "format_table", "option_fields", "run"]

SETS = ("forget", "retain", "test")
_FEW_QUERIES = 10  # fewer forget queries than this: knn_mia moves in steps above 0.1, a caveat says so
_PURPOSES = {"kmeans": 1, "probe": 2, "knn": 3}


# ----------------------------------------------------------------------------------------------
# Executors: who runs the shard functions


class LocalExecutor:
    """Runs shard tasks one after another in this process."""

    name = "local"

    def put(self, obj):
        return obj

    def map(self, fn, tasks: list[tuple], bar) -> list[dict]:
        out = []
        for args in tasks:
            out.append(fn(*args, on_rows=bar.update))
        return out

    def describe(self) -> dict | None:
        return None

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# Helpers


def _check_out(out) -> pathlib.Path | None:
    """Fails early (before any work) when the result file could not be written."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out: expected a file path, got {type(out).__name__}")
    path = pathlib.Path(out).expanduser()
    if path.is_dir():
        raise ValueError(f"out: expected a file path, got the directory {path}")
    from ..io import resolve_target

    target = resolve_target(path, "out")  # not a device, FIFO or socket; through a symbolic link
    parent = target.parent
    if not parent.exists():
        raise FileNotFoundError(f"out: the folder {parent} does not exist (for {path})")
    if not parent.is_dir():
        raise ValueError(f"out: {parent} is not a folder (for {path})")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"out: cannot write in the folder {parent} ({exc.strerror or exc})") from None
    return path


def _sample(n: int, size: int, seed: int, set_id: int, purpose: str) -> np.ndarray:
    """Sorted row indices: all rows if n <= size, else a seeded sample without replacement."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, set_id, _PURPOSES[purpose]])
    return np.sort(rng.choice(n, size, replace=False)).astype(np.int64)


def _specs(prefix: str, f, r, t, bank, keys: dict) -> dict[str, BankSpec] | None:
    names = {s: f"{prefix}{s}" for s in SETS}
    given = {s: v for s, v in zip(SETS, (f, r, t)) if v is not None}
    bank_name = f"{prefix}bank"
    if bank is not None:
        if given:
            raise ValueError(f"{bank_name}: expected either one file with a split column or separate "
                             f"{'/'.join(names.values())} banks, got both")
        return {s: resolve_spec(bank, names[s], split=s, **keys) for s in SETS}
    if not given:
        return None
    missing = [names[s] for s in SETS if s not in given]
    if missing:
        raise ValueError(f"{missing[0]}: expected a bank for each of {', '.join(names.values())}, "
                         f"missing {', '.join(missing)}")
    return {s: resolve_spec(given[s], names[s], **keys) for s in SETS}


class _Stages:
    """Wall time, rows, vectors/s and peak RSS of each stage; a tqdm bar per streamed stage."""

    def __init__(self, progress: bool):
        self.progress = progress
        self.records: dict[str, dict] = {}
        self.cores = _cores()
        self.overall = peak_rss()  # folded in before every reset: the peak since the job started

    def peak(self) -> int:
        self.overall = max(self.overall, peak_rss())
        return self.overall

    @contextlib.contextmanager
    def stage(self, name: str, rows: int | None = None, steps: int | None = None):
        """A stage streaming ``rows`` vectors (bar in vectors) or made of ``steps`` fits."""
        from tqdm.auto import tqdm

        self.peak()
        reset_peak_rss()
        t0, c0 = time.perf_counter(), time.process_time()
        total, unit = (rows, "vec") if rows is not None else (steps, "step")
        bar = tqdm(total=total, desc=name, unit=unit, unit_scale=rows is not None, disable=not self.progress,
                   leave=False, dynamic_ncols=True, mininterval=0.5)
        rec: dict[str, float | None] = {"rows": rows}
        try:
            yield bar, rec
        finally:
            bar.close()
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        rec.update(seconds=dt, cpu_seconds=cpu, cpu_utilisation=cpu / (dt * self.cores) if dt > 0 else 0.0,
                   peak_rss_bytes=peak_rss())
        self.peak()
        if rows:
            rec["vectors_per_s"] = rows / dt if dt > 0 else float("inf")
        self.records[name] = rec


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _import_libraries(banks: list, ray) -> float:
    """Imports what the job will use, so that the memory plan measures what the process really
    holds (torch comes in through ``unlearnkit.metrics``). Returns the seconds it took."""
    t0 = time.perf_counter()
    import sklearn.linear_model  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import threadpoolctl  # noqa: F401
    import tqdm.auto  # noqa: F401

    from .. import metrics  # noqa: F401
    from ..metrics import knn_membership  # noqa: F401

    if any(b.spec.format == "parquet" for b in banks):
        import pyarrow.parquet  # noqa: F401
    if ray:
        import ray as _ray  # noqa: F401
    return time.perf_counter() - t0


def _timings(stages: _Stages, imports_s: float, total_s: float) -> dict:
    """Where the time went: per stage wall / CPU seconds, CPU utilisation over the cores this
    process may run on, and for streamed stages the seconds waiting for the reader, in the
    engine and in Python (summed over shards; on Ray, worker seconds)."""
    keys = ("seconds", "cpu_seconds", "cpu_utilisation", "read_wait_s", "engine_s", "python_s", "vectors_per_s")
    out = {"cores": stages.cores, "imports_s": imports_s, "total_s": total_s,
           "stages": {name: {k: r[k] for k in keys if k in r} for name, r in stages.records.items()}}
    wall = sum(r["seconds"] for r in stages.records.values())
    cpu = sum(r["cpu_seconds"] for r in stages.records.values())
    out["stages_total"] = {"seconds": wall, "cpu_seconds": cpu,
                           "cpu_utilisation": cpu / (wall * stages.cores) if wall > 0 else 0.0}
    return out


# ----------------------------------------------------------------------------------------------
# One evaluation (the unlearned model's banks, or the gold model's)


class _KMeansInfo(TypedDict, total=False):
    """``details["kmeans"][set]``: the k-means fit of one set, and its clustering scores."""

    n_clusters: int
    fit_rows: int
    sampled: bool
    inertia: float
    n_iter: int
    scores: dict[str, float]


def _evaluate(banks: dict[str, Bank], cfg: Config, plan: Plan, ex_, stages: _Stages, tag: str) -> dict:
    n = {s: banks[s].n_rows for s in SETS}
    for s in SETS:
        if n[s] < 1:
            raise ValueError(f"{banks[s].name}: expected at least one row, got an empty bank")
    for s in ("retain", "test"):
        if n[s] <= cfg.knn_k:
            raise ValueError(f"{banks[s].name}: expected more than knn_k={cfg.knn_k} rows for the k-NN "
                             f"membership features, got {n[s]}")
    caveats: list[str] = []
    idx = {s: {"kmeans": _sample(n[s], plan.kmeans_rows, cfg.seed, i, "kmeans")} for i, s in enumerate(SETS)}
    idx["retain"]["probe"] = _sample(n["retain"], plan.probe_rows, cfg.seed, 1, "probe")
    idx["forget"]["knn"] = _sample(n["forget"], plan.knn_queries, cfg.seed, 0, "knn")
    idx["retain"]["knn"], idx["test"]["knn"] = _knn_examples(n["retain"], n["test"], plan.knn_queries, cfg.seed)
    want = {s: np.unique(np.concatenate(list(idx[s].values()))) for s in SETS}

    # ---- pass 1: scan
    with stages.stage(f"{tag}scan", rows=sum(n.values())) as (bar, rec):
        tasks, owners = [], []
        for s in SETS:
            for lo, hi in shard_ranges(n[s], plan.shard_rows):
                w = want[s][(want[s] >= lo) & (want[s] < hi)]
                tasks.append((banks[s], lo, hi, plan.chunk_rows, w, s == "retain"))
                owners.append(s)
        parts = ex_.map(scan_shard, tasks, bar)
        _add_timing(rec, parts)
    labels: dict[str, dict[int, int]] = {s: {} for s in SETS}  # label -> count, per set
    xs: dict[str, list[np.ndarray]] = {s: [] for s in SETS}
    ys: dict[str, list[np.ndarray]] = {s: [] for s in SETS}
    mom = None
    for s, p in zip(owners, parts):
        for a, c in p["labels"].items():
            labels[s][a] = labels[s].get(a, 0) + c
        xs[s].append(p["x"])
        ys[s].append(p["y"])
        if p["moments"] is not None:
            mom = p["moments"] if mom is None else mom.merge(p["moments"])
    sample = {s: (np.concatenate(xs[s]), np.concatenate(ys[s])) for s in SETS}
    del xs, ys, parts

    def rows_of(s, purpose):  # sample rows of one purpose, in index order
        pos = np.searchsorted(want[s], idx[s][purpose])
        return sample[s][0][pos], sample[s][1][pos]

    # ---- fit: eigenspace, probe, k-means
    classes = np.array(sorted(set().union(*[labels[s].keys() for s in SETS])), dtype=np.int64)
    n_classes = cfg.n_classes or len(classes)
    details: dict[str, Any] = {"rows": dict(n), "classes": classes.tolist(),
                               "label_counts": {s: {str(a): c for a, c in sorted(labels[s].items())} for s in SETS}}
    with stages.stage(f"{tag}fit", steps=2 + len(SETS)) as (bar, rec):
        d = banks["retain"].dim
        assert mom is not None, "the retain bank (at least one row) carries the moments"
        s_mat = mom.m2 / mom.n if cfg.center else mom.m2 / mom.n + np.outer(mom.mean, mom.mean)
        lam, u = np.linalg.eigh(s_mat)
        lam, u = lam[::-1], u[:, ::-1]
        if cfg.da_k is not None:
            if not 1 <= cfg.da_k <= d:
                raise ValueError(f"da_k: expected an int in [1, {d}] (the feature dimension), got {cfg.da_k}")
            kk = cfg.da_k
        else:
            kk = _choose_k(lam, cfg.energy)
        total = float(np.clip(lam, 0, None).sum())
        basis = np.ascontiguousarray(u[:, :kk])
        complement = np.ascontiguousarray(u[:, kk:]) if kk > d // 2 else None
        details["da"] = {"k": kk, "energy_held": float(np.clip(lam[:kk], 0, None).sum()) / total if total > 0 else 0.0,
                         "center": cfg.center}
        bar.update()

        xp, yp = rows_of("retain", "probe")
        if len(np.unique(yp)) < 2:
            raise ValueError(f"{banks['retain'].name}: the linear probe needs at least two classes in the retain "
                             f"bank, got {np.unique(yp).tolist()}")
        # the probe (scikit-learn, one BLAS thread) trains in a thread while the engine fits the
        # k-means models on the other core; neither result depends on the other or on the timing
        import concurrent.futures

        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="unlearnkit-eval-probe")
        probe_future = pool.submit(_fit_probe, xp, yp, cfg)
        details["probe"] = {"train_rows": int(len(yp)), "sampled": bool(len(yp) < n["retain"])}
        del xp, yp

        centroids: dict[str, np.ndarray] = {}
        tables: dict[str, np.ndarray] = {}
        km_info: dict[str, _KMeansInfo] = {}
        for s in SETS:
            xk, yk = rows_of(s, "kmeans")
            k_s = min(n_classes, len(xk))
            if k_s < n_classes:  # only with the default k (an explicit one was checked above)
                caveats.append(f"nmi_{s}, pair_f1_{s}, matched_f1_{s}: the {banks[s].name} bank has {len(xk)} "
                               f"row(s), fewer than the {n_classes} classes, so k-means made {k_s} cluster(s); "
                               f"these scores say little")
            elif len(labels[s]) == 1:
                caveats.append(f"nmi_{s}: the {banks[s].name} bank holds a single class, so its NMI is constant "
                               f"by construction (it says nothing about the features)")
            km = E.fit_kmeans(xk, k_s, n_init=cfg.kmeans_n_init, max_iter=cfg.kmeans_max_iter, tol=cfg.kmeans_tol,
                              seed=cfg.seed)
            full = len(xk) == n[s]
            km_info[s] = {"n_clusters": k_s, "fit_rows": int(len(xk)), "sampled": not full,
                          "inertia": float(km.inertia), "n_iter": int(km.n_iter)}
            if full:  # the fit saw every row: its own labels are the clustering
                tables[s] = _table(classes, yk, np.asarray(km.labels, dtype=np.int64), k_s)
            else:
                centroids[s] = np.ascontiguousarray(km.centroids, dtype=banks[s].compute_dtype)
            bar.update()
        details["kmeans"] = km_info
        try:
            probe = probe_future.result()
        finally:
            pool.shutdown(wait=True)
        bar.update()

        queries = {s: rows_of(s, "knn") for s in SETS}
        details["knn"] = {"k": cfg.knn_k, "queries": {s: int(len(queries[s][1])) for s in SETS}}
        sample.clear()  # only the k-NN queries stay resident through pass 2
        del xk, yk

    # ---- pass 2: score
    mean = mom.mean if cfg.center else None
    models = {}
    for s in SETS:
        knn_q = None
        if s in ("retain", "test"):  # the training bank and the held-out bank of the attack
            # every group's queries in one array: one GEMM sweep of this bank per chunk
            xq, ex, groups, at = [], [], {}, 0
            for q in SETS:
                rows_q = queries[q][0]
                groups[q] = slice(at, at + len(rows_q))
                at += len(rows_q)
                xq.append(rows_q)
                ex.append(idx[q]["knn"] if q == s else np.full(len(rows_q), -1, np.int64))
            knn_q = KnnQueries(np.ascontiguousarray(np.concatenate(xq), dtype=banks[s].compute_dtype),
                               np.ascontiguousarray(np.concatenate(ex), dtype=np.int64), groups)
        models[s] = ex_.put(ScoreModels(classes=classes, probe=probe, basis=basis, complement=complement,
                                            mean=mean, centroids=centroids.get(s), knn=knn_q, knn_k=cfg.knn_k,
                                            knn_labels=s == "retain", knn_block_rows=plan.knn_block_rows))
    with stages.stage(f"{tag}score", rows=sum(n.values())) as (bar, rec):
        score_tasks, owners = [], []
        for s in SETS:
            for lo, hi in shard_ranges(n[s], plan.shard_rows):
                score_tasks.append((banks[s], lo, hi, plan.chunk_rows, models[s]))
                owners.append(s)
        parts = ex_.map(score_shard, score_tasks, bar)
        _add_timing(rec, parts)

    out: dict[str, float] = {}
    correct = {s: 0 for s in SETS}
    da_sum = {s: 0.0 for s in SETS}
    da_zero = {s: 0 for s in SETS}
    knn = {b: {q: None for q in SETS} for b in ("retain", "test")}
    for s, p in zip(owners, parts):
        correct[s] += p["correct"]
        da_sum[s] += p["da_sum"]
        da_zero[s] += p["da_zero_rows"]
        if s in centroids:
            tables[s] = p["table"] if s not in tables else tables[s] + p["table"]
        for q, cand in p["knn"].items():
            knn[s][q] = cand if knn[s][q] is None else E.merge_candidates(knn[s][q], cand, cfg.knn_k)
    for s in SETS:
        out[f"da_{s}"] = da_sum[s] / n[s]
    for s in SETS:
        out[f"lp_{s}"] = correct[s] / n[s]
    for s in SETS:
        km_info[s]["scores"] = E.scores(tables[s])
    for key in ("nmi", "pair_f1", "matched_f1"):
        for s in SETS:
            out[f"{key}_{s}"] = km_info[s]["scores"][key]
    details["probe"]["correct"] = dict(correct)
    details["contingency"] = {s: tables[s].tolist() for s in SETS}
    details["da"]["zero_rows"] = dict(da_zero)
    caveats.extend(_degenerate_caveats(banks, n, labels, probe, da_zero, details["da"], cfg.center))

    # ---- attack: k-NN membership features and score
    with stages.stage(f"{tag}attack", steps=1) as (bar, _):
        mia = E.knn_mia_from_neighbours(knn["retain"], knn["test"], {q: queries[q][1] for q in SETS},
                                        k=cfg.knn_k, seed=cfg.seed)
        bar.update()
    out.update(mia["metrics"])
    details["knn"].update(mia["details"])
    n_q = len(queries["forget"][1])
    if n_q < _FEW_QUERIES:
        caveats.append(f"knn_mia: a fraction of only {n_q} forget row(s) (steps of {1 / n_q:.2g}), not an estimate; "
                       f"it needs tens of rows to mean something")
    return {"metrics": out, "details": details, "caveats": caveats}


def _add_timing(rec: dict, parts: list[dict]) -> None:
    """Sums the shards' read-wait / engine / Python seconds into a stage record."""
    for key in ("read_wait_s", "engine_s", "python_s"):
        rec[key] = float(sum(p.get("timing", {}).get(key, 0.0) for p in parts))


def _degenerate_caveats(banks: dict, n: dict, labels: dict, probe, da_zero: dict, da: dict, center: bool) -> list[str]:
    """Caveats for inputs that make a metric constant by construction."""
    out = []
    seen = set(np.asarray(probe[-1].classes_).tolist())
    for s in SETS:
        unseen = sum(c for a, c in labels[s].items() if a not in seen)
        name = banks[s].name
        if unseen == n[s]:
            out.append(f"lp_{s}: none of the {name} bank's classes ({_few(sorted(labels[s]))}) occur in the retain "
                       f"rows the probe was trained on, so lp_{s} is 0 by construction (it says nothing about the "
                       f"features)")
        elif unseen:
            out.append(f"lp_{s}: {unseen} of the {name} bank's {n[s]} rows have classes the probe never saw in the "
                       f"retain rows it was trained on; they count as errors")
    what = "equal to the retain mean" if center else "all zeros"
    if da.get("energy_held", 1.0) == 0.0:
        out.append("da_forget, da_retain, da_test: the retain bank's " + ("covariance" if center else "second moment")
                   + " is zero (every retain row " + ("is the same" if center else "is zero") + "), so there is no "
                   "eigenspace to align with; every alignment term is 0 by convention")
    for s in SETS:
        if da_zero[s] == n[s]:
            out.append(f"da_{s}: every row of the {banks[s].name} bank is {what}, so da_{s} is 0 by convention "
                       f"(|z - mu| = 0 has no direction); it says nothing about the features")
        elif da_zero[s]:
            out.append(f"da_{s}: {da_zero[s]} of the {banks[s].name} bank's {n[s]} rows are {what}; their alignment "
                       f"term counts as 0")
    return out


def _few(values: list, at_most: int = 5) -> str:
    head = ", ".join(map(str, values[:at_most]))
    return head + (f", ... ({len(values)} in all)" if len(values) > at_most else "")


@contextlib.contextmanager
def _blas_threads(n: int | None):
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n), user_api="blas"):
        yield


def _knn_examples(n_retain: int, n_test: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Member (retain) and non-member (test) query rows of the k-NN attack, drawn exactly as
    ``unlearnkit.metrics.knn_mia`` draws them with ``max_per_set=size``."""
    rng = np.random.default_rng(seed)
    n_ex = min(n_retain, n_test, size)
    mem = np.sort(rng.choice(n_retain, n_ex, replace=False)).astype(np.int64)
    non = np.sort(rng.choice(n_test, n_ex, replace=False)).astype(np.int64)
    return mem, non


def _choose_k(lam_desc: np.ndarray, energy: float) -> int:
    """Smallest k whose eigenvalues hold ``energy`` of the trace (as ``unlearnkit.losses.alignment``)."""
    vals = np.clip(lam_desc, 0, None)
    total = float(vals.sum())
    if total <= 0.0:
        return 1
    frac = np.cumsum(vals) / total
    return min(int((frac < energy - 1e-12).sum()) + 1, len(vals))


def _fit_probe(x: np.ndarray, y: np.ndarray, cfg: Config):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=cfg.probe_max_iter)).fit(x, y)


def _table(classes: np.ndarray, y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    t = np.zeros((len(classes), k), np.int64)
    np.add.at(t, (np.searchsorted(classes, y), pred), 1)
    return t


# ----------------------------------------------------------------------------------------------
# The public entry point


def run(forget=None, retain=None, test=None, *, config: EvalConfig | None = None, **options) -> dict:
    """Evaluates feature banks of the forget, retain and test sets (and of the gold model's).

    Args:
        forget, retain, test: a path (``.npy`` + labels file, a directory, ``.npz``,
            ``.safetensors``, ``.parquet``) or an in-memory ``(features, labels)`` pair.
        config: an :class:`EvalConfig` (default: its defaults).
        **options: any field of :class:`EvalConfig`, replacing the config's value (``k`` is
            accepted for ``da_k``). The main ones:

            - ``gold_forget``, ``gold_retain``, ``gold_test``: the retrained (gold) model's banks;
              with them the result has ``gold`` metrics and ``gaps`` = |metric - gold metric|.
            - ``bank``, ``gold_bank``: instead of three paths, one Parquet file whose ``split_key``
              column says ``forget``/``retain``/``test`` for every row.
            - ``memory_limit``: peak resident memory of this process (and of each Ray worker),
              e.g. ``"4GiB"`` or bytes; chunk sizes (and if needed the sample sizes) derive from it.
            - ``ray``: None (this process only), ``"auto"`` (join the Ray cluster this machine
              knows of, else start a local one) or an address (``"host:6379"``, ``"ray://host:10001"``).
            - ``out``: JSON result path, written atomically (checked before any work: its folder
              must be writable and the file, if it exists, a regular file; a symbolic link is
              written through).
            - ``seed``: fixes every sample (k-means fit rows, probe rows, k-NN queries) and k-means.
            - ``n_classes``: k of k-means (default: the number of distinct labels over the three
              sets, lowered for a set with fewer rows, with a caveat); an explicit value above the
              rows k-means is fit on in some set is an error.
            - ``blas_threads``: BLAS threads while the job runs (default 1; None leaves the
              library's own setting). The per-chunk products are thin (rows x d by d x k);
              threads gain little there and a multi-threaded OpenBLAS slows down many-fold when
              another process holds a core. Parallelism comes from the Rust engine and from Ray.

    Returns:
        dict with ``metrics``, ``gold`` and ``gaps`` (when gold banks are given), ``caveats``
        (sentences on metrics that say little for these inputs: a set with fewer rows than
        classes, a one-class set, very few k-NN attack queries), ``details`` (integer counts,
        contingency tables, sample sizes), ``config`` (the metric options), ``plan``, ``stages``
        (seconds, rows, vectors/s, peak RSS per stage), ``inputs`` and ``meta``.
    """
    from .. import __version__

    t_start = time.perf_counter()
    if config is not None and not isinstance(config, EvalConfig):
        raise TypeError(f"config: expected an EvalConfig, got {type(config).__name__}")
    names = {f.name for f in option_fields()}
    options = {_ALIASES.get(key, key): v for key, v in options.items()}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{unknown[0]}: not an option of unlearnkit.eval.run; expected one of {sorted(names)}")
    for key, v in (("forget", forget), ("retain", retain), ("test", test)):
        if v is not None:
            options[key] = v
    cfg = dataclasses.replace(config or EvalConfig(), **options)
    out_path = _check_out(cfg.out)
    limit = None if cfg.memory_limit is None else parse_size(cfg.memory_limit)
    (forget, retain, test, gold_forget, gold_retain, gold_test, bank, gold_bank, features_key, labels_key, split_key,
     ray, ray_num_cpus, chunk_rows, blas_threads, knn_queries, kmeans_rows, probe_rows, progress) = (
        cfg.forget, cfg.retain, cfg.test, cfg.gold_forget, cfg.gold_retain, cfg.gold_test, cfg.bank, cfg.gold_bank,
        cfg.features_key, cfg.labels_key, cfg.split_key, cfg.ray, cfg.ray_num_cpus, cfg.chunk_rows, cfg.blas_threads,
        cfg.knn_queries, cfg.kmeans_rows, cfg.probe_rows, cfg.progress)

    keys = dict(features_key=features_key, labels_key=labels_key, split_key=split_key)
    specs = _specs("", forget, retain, test, bank, keys)
    if specs is None:
        raise ValueError("forget: expected forget, retain and test banks (or bank=), got none")
    gold_specs = _specs("gold_", gold_forget, gold_retain, gold_test, gold_bank, keys)

    banks = {s: open_bank(specs[s]) for s in SETS}
    gold = {s: open_bank(gold_specs[s]) for s in SETS} if gold_specs else None
    every = list(banks.values()) + (list(gold.values()) if gold else [])
    ref = banks["forget"]
    for b in every[1:]:
        if b.dim != ref.dim:
            raise ValueError(f"{b.name}: expected {ref.dim} feature columns like {ref.name}, got {b.dim}")

    imports_s = _import_libraries(every, ray)
    plan = make_plan(dim=ref.dim, itemsize=max(b.source_itemsize for b in every),
                     n_rows_max=max(b.n_rows for b in every), limit_bytes=limit, kmeans_rows=kmeans_rows,
                     probe_rows=probe_rows, knn_queries=knn_queries, chunk_rows=chunk_rows)
    if cfg.da_k is not None and cfg.da_k > ref.dim:
        raise ValueError(f"da_k: expected an int in [1, {ref.dim}] (the feature dimension), got {cfg.da_k}")
    if cfg.n_classes is not None:  # an explicit k must fit every set (and the gold sets): never lowered silently
        small = min(every, key=lambda b: b.n_rows)
        fit_rows = min(small.n_rows, plan.kmeans_rows)
        if cfg.n_classes > fit_rows:
            raise ValueError(f"n_classes: expected at most {fit_rows} (the rows k-means is fit on in the "
                             f"{small.name} bank), got {cfg.n_classes}")
    stages = _Stages(progress)
    ex: LocalExecutor | RayExecutor
    if ray:
        from .distributed import RayExecutor

        ex = RayExecutor(ray, num_cpus=ray_num_cpus)
    else:
        ex = LocalExecutor()
    try:
        with _blas_threads(blas_threads):
            result_model = _evaluate(banks, cfg, plan, ex, stages, "")
            result_gold = _evaluate(gold, cfg, plan, ex, stages, "gold/") if gold else None
        cluster = ex.describe()
    finally:
        ex.close()
        for b in every:
            b.close()

    result: dict[str, Any] = {"metrics": result_model["metrics"]}
    if result_gold is not None:
        result["gold"] = result_gold["metrics"]
        result["gaps"] = {f"gap_{m}": abs(v - result_gold["metrics"][m])
                          for m, v in result_model["metrics"].items() if m in result_gold["metrics"]}
    result["caveats"] = result_model["caveats"] + ([f"gold: {c}" for c in result_gold["caveats"]]
                                                   if result_gold is not None else [])
    result["details"] = {"model": result_model["details"]}
    if result_gold is not None:
        result["details"]["gold"] = result_gold["details"]
    result["inputs"] = {b.name: b.describe() for b in every}
    result["config"] = cfg.metric_options()
    result["plan"] = plan.as_dict()
    result["stages"] = stages.records
    result["timings"] = _timings(stages, imports_s, time.perf_counter() - t_start)
    result["meta"] = {
        "unlearnkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "executor": "ray" if ray else "local",
        "ray": cluster,
        "seconds": time.perf_counter() - t_start,
        "memory_limit_bytes": limit,
        "peak_rss_bytes": stages.peak(),
    }
    if out_path is not None:
        from ..io import write_json

        write_json(out_path, result)
    return result


# ----------------------------------------------------------------------------------------------
# Terminal table


def format_table(result: dict) -> str:
    """A plain-text table: one row per metric (its key, then its name and direction mark from the
    metric registry), columns value / gold / |gap|."""
    from ..metrics import registry

    def name(key):
        try:
            return f"{registry.get(key).label} {registry.mark(key)}"
        except KeyError:
            return ""

    m, g = result["metrics"], result.get("gold")
    lines = [f"{'metric':<22} {'name':<24} {'value':>10}" + (f" {'gold':>10} {'|gap|':>10}" if g else "")]
    lines.append("-" * len(lines[0]))
    for key, v in m.items():
        row = f"{key:<22} {name(key):<24} {v:>10.4f}"
        if g and key in g:
            row += f" {g[key]:>10.4f} {abs(v - g[key]):>10.4f}"
        lines.append(row)
    st = result.get("stages", {})
    if st:
        lines.append("")
        lines.append(f"{'stage':<14} {'seconds':>9} {'vectors/s':>12} {'peak RSS':>12}")
        for name, r in st.items():
            vps = f"{r['vectors_per_s']:>12.4g}" if r.get("vectors_per_s") else f"{'':>12}"
            lines.append(f"{name:<14} {r['seconds']:>9.2f} {vps} {format_size(r['peak_rss_bytes']):>12}")
    return "\n".join(lines)
