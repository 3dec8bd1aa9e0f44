"""Layer: audit. Every per-example score of every pool against the retrained pool.

Rows (each scored against the retrained pool R):

- one per method: its unlearned pool U;
- ``original``: the original pool O (doing nothing);
- ``retrained floor``: R against itself, split in halves (first K/2 seeds against the last K/2;
  RMIA: each retrained model as the target, the others as references): the value an ideal
  method reaches with this K. It needs K >= :data:`MIN_POOL` = 6, three models per half: with
  two, F's bins end at ceil(ln(2 - 1)) = 0, so every example scores 0 points and the floor's F is
  0 by construction (not a measurement), and U-LiRA's leave-one-out fit has one model left.

Columns: the NeurIPS 2023 challenge's F and final score (with per-example epsilons), a method's F
minus the original's with its 95% paired bootstrap interval over the forget examples, U-LiRA
(fixed forget set, leave-one-out), KLOM median / p95 on the forget, retain and test sets,
RMIA (forget vs test examples, retrained pool as references), the pool's accuracies, K, and the
seconds the pool took to produce and to score.
"""

from __future__ import annotations

import time

import numpy as np

from ..metrics import registry
from ..metrics.per_example import (
    challenge_score,
    epsilon_points,
    f_difference,
    klom,
    largest_measurable_epsilon,
    per_example_epsilon,
    rmia,
    rmia_scores,
    ulira,
    ulira_scores,
)
from .config import MIN_POOL, check_pool  # noqa: F401 - re-exported (declared with the audit's config)

__all__ = ["FLOOR", "MIN_POOL", "ORIGINAL", "audit_columns", "check_pool", "score_pair", "score_pools"]

ORIGINAL = "original"
FLOOR = "retrained floor"



def _klom_summary(u: dict, r: dict) -> tuple[dict, dict]:
    out, arrays = {}, {}
    for s in ("forget", "retain", "test"):
        v = klom(u[s]["margin"], r[s]["margin"])
        arrays[s] = v
        out[f"klom_{s}_median"] = float(np.median(v))
        out[f"klom_{s}_p95"] = float(np.percentile(v, 95))
    return out, arrays


def score_pair(u: dict, r: dict, *, rmia_targets: dict | None = None, rmia_refs: dict | None = None,
               rmia_exclude: bool = False, delta: float = 1e-5) -> tuple[dict, dict]:
    """Scores pool ``u`` against pool ``r`` (each ``{set: {stat: (K, n)}}`` from
    :func:`~unlearnkit.audit.pools.run_pools`).

    RMIA uses ``rmia_targets`` as the target models and ``rmia_refs`` as the references (by
    default ``u`` and ``r``; ``rmia_exclude`` when the targets are the references themselves).

    Returns:
        (row of numbers, per-example arrays: ``eps``, ``points``, ``ulira_bacc`` (per example,
        over the targets of both pools), ``klom_<set>``, ``rmia_forget`` (mean score over targets)).
    """
    t0 = time.perf_counter()
    k = min(u["forget"]["phi"].shape[0], r["forget"]["phi"].shape[0])
    eps = per_example_epsilon(u["forget"]["phi"], r["forget"]["phi"], delta=delta)
    points = epsilon_points(eps, k)
    f = float(points.mean())
    acc = {f"{s}_acc_{p}": float(pool[s]["correct"].mean()) for s in ("retain", "test", "forget")
           for p, pool in (("pool", u), ("ref", r))}
    score = challenge_score(f, u["retain"]["correct"].mean(axis=1), r["retain"]["correct"].mean(axis=1),
                            u["test"]["correct"].mean(axis=1), r["test"]["correct"].mean(axis=1))
    if k >= 3:
        ul = ulira(u["forget"]["phi"], r["forget"]["phi"])
        s_u, s_r = ulira_scores(u["forget"]["phi"], r["forget"]["phi"])
        ulira_bacc = 0.5 * ((s_u > 0).mean(axis=0) + (s_r <= 0).mean(axis=0))
    else:  # leave-one-out needs 3 models per pool
        ul = dict.fromkeys(("balanced_accuracy", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"))
        ulira_bacc = np.full(u["forget"]["phi"].shape[1], np.nan)
    kl, kl_arrays = _klom_summary(u, r)
    targets = rmia_targets or u
    refs = rmia_refs or r
    rmia_args = (targets["forget"]["p"], targets["test"]["p"], refs["forget"]["p"], refs["test"]["p"])
    rm = rmia(*rmia_args, exclude_target=rmia_exclude)
    s_f, _ = rmia_scores(*rmia_args, exclude_target=rmia_exclude)
    row = {"k": int(u["forget"]["phi"].shape[0]), "k_ref": int(r["forget"]["phi"].shape[0]),
           "largest_measurable_eps": largest_measurable_epsilon(k, delta), "F": f, "challenge_score": score,
           "eps_median": float(np.median(eps)), "eps_mean": float(eps.mean()),
           "eps_at_clip": float((eps >= 50).mean()),
           **{f"ulira_{key}": v for key, v in ul.items()}, **kl, **{f"rmia_{key}": v for key, v in rm.items()},
           "retain_acc": acc["retain_acc_pool"], "test_acc": acc["test_acc_pool"],
           "forget_acc": acc["forget_acc_pool"]}
    row["metric_seconds"] = time.perf_counter() - t0
    arrays = {"eps": eps, "points": points, "ulira_bacc": ulira_bacc, "rmia_forget": s_f.mean(axis=0),
              **{f"klom_{s}": v for s, v in kl_arrays.items()}}
    return row, arrays


def _half(pool: dict, part: slice) -> dict:
    return {s: {stat: v[part] for stat, v in stats.items()} for s, stats in pool.items()}


def score_pools(result: dict, *, delta: float = 1e-5) -> dict:
    """Scores every pool of a :func:`~unlearnkit.audit.pools.run_pools` result.

    Returns:
        ``{"rows": {name: row}, "arrays": {name: per-example arrays}, "order": [names]}``,
        methods first, then ``original`` and ``retrained floor``. A method whose pool failed
        has a row ``{"error": message}`` and no arrays.
    """
    pools = result["pools"]
    r = pools["retrained"]
    rows, arrays = {}, {}
    methods = [p for p in list(pools) + list(result.get("errors", {})) if p not in ("original", "retrained")]
    methods = list(dict.fromkeys(methods))
    seconds = result.get("seconds", {})
    for name in methods:
        if name in result.get("errors", {}):
            rows[name] = {"error": result["errors"][name]}
            continue
        rows[name], arrays[name] = score_pair(pools[name], r, delta=delta)
    rows[ORIGINAL], arrays[ORIGINAL] = score_pair(pools["original"], r, delta=delta)
    k = r["forget"]["phi"].shape[0]
    h = k // 2
    if 2 * h >= MIN_POOL:
        first, second = _half(r, slice(0, h)), _half(r, slice(h, 2 * h))
        rows[FLOOR], arrays[FLOOR] = score_pair(first, second, rmia_targets=r, rmia_refs=r, rmia_exclude=True,
                                                delta=delta)
    else:
        rows[FLOOR] = {"error": f"the floor splits the retrained pool in halves: needs K >= {MIN_POOL} (3 models per "
                                f"half; with 2, F's bins end at ceil(ln(1)) = 0 and F is 0 by construction), got {k}"}
    # F against doing nothing, with its spread over the forget examples (paired bootstrap): whether a
    # row's F differs from the original's at all on this forget set. Not for the floor, whose points
    # compare the retrained halves, another pair of pools.
    for name in methods:
        if "error" not in rows[name]:
            fd = f_difference(arrays[name]["points"], arrays[ORIGINAL]["points"])
            rows[name].update(F_vs_original=fd["diff"], F_vs_original_low=fd["low"], F_vs_original_high=fd["high"])
    for name, row in rows.items():
        pool = "retrained" if name == FLOOR else name
        if "error" not in row and pool in seconds:
            row["pool_seconds_mean"] = float(np.mean(seconds[pool]))
            row["pool_seconds_total"] = float(np.sum(seconds[pool]))
    return {"rows": rows, "arrays": arrays, "order": list(rows)}


#: The columns ``audit_columns`` gives the bench's table: the registry's "audit" view, less K.
BENCH_COLUMNS = tuple(k.removeprefix("audit_") for k, _, _ in registry.columns("audit") if k != "audit_k")


def audit_columns(scored: dict, *, prefix: str = "audit_") -> dict[str, dict]:
    """``{row name: {prefix + column: value}}`` of :data:`BENCH_COLUMNS` for a bench report (the
    retrained floor under the bench's name ``gold``), plus ``<prefix>k``."""
    out = {}
    for name, row in scored["rows"].items():
        if "error" in row:
            continue
        key = "gold" if name == FLOOR else name
        out[key] = {f"{prefix}{c}": row[c] for c in BENCH_COLUMNS}
        out[key][f"{prefix}k"] = row["k"]
    return out
