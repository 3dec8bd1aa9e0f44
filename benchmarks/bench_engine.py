"""The Rust evaluation engine against scikit-learn and faiss-cpu, side by side.

Four problems, each timed for unlearnkit and its anchors on the same data:

* clustering scores: NMI + ARI + pair-F1 of two labelings (1000 classes, 1000 clusters).
  Ours: one ``clustering_scores(..., matched=False)`` call (which also returns AMI,
  homogeneity/completeness/V and pair precision/recall); scikit-learn: its three calls
  (``normalized_mutual_info_score``, ``adjusted_rand_score``, ``pair_confusion_matrix``);
* exact k-NN, squared L2, k = 10: ours ``kneighbors`` vs scikit-learn
  ``NearestNeighbors(algorithm="brute")`` and faiss ``IndexFlatL2``;
* exact k-NN through the torch backend (``backend="torch"``, the path CUDA tensors take) on the
  CPU against the Rust engine on the same bank: 2e4 queries x 2e5 bank x 128, k = 10 (issue
  17); the note says whether indices and distances are identical;
* k-means, k = 100, 10 Lloyd iterations (tol = 0), k-means++ init: ours vs scikit-learn
  ``KMeans(algorithm="lloyd", n_init=1)`` and faiss ``Kmeans`` (told to train on every point:
  by default it subsamples to 256 points per centroid).

The anchors parallelise with OpenMP/BLAS threads. On a loaded machine OpenMP's spinning
barriers can make them much slower with 2 threads than with 1, so for k-NN and k-means each
anchor also runs pinned to one thread (``OMP_NUM_THREADS=1``, rows marked "1 thr"); the
lower of the two anchor times is the fair comparison. Ours always uses all cores (rayon).

Every case runs in its own subprocess: the data are generated there, the process's peak RSS is
reset (``/proc/self/clear_refs``), and the case reports its wall time and the peak RSS above the
RSS it started from (the working memory of the algorithm, not of the data), plus its CPU time
(user + system of all its threads: the work done, which a loaded machine does not inflate the
way it inflates wall time). Agreement with the anchor is in the note (score differences,
identical neighbour indices, inertia ratios).

Sizes: the default ("quick") run fits in about 3 minutes on 2 cores: 1e6 labels, 1e4 queries x
1e5 bank x 128, k-means 1e5 x 128. ``--full`` uses the sizes of issue 3: 1e7 labels,
1e4 queries x 1e6 bank, k-means 1e6 x 128 (many minutes on 2 cores, mostly in the anchors).

    python benchmarks/bench_engine.py [--full] [--only scores,knn,knn-torch,kmeans]

``make bench`` (benchmarks/run_all.py) calls :func:`run` with the quick sizes; set
``UNLEARNKIT_BENCH_FULL=1`` there for the full ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import subprocess
import sys

QUICK = {"labels": 1_000_000, "queries": 10_000, "bank": 100_000, "kmeans_n": 100_000}
FULL = {"labels": 10_000_000, "queries": 10_000, "bank": 1_000_000, "kmeans_n": 1_000_000}
DIM, K_NN, K_MEANS, ITERS, CLASSES = 128, 10, 100, 10, 1000
TORCH_KNN = {"queries": 20_000, "bank": 200_000}
TIMEOUT = 600  # seconds per case (3 x for the torch backend's case)


# --------------------------------------------------------------------------------------------
# Inside the subprocess


def _rss_mib(field: str) -> float:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak then includes the data
        pathlib.Path("/proc/self/clear_refs").write_text("5")


def _labels(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, n)
    noise = rng.random(n) < 0.3
    c = np.where(noise, rng.integers(0, CLASSES, n), (y * 7 + 3) % CLASSES)
    return y, c


def _features(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((K_MEANS, DIM), dtype=np.float32) * 2
    x = centers[rng.integers(0, K_MEANS, n)]
    x += rng.standard_normal((n, DIM), dtype=np.float32)
    return x


def _case(problem: str, impl: str, size: int, extra: int) -> dict:
    import time

    import numpy as np

    impl = impl.removesuffix("-1t")
    result: dict = {}
    if impl in ("ours", "torch"):
        import unlearnkit.metrics as M  # noqa: F401  (import outside the timed region)
    if problem == "scores":
        y, c = _labels(size)
    elif problem == "knn":
        bank = _features(size, 1)
        queries = _features(extra, 2)
    else:
        x = _features(size, 3)
    if impl == "faiss":
        import faiss  # noqa: F401
    if impl == "sklearn":
        import sklearn.cluster  # noqa: F401
        import sklearn.metrics  # noqa: F401
        import sklearn.neighbors  # noqa: F401
    start_rss = _rss_mib("VmRSS")
    _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    if problem == "scores":
        if impl == "ours":
            s = M.clustering_scores(y, c, matched=False)
            result["values"] = [s["nmi"], s["ari"], s["pair_f1"]]
        else:
            from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
            from sklearn.metrics.cluster import pair_confusion_matrix

            nmi = normalized_mutual_info_score(y, c)
            ari = adjusted_rand_score(y, c)
            (tn, fp), (fn, tp) = pair_confusion_matrix(y, c)
            result["values"] = [nmi, ari, float(2 * tp / (2 * tp + fp + fn))]
    elif problem == "knn":
        if impl == "ours":
            d, i = M.kneighbors(queries, bank, K_NN, backend="engine")
        elif impl == "torch":
            d, i = M.kneighbors(queries, bank, K_NN, backend="torch")
            result["all_distances"] = np.asarray(d, dtype=np.float64).tolist()
        elif impl == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            d, i = NearestNeighbors(n_neighbors=K_NN, algorithm="brute").fit(bank).kneighbors(queries)
            d = d**2
        else:
            import faiss

            index = faiss.IndexFlatL2(DIM)
            index.add(bank)
            d, i = index.search(queries, K_NN)
        result["indices"] = np.asarray(i, dtype=np.int64).tolist()
        result["distances"] = np.asarray(d, dtype=np.float64)[:, -1].tolist()
    else:
        if impl == "ours":
            r = M.kmeans(x, K_MEANS, max_iter=ITERS, tol=0.0, seed=0)
            result["inertia"], result["iters"] = r.inertia, r.n_iter
        elif impl == "sklearn":
            from sklearn.cluster import KMeans

            r = KMeans(K_MEANS, n_init=1, max_iter=ITERS, tol=0.0, algorithm="lloyd", random_state=0).fit(x)
            result["inertia"], result["iters"] = float(r.inertia_), int(r.n_iter_)
        else:
            import faiss

            km = faiss.Kmeans(DIM, K_MEANS, niter=ITERS, seed=1, max_points_per_centroid=size)
            km.train(x)
            _, labels = km.index.search(x, 1)
            cent = km.centroids
            result["inertia"] = float(((x - cent[labels[:, 0]]) ** 2).sum(dtype=np.float64))
            result["iters"] = ITERS
    result["seconds"] = time.perf_counter() - t0
    result["cpu_seconds"] = time.process_time() - c0
    result["extra_mib"] = _rss_mib("VmHWM") - start_rss
    return result


# --------------------------------------------------------------------------------------------
# The driver


def _in_subprocess(problem: str, impl: str, size: int, extra: int = 0) -> dict:
    here = str(pathlib.Path(__file__).parent)
    code = (f"import sys, json; sys.path.insert(0, {here!r}); import bench_engine as b; "
            f"print(json.dumps(b._case({problem!r}, {impl!r}, {size}, {extra})))")
    env = dict(os.environ)
    if impl.endswith("-1t"):
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    timeout = 3 * TIMEOUT if impl == "torch" else TIMEOUT
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _cpu(ours: dict, anchor: dict) -> str:
    return f"cpu {ours['cpu_seconds']:.2f} vs {anchor['cpu_seconds']:.2f} s"


def _fmt(x: float) -> str:
    return f"{x:.0e}".replace("e+0", "e")


def run(full: bool | None = None, only: set[str] | None = None) -> list[dict]:
    import numpy as np

    if full is None:
        full = os.environ.get("UNLEARNKIT_BENCH_FULL", "") not in ("", "0")
    sizes = FULL if full else QUICK
    anchors = ["sklearn", "sklearn-1t"] + (["faiss", "faiss-1t"] if _have("faiss") else [])
    if "faiss" not in anchors:
        print("   faiss-cpu is not installed: its rows are skipped (pip install faiss-cpu)", flush=True)
    rows: list[dict] = []

    def show(name, r):
        if "error" in r:
            print(f"   {name:<34} failed: {r['error']}", flush=True)
        else:
            print(f"   {name:<34} {r['seconds']:8.3f} s  cpu {r['cpu_seconds']:8.3f} s  +{r['extra_mib']:.0f} MiB",
                  flush=True)

    if not only or "scores" in only:
        n = sizes["labels"]
        r = {impl: _in_subprocess("scores", impl, n) for impl in ("ours", "sklearn")}  # sklearn: single-threaded
        for impl, v in r.items():
            show(f"scores n={_fmt(n)} {impl}", v)
        ours, sk = r["ours"], r["sklearn"]
        if "error" not in ours and "error" not in sk:
            diff = max(abs(a - b) for a, b in zip(ours["values"], sk["values"]))
            rows.append(dict(bench="engine", case=f"NMI+ARI+pair-F1, {_fmt(n)} labels, {CLASSES} classes",
                             ours_s=ours["seconds"], anchor="sklearn (3 calls)", anchor_s=sk["seconds"], goal=">= 20x",
                             note=f"max |diff| {diff:.1e}; {_cpu(ours, sk)}; "
                                  f"mem +{ours['extra_mib']:.0f} vs +{sk['extra_mib']:.0f} MiB"))

    if not only or "knn" in only:
        m, n = sizes["queries"], sizes["bank"]
        r = {impl: _in_subprocess("knn", impl, n, m) for impl in ["ours"] + anchors}
        for impl, v in r.items():
            show(f"knn {_fmt(m)}x{_fmt(n)} {impl}", v)
        ours = r["ours"]
        for impl, goal in (("sklearn", ">= 5x"), ("sklearn-1t", ">= 5x"), ("faiss", ">= 1x"), ("faiss-1t", ">= 1x")):
            a = r.get(impl)
            if a is None or "error" in a or "error" in ours:
                continue
            same = float(np.mean(np.asarray(ours["indices"]) == np.asarray(a["indices"])))
            kth = np.max(np.abs(np.asarray(ours["distances"]) - np.asarray(a["distances"]))
                         / np.maximum(np.asarray(a["distances"]), 1e-12))
            name = {"sklearn": "sklearn brute NN", "sklearn-1t": "sklearn brute NN, 1 thr",
                    "faiss": "faiss IndexFlatL2", "faiss-1t": "faiss FlatL2, 1 thr"}[impl]
            rows.append(dict(bench="engine", case=f"exact k-NN {_fmt(m)} x {_fmt(n)}, d={DIM}, k={K_NN}",
                             ours_s=ours["seconds"], anchor=name, anchor_s=a["seconds"], goal=goal,
                             note=f"same idx {same:.4%}, k-th dist rel diff {kth:.1e}; {_cpu(ours, a)}; "
                                  f"mem +{ours['extra_mib']:.0f} vs +{a['extra_mib']:.0f} MiB"))

    if not only or "knn-torch" in only:
        m, n = TORCH_KNN["queries"], TORCH_KNN["bank"]
        r = {impl: _in_subprocess("knn", impl, n, m) for impl in ("ours", "torch")}
        for impl, v in r.items():
            show(f"knn {_fmt(m)}x{_fmt(n)} {impl}", v)
        ours, t = r["ours"], r["torch"]
        if "error" not in ours and "error" not in t:
            same = float(np.mean(np.asarray(ours["indices"]) == np.asarray(t["indices"])))
            equal = np.array_equal(np.asarray(ours["distances"]), np.asarray(t["all_distances"])[:, -1])
            rows.append(dict(bench="engine", case=f"exact k-NN {_fmt(m)} x {_fmt(n)}, d={DIM}, k={K_NN}",
                             ours_s=ours["seconds"], anchor="torch backend (CPU)", anchor_s=t["seconds"], goal="info",
                             note=f"same idx {same:.4%}, k-th dist identical {equal}; {_cpu(ours, t)}; "
                                  f"mem +{ours['extra_mib']:.0f} vs +{t['extra_mib']:.0f} MiB"))

    if not only or "kmeans" in only:
        n = sizes["kmeans_n"]
        r = {impl: _in_subprocess("kmeans", impl, n) for impl in ["ours"] + anchors}
        for impl, v in r.items():
            show(f"kmeans {_fmt(n)} {impl}", v)
        ours = r["ours"]
        for impl, goal in (("sklearn", ">= 3x"), ("sklearn-1t", ">= 3x"), ("faiss", "info"), ("faiss-1t", "info")):
            a = r.get(impl)
            if a is None or "error" in a or "error" in ours:
                continue
            name = {"sklearn": "sklearn KMeans lloyd", "sklearn-1t": "sklearn KMeans, 1 thr",
                    "faiss": "faiss Kmeans (all pts)", "faiss-1t": "faiss Kmeans, 1 thr"}[impl]
            rows.append(dict(bench="engine", case=f"k-means {_fmt(n)} x {DIM}, k={K_MEANS}, {ITERS} iters",
                             ours_s=ours["seconds"], anchor=name, anchor_s=a["seconds"], goal=goal,
                             note=f"inertia ours/anchor {ours['inertia'] / a['inertia']:.4f}; {_cpu(ours, a)}; "
                                  f"mem +{ours['extra_mib']:.0f} vs +{a['extra_mib']:.0f} MiB"))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the sizes of issue 3 (slow on 2 cores)")
    parser.add_argument("--only", default="", help="comma-separated subset of scores,knn,knn-torch,kmeans")
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    table = run(full=args.full, only=only or None)
    print()
    for row in table:
        ratio = row["anchor_s"] / row["ours_s"]
        print(f"{row['case']:<44} ours {row['ours_s']:8.3f} s | {row['anchor']:<32} {row['anchor_s']:8.3f} s | "
              f"{ratio:6.1f}x (goal {row['goal']}) | {row['note']}")
