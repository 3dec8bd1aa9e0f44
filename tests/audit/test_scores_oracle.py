"""Layer: audit (tests). The audit's rows as wired in ``audit/scores.py`` against direct computations
on hand cases (issue 24).

``score_pair`` and ``score_pools`` only read statistics from the pools, so the pools here are written
by hand: forget-set phi columns whose per-example epsilon is worked out below (the challenge's
rules, evaluation.md section 1), accuracies with distinct values for each pool and set, and seeded
margins and p_y. Every expected number is computed in this file from its definition with numpy,
scipy and scikit-learn (loops over models and examples), never with the package's helpers:

- F and the challenge score: the points of hand-known epsilons, ``F * (RA_u / RA_r) * (TA_u / TA_r)``;
- U-LiRA: leave-one-out Gaussians with ``scipy.stats.norm``, balanced accuracy, sklearn's AUC;
- KLOM: ``numpy.histogram`` over the pooled range, smoothing, ``scipy.stats.entropy``;
- RMIA: the pairwise likelihood-ratio fractions, sklearn's ROC;
- F with pools of unequal sizes: binned by the smaller pool's K.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score, roc_curve

from unlearnkit.audit.scores import FLOOR, ORIGINAL, score_pair, score_pools
from unlearnkit.metrics import forgetting_quality

DELTA = 1e-5

# ----------------------------------------------------------------------------------- hand cases
# Forget-set phi, K = 4 models per pool, one column per example, with its epsilon worked by hand:
#  0. u = 0.5, 2.5, 3.5, 4.5 vs r = 0, 1, 2, 3: the best rules (t in (2, 2.5], or a band) misclassify one
#     model of each pool: FPR = FNR = 1/4, eps = ln((1 - delta - 1/4) / (1/4)) = ln(3 - 4 delta) ~ 1.10
#  1. disjoint pools (u = 10..13, r = 0..3): a threshold separates them, FPR = FNR = 0: eps = inf -> 50
#  2. u a spike (all 1.5): range ratio 0 < 0.01: eps = 50
#  3. u = r = 0, 1, 2, 3: every rule has FPR + FNR = 1 (or one of them 0, discarded): eps = 0
U_PHI = np.array([[0.5, 10.0, 1.5, 0.0], [2.5, 11.0, 1.5, 1.0], [3.5, 12.0, 1.5, 2.0], [4.5, 13.0, 1.5, 3.0]])
R_PHI = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
EPS = np.array([math.log(3 - 4 * DELTA), 50.0, 50.0, 0.0])
# K = 4: bins of 0.5 up to ceil(ln 3) = 2: eps 1.10 is in bin 2 (1/4 point), 50 scores 0, 0 scores 1
POINTS = np.array([0.25, 0.0, 0.0, 1.0])

# Pools of unequal size (K_u = 3, K_r = 8), each column worked by hand:
#  0. u = 7, 8, 3.5; r = 0..6, 9: u has the larger median; t in (6, 7] calls 3.5 "retrained" (FNR = 1/3) and
#     9 "unlearned" (FPR = 1/8): eps = ln((1 - delta - 1/3) / (1/8)) = ln(16/3 - 8 delta) ~ 1.674; no rule does
#     better (FNR = 0 needs t <= 3.5 and lets in 4, 5, 6, 9: FPR 1/2; a band around u = 3.5..8 holds 4, 5, 6).
#  1. u a spike: 50.
#  2. u = 0, 1, 2; r = 0, 0, 1, 1, 1, 2, 2, 2: the best rule is the band {0}: FNR = 2/3, FPR = 2/8,
#     eps = ln((1 - delta - 2/3) / (1/4)) ~ 0.288.
# Binned by the smaller pool (K = 3: bins end at ceil(ln 2) = 1): points 0, 0, 1 -> F = 1/3. (Binned by
# the larger, K = 8, bins end at ceil(ln 7) = 2 and eps 1.674 would score 2^-3.)
UNEQUAL_U = np.array([[7.0, 5.0, 0.0], [8.0, 5.0, 1.0], [3.5, 5.0, 2.0]])
UNEQUAL_R = np.array([[0, 0, 0], [1, 1, 0], [2, 2, 1], [3, 3, 1], [4, 4, 1], [5, 5, 2], [6, 6, 2], [9, 9, 2]], float)
UNEQUAL_F = 1 / 3


def _correct(rng, k, n, acc):
    """(K, n) booleans whose mean over everything is exactly ``acc`` (acc * K * n an integer)."""
    flat = np.zeros(k * n, bool)
    flat[: round(acc * k * n)] = True
    return rng.permutation(flat).reshape(k, n)


def make_pool(rng, phi_forget, *, acc, n_retain=10, n_test=12, p_shift=0.0):
    """A pool ``{set: {stat: (K, n)}}`` with the given forget phi and accuracies ``{set: acc}``."""
    k, n_forget = phi_forget.shape
    sizes = {"forget": n_forget, "retain": n_retain, "test": n_test}
    pool = {}
    for s, n in sizes.items():
        p = np.clip(rng.uniform(0.1, 0.9, (k, n)) + (p_shift if s == "forget" else 0.0), 0.01, 0.99)
        pool[s] = {"phi": phi_forget if s == "forget" else np.log(p) - np.log1p(-p),
                   "margin": rng.normal(size=(k, n)) * 2 + (p_shift * 4 if s == "forget" else 0.0),
                   "p": p, "correct": _correct(rng, k, n, acc[s])}
    return pool


# ------------------------------------------------------------------------------------- oracles

def ulira_oracle(u, r):
    """(balanced accuracy, AUC, per-example balanced accuracy) of the leave-one-out attack."""
    s_u, s_r = np.empty_like(u), np.empty_like(r)
    for t in range(len(u)):
        rest = np.delete(u, t, axis=0)
        s_u[t] = (scipy.stats.norm.logpdf(u[t], rest.mean(0), np.maximum(rest.std(0), 1e-6))
                  - scipy.stats.norm.logpdf(u[t], r.mean(0), np.maximum(r.std(0), 1e-6)))
    for t in range(len(r)):
        rest = np.delete(r, t, axis=0)
        s_r[t] = (scipy.stats.norm.logpdf(r[t], u.mean(0), np.maximum(u.std(0), 1e-6))
                  - scipy.stats.norm.logpdf(r[t], rest.mean(0), np.maximum(rest.std(0), 1e-6)))
    bacc = 0.5 * ((s_u > 0).mean() + (s_r <= 0).mean())
    auc = roc_auc_score(np.r_[np.ones(s_u.size), np.zeros(s_r.size)], np.r_[s_u.ravel(), s_r.ravel()])
    per_example = 0.5 * ((s_u > 0).mean(0) + (s_r <= 0).mean(0))
    return bacc, auc, per_example


def klom_oracle(u, r):
    out = []
    for i in range(u.shape[1]):
        lo, hi = min(u[:, i].min(), r[:, i].min()), max(u[:, i].max(), r[:, i].max())
        if lo == hi:
            out.append(0.0)
            continue
        pu = np.histogram(u[:, i], 20, (lo, hi))[0] / len(u) + 1e-5
        pr = np.histogram(r[:, i], 20, (lo, hi))[0] / len(r) + 1e-5
        out.append(scipy.stats.entropy(pu, pr))
    return np.array(out)


def rmia_oracle(tf, tp, rf, rp, exclude=False):
    """(AUC, TPR at 1% FPR, mean forget score per example) of RMIA, gamma 1, offline a 1."""
    s_f, s_p = np.empty(tf.shape), np.empty(tp.shape)
    for k in range(len(tf)):
        refs = [j for j in range(len(rf)) if not (exclude and j == k)]
        lr_f = tf[k] / rf[refs].mean(0)
        lr_p = tp[k] / rp[refs].mean(0)
        for i in range(tf.shape[1]):
            s_f[k, i] = np.mean([lr_f[i] / z >= 1 for z in lr_p])
        for i in range(tp.shape[1]):
            s_p[k, i] = np.mean([lr_p[i] / lr_p[j] >= 1 for j in range(tp.shape[1]) if j != i])
    y = np.r_[np.ones(s_f.size), np.zeros(s_p.size)]
    s = np.r_[s_f.ravel(), s_p.ravel()]
    fpr, tpr, _ = roc_curve(y, s)
    return roc_auc_score(y, s), tpr[fpr <= 0.01].max(), s_f.mean(0)


def assert_row(row, arrays, u, r, *, eps, points, targets=None, refs=None, exclude=False):
    """Every number of a ``score_pair`` row of (u, r) against the oracles above."""
    f = points.mean()
    ra_u, ra_r = u["retain"]["correct"].mean(), r["retain"]["correct"].mean()
    ta_u, ta_r = u["test"]["correct"].mean(), r["test"]["correct"].mean()
    assert row["F"] == pytest.approx(f, abs=1e-15)
    assert row["challenge_score"] == pytest.approx(f * (ra_u / ra_r) * (ta_u / ta_r), rel=1e-12)
    np.testing.assert_allclose(arrays["eps"], eps, rtol=1e-12)
    np.testing.assert_array_equal(arrays["points"], points)
    assert row["eps_median"] == pytest.approx(np.median(eps), rel=1e-12)
    assert row["eps_mean"] == pytest.approx(np.mean(eps), rel=1e-12)
    assert row["eps_at_clip"] == np.mean(eps == 50.0)
    assert (row["retain_acc"], row["test_acc"], row["forget_acc"]) == pytest.approx(
        (ra_u, ta_u, u["forget"]["correct"].mean()), abs=1e-15)
    bacc, auc, per_ex = ulira_oracle(u["forget"]["phi"], r["forget"]["phi"])
    assert row["ulira_balanced_accuracy"] == pytest.approx(bacc, abs=1e-12)
    assert row["ulira_auc"] == pytest.approx(auc, abs=1e-12)
    np.testing.assert_allclose(arrays["ulira_bacc"], per_ex, atol=1e-12)
    for s in ("forget", "retain", "test"):
        kl = klom_oracle(u[s]["margin"], r[s]["margin"])
        np.testing.assert_allclose(arrays[f"klom_{s}"], kl, rtol=1e-10, atol=1e-12)
        assert row[f"klom_{s}_median"] == pytest.approx(np.median(kl), rel=1e-10, abs=1e-12)
        assert row[f"klom_{s}_p95"] == pytest.approx(np.percentile(kl, 95), rel=1e-10, abs=1e-12)
    t, ref = targets or u, refs or r
    auc, tpr1, mean_f = rmia_oracle(t["forget"]["p"], t["test"]["p"], ref["forget"]["p"], ref["test"]["p"], exclude)
    assert row["rmia_auc"] == pytest.approx(auc, abs=1e-12)
    assert row["rmia_tpr_at_1pct_fpr"] == pytest.approx(tpr1, abs=1e-12)
    np.testing.assert_allclose(arrays["rmia_forget"], mean_f, atol=1e-12)


# --------------------------------------------------------------------------------------- tests

ACC_U = {"forget": 0.75, "retain": 0.8, "test": 0.625}
ACC_R = {"forget": 0.25, "retain": 0.95, "test": 0.75}


def test_score_pair_row_equals_direct_computations():
    rng = np.random.default_rng(0)
    u = make_pool(rng, U_PHI, acc=ACC_U, p_shift=0.3)  # the forget set's p_y and margins raised: remembered
    r = make_pool(rng, R_PHI, acc=ACC_R)
    row, arrays = score_pair(u, r)
    assert row["k"] == row["k_ref"] == 4
    assert row["F"] == 0.3125 and row["eps_at_clip"] == 0.5  # the hand-worked values, as numbers
    # RA_u / RA_r = 0.8 / 0.95, TA_u / TA_r = 0.625 / 0.75
    assert row["challenge_score"] == pytest.approx(0.3125 * (0.8 / 0.95) * (0.625 / 0.75), rel=1e-12)
    assert_row(row, arrays, u, r, eps=EPS, points=POINTS)
    # swapping the roles changes the row (the challenge score's ratios invert; RMIA's targets change)
    row_rev, _ = score_pair(r, u)
    assert row_rev["challenge_score"] != pytest.approx(row["challenge_score"])


def test_score_pair_with_pools_of_unequal_size_bins_by_the_smaller():
    rng = np.random.default_rng(1)
    u = make_pool(rng, UNEQUAL_U, acc={"forget": 2 / 3, "retain": 0.9, "test": 0.75})
    r = make_pool(rng, UNEQUAL_R, acc={"forget": 0.25, "retain": 1.0, "test": 0.875})
    row, arrays = score_pair(u, r)
    assert row["k"] == 3 and row["k_ref"] == 8
    eps = np.array([math.log(16 / 3 - 8 * DELTA), 50.0, math.log(4 / 3 - 4 * DELTA)])
    assert row["F"] == pytest.approx(UNEQUAL_F, abs=1e-15)
    assert_row(row, arrays, u, r, eps=eps, points=np.array([0.0, 0.0, 1.0]))


@pytest.mark.parametrize("swap", [False, True])
def test_forgetting_quality_with_pools_of_unequal_size(swap):
    u, r = (UNEQUAL_R, UNEQUAL_U) if swap else (UNEQUAL_U, UNEQUAL_R)
    assert forgetting_quality(u, r) == pytest.approx(UNEQUAL_F, abs=1e-15)
    # with the larger pool's K (8) the first column would score 2^-3 and F would be 3/8
    assert forgetting_quality(u, r) != pytest.approx(3 / 8)


def test_score_pools_rows_and_the_retrained_floor():
    rng = np.random.default_rng(2)
    r8 = make_pool(rng, np.r_[R_PHI, U_PHI], acc={"forget": 0.5, "retain": 0.9375, "test": 0.75})
    u = make_pool(rng, np.r_[U_PHI, U_PHI + 0.25], acc={"forget": 0.75, "retain": 0.8125, "test": 0.625}, p_shift=0.2)
    o = make_pool(rng, np.r_[U_PHI, U_PHI] * 2, acc={"forget": 1.0, "retain": 1.0, "test": 0.75}, p_shift=0.4)
    scored = score_pools({"pools": {"m": u, "original": o, "retrained": r8}})
    assert scored["order"] == ["m", ORIGINAL, FLOOR]
    rows, arrays = scored["rows"], scored["arrays"]
    row, arr = score_pair(u, r8)
    vs = {k: rows["m"].pop(k) for k in ("F_vs_original", "F_vs_original_low", "F_vs_original_high")}
    assert rows["m"] == {**row, "metric_seconds": rows["m"]["metric_seconds"]}
    # F against doing nothing: F is a mean of points, so the difference is the difference of the Fs
    assert vs["F_vs_original"] == pytest.approx(rows["m"]["F"] - rows[ORIGINAL]["F"], abs=1e-15)
    assert vs["F_vs_original_low"] <= vs["F_vs_original"] <= vs["F_vs_original_high"]
    assert "F_vs_original" not in rows[ORIGINAL] and "F_vs_original" not in rows[FLOOR]
    # the floor: the first half of the retrained pool (R_PHI) against the second (U_PHI) is the hand case
    # with the roles swapped (epsilon is symmetric in the two pools); RMIA: every retrained model a target,
    # its references the other seven
    floor = rows[FLOOR]
    first = {s: {k: v[:4] for k, v in st.items()} for s, st in r8.items()}
    second = {s: {k: v[4:] for k, v in st.items()} for s, st in r8.items()}
    assert floor["k"] == floor["k_ref"] == 4
    assert_row(floor, arrays[FLOOR], first, second, eps=EPS, points=POINTS, targets=r8, refs=r8, exclude=True)
    row_o, _ = score_pair(o, r8)
    assert rows[ORIGINAL] == {**row_o, "metric_seconds": rows[ORIGINAL]["metric_seconds"]}
