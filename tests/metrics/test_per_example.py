"""Layer: metrics (tests). Per-example unlearning scores against independent computations: the NeurIPS 2023 challenge's
epsilon against a brute-force loop over every rule (numpy.linspace grids, every value compared
with every rule, no sorting), hand-worked cases, synthetic pools whose answer is known
(identical, shifted, one spiky, deterministic); U-LiRA against a loop with scipy's normal
log-density; KLOM against numpy.histogram + scipy.stats.entropy; RMIA against pairwise ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from sklearn.metrics import roc_auc_score

from unlearnkit import metrics as M

DELTA = 1e-5


# --------------------------------------------------------------------------- brute-force oracle

def _rule_eps(fpr: np.ndarray, fnr: np.ndarray) -> np.ndarray:
    """The spec's step 3, vectorised over rules; discarded rules give -inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(1 - DELTA - fpr) - np.log(fnr)
        e2 = np.log(1 - DELTA - fnr) - np.log(fpr)
    e = np.fmax(e1, e2)  # a NaN term (log of a negative number) is left out
    e = np.where(np.isnan(e1) & np.isnan(e2), np.inf, np.maximum(e, 0.0))
    e = np.where((fpr == 0) & (fnr == 0), np.inf, e)
    return np.where((fpr == 0) ^ (fnr == 0), -np.inf, e)


def brute_epsilon(u: np.ndarray, r: np.ndarray) -> float:
    wu, wr = np.ptp(u), np.ptp(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        if min(wu, wr) / max(wu, wr) < 0.01:
            return 50.0
    best = 0.0
    lo, hi = min(u.min(), r.min()), max(u.max(), r.max())
    pos, neg = (u, r) if np.median(u) >= np.median(r) else (r, u)
    ts = np.linspace(lo, hi, math.ceil(100 * (hi - lo)))
    fnr = (pos[None, :] < ts[:, None]).sum(1) / len(pos)
    fpr = (neg[None, :] >= ts[:, None]).sum(1) / len(neg)
    if len(ts):
        best = max(best, _rule_eps(fpr, fnr).max())
    p, o = (u, r) if wu <= wr else (r, u)
    lo_p, hi_p = p.min(), p.max()
    w = hi_p - lo_p
    for h in np.linspace(lo_p + w - 2, hi_p + 2, math.ceil(100 * (hi_p - lo_p - w + 4))):
        ls = np.linspace(h - w - 2, h - w + 2, 400)[:, None]
        out_p = (~((p[None, :] >= ls) & (p[None, :] <= h))).sum(1)
        in_o = ((o[None, :] >= ls) & (o[None, :] <= h)).sum(1)
        best = max(best, _rule_eps(in_o / len(o), out_p / len(p)).max())
    return float(min(max(best, 0.0), 50.0))


def brute_points(eps: float, k: int) -> float:
    top = math.ceil(math.log(k - 1))
    j = 0
    while j * 0.5 < top:
        if j * 0.5 <= eps < (j + 1) * 0.5:
            return 2.0 ** -j
        j += 1
    return 0.0


# --------------------------------------------------------------------------- statistics

def test_logit_scaled_confidence_against_float64_and_hand_cases():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2, size=(50, 7))
    y = rng.integers(0, 7, 50)
    p = scipy.special.softmax(z, axis=1)[np.arange(50), y]
    np.testing.assert_allclose(M.logit_scaled_confidence(z, y), np.log(p) - np.log1p(-p), rtol=1e-10, atol=1e-12)
    # huge logits: p_y rounds to 1 (or to 0), phi does not
    big = np.array([[1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0], [40.0, 0.0, -3.0]])
    phi = M.logit_scaled_confidence(big, [0, 1, 0])
    assert phi[0] == 1000.0 - math.log(2.0)
    assert phi[1] == pytest.approx(-1000.0, abs=1e-12)
    assert phi[2] == pytest.approx(40.0 - math.log(1 + math.exp(-3.0)), abs=1e-12)
    # (K, n, C) batches, torch input, float32
    zt = torch.tensor(np.stack([z, -z]), dtype=torch.float32)
    out = M.logit_scaled_confidence(zt, y)
    assert out.shape == (2, 50) and out.dtype == np.float64
    np.testing.assert_allclose(out[1], M.logit_scaled_confidence(-z.astype(np.float32), y), rtol=0, atol=0)


def test_margins_hand_case():
    z = np.array([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0]])
    np.testing.assert_array_equal(M.margins(z, [0, 0]), [0.5, -4.0])
    np.testing.assert_array_equal(M.margins(np.stack([z, z + 1]), [2, 1]), [[-0.5, 4.0], [-0.5, 4.0]])


# --------------------------------------------------------------------------- challenge epsilon

@pytest.mark.parametrize("ku,kr,shift,scale", [(4, 4, 0.0, 1.0), (8, 8, 0.5, 1.0), (5, 3, 0.2, 0.4),
                                               (6, 9, 2.0, 1.5), (16, 16, 0.0, 0.05), (3, 7, -1.0, 3.0)])
def test_epsilon_equals_brute_force(ku, kr, shift, scale):
    rng = np.random.default_rng(ku * 100 + kr)
    n = 12
    u = shift + scale * rng.normal(size=(ku, n))
    r = rng.normal(size=(kr, n))
    fast = M.per_example_epsilon(u, r)
    slow = np.array([brute_epsilon(u[:, i], r[:, i]) for i in range(n)])
    np.testing.assert_allclose(fast, slow, rtol=1e-13, atol=1e-13)


def test_epsilon_equals_brute_force_with_values_on_the_grids():
    # values on the 0.01 lattice (and repeated): data sit on or next to the grids' points, where an
    # off-by-one-ulp grid or a < in place of a <= would change the counts
    rng = np.random.default_rng(9)
    u = np.round(rng.uniform(0, 3, size=(6, 15)), 2)
    r = np.round(rng.uniform(0.5, 2.5, size=(5, 15)), 2)
    slow = np.array([brute_epsilon(u[:, i], r[:, i]) for i in range(15)])
    np.testing.assert_allclose(M.per_example_epsilon(u, r), slow, rtol=1e-13, atol=1e-13)


def test_epsilon_hand_worked_cases():
    # r = 0,1,2,3 and u = 0.5,2.5,3.5,4.5: the best rules misclassify one model of each pool
    # (e.g. t in (2, 2.5] or the band [0, 2] around r): FPR = FNR = 1/4 -> ln((1 - delta - 1/4) / (1/4))
    u = np.array([[0.5], [2.5], [3.5], [4.5]])
    r = np.array([[0.0], [1.0], [2.0], [3.0]])
    eps = M.per_example_epsilon(u, r)[0]
    assert eps == pytest.approx(math.log(3 - 4 * DELTA), rel=1e-14)
    assert M.forgetting_quality(u, r) == 0.25  # K = 4: bins end at ceil(ln 3) = 2, eps in [1, 1.5) -> 2^-2
    # interleaved pools of two: every rule either errs on both or is discarded -> 0
    assert M.per_example_epsilon([[0.0], [2.0]], [[1.0], [3.0]])[0] == 0.0
    # disjoint pools: a threshold separates them (FPR = FNR = 0) -> inf -> 50
    assert M.per_example_epsilon([[5.0], [6.0]], [[0.0], [1.0]])[0] == 50.0
    # one pool a spike (a deterministic method): 50 without a sweep
    assert M.per_example_epsilon([[1.0], [1.0], [1.0]], [[0.0], [1.0], [2.0]])[0] == 50.0
    # two identical spikes: nothing tells them apart
    assert M.per_example_epsilon([[1.0], [1.0]], [[1.0], [1.0]])[0] == 0.0


def test_epsilon_synthetic_pools():
    rng = np.random.default_rng(3)
    k, n = 32, 60
    r = rng.normal(size=(k, n))
    same = rng.normal(size=(k, n))
    shifted = rng.normal(size=(k, n)) + 3.0
    spiky = np.repeat(rng.normal(size=(1, n)), k, axis=0)  # a deterministic method
    e_same, e_shift, e_spiky = (M.per_example_epsilon(x, r) for x in (same, shifted, spiky))
    # identical distributions: small epsilons (only sampling noise), far below the shifted pool's
    assert np.median(e_same) < 1.5 and e_shift.min() > np.median(e_same)
    assert np.median(e_shift) > 2.5
    np.testing.assert_array_equal(e_spiky, 50.0)
    f_same, f_shift, f_spiky = (M.forgetting_quality(x, r) for x in (same, shifted, spiky))
    assert f_same > 0.15 > 0.02 > f_shift and f_spiky == 0.0
    assert M.largest_measurable_epsilon(k) == pytest.approx(math.log(k * (1 - DELTA) - 1))
    # the brute force agrees on a few of these columns too
    for i in range(3):
        assert M.per_example_epsilon(same[:, [i]], r[:, [i]])[0] == pytest.approx(
            brute_epsilon(same[:, i], r[:, i]), rel=1e-13)


def test_points_and_challenge_score_hand_cases():
    eps = np.array([0.0, 0.2, 0.5, 0.7, 2.9, 3.0, 50.0])
    pts = M.epsilon_points(eps, 16)  # bins end at ceil(ln 15) = 3
    np.testing.assert_array_equal(pts, [1, 1, 0.5, 0.5, 2.0 ** -5, 0, 0])
    assert list(pts) == [brute_points(e, 16) for e in eps]
    assert M.challenge_score(0.5, [0.9, 0.7], 1.0, 0.6, [0.8, 0.8]) == pytest.approx(0.5 * 0.8 * 0.75)
    with pytest.raises(ValueError, match=r"^ta_r: expected a positive accuracy"):
        M.challenge_score(0.5, 0.9, 0.9, 0.9, 0.0)


# --------------------------------------------------------------------------- U-LiRA

def brute_ulira(u, r, min_std=1e-6):
    ku, kr = len(u), len(r)
    s_u, s_r = np.empty_like(u), np.empty_like(r)
    for t in range(ku):
        rest = np.delete(u, t, axis=0)
        s_u[t] = (scipy.stats.norm.logpdf(u[t], rest.mean(0), np.maximum(rest.std(0), min_std))
                  - scipy.stats.norm.logpdf(u[t], r.mean(0), np.maximum(r.std(0), min_std)))
    for t in range(kr):
        rest = np.delete(r, t, axis=0)
        s_r[t] = (scipy.stats.norm.logpdf(r[t], u.mean(0), np.maximum(u.std(0), min_std))
                  - scipy.stats.norm.logpdf(r[t], rest.mean(0), np.maximum(rest.std(0), min_std)))
    return s_u, s_r


def test_ulira_equals_brute_force_and_known_answers():
    rng = np.random.default_rng(1)
    k, n = 12, 400
    r = rng.normal(size=(k, n)) * 2 + 5
    # identical: chance; shifted by 3 sd: the Bayes-optimal balanced accuracy is Phi(1.5) = 0.933
    for u, lo, hi in ((rng.normal(size=(k, n)) * 2 + 5, 0.44, 0.56),
                      (rng.normal(size=(k, n)) * 2 + 11, 0.90, 0.96)):
        s_u, s_r = M.ulira_scores(u, r)
        b_u, b_r = brute_ulira(u, r)
        np.testing.assert_allclose(s_u, b_u, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(s_r, b_r, rtol=1e-9, atol=1e-9)
        out = M.ulira(u, r)
        bacc = 0.5 * ((b_u > 0).mean() + (b_r <= 0).mean())
        assert out["balanced_accuracy"] == pytest.approx(bacc, abs=1e-12)
        assert lo <= out["balanced_accuracy"] <= hi
        y = np.r_[np.ones(b_u.size), np.zeros(b_r.size)]
        assert out["auc"] == pytest.approx(roc_auc_score(y, np.r_[b_u.ravel(), b_r.ravel()]), abs=1e-12)
        assert 0 <= out["tpr_at_0.1pct_fpr"] <= out["tpr_at_1pct_fpr"] <= 1
    # a deterministic method (the unlearned pool a spike) is always told apart from retraining
    spike = np.repeat(rng.normal(size=(1, n)), k, axis=0)
    assert M.ulira(spike, r)["balanced_accuracy"] > 0.99


def test_ulira_hand_case():
    # u = (0, 2, 4), r = (10, 12, 14): leaving u_0 = 0 out, N(0; 3, 1) vs N(0; 12, sqrt(8/3))
    u = np.array([[0.0], [2.0], [4.0]])
    r = np.array([[10.0], [12.0], [14.0]])
    s_u, _ = M.ulira_scores(u, r)
    sd_r = math.sqrt(8 / 3)
    expected = (-0.5 * 9 - 0.0) - (-0.5 * (12 / sd_r) ** 2 - math.log(sd_r))
    assert s_u[0, 0] == pytest.approx(expected, rel=1e-12)
    assert M.ulira(u, r)["balanced_accuracy"] == 1.0


# --------------------------------------------------------------------------- KLOM

def brute_klom(u, r, bins=20, smoothing=1e-5):
    out = []
    for i in range(u.shape[1]):
        lo, hi = min(u[:, i].min(), r[:, i].min()), max(u[:, i].max(), r[:, i].max())
        if lo == hi:
            out.append(0.0)
            continue
        pu = np.histogram(u[:, i], bins, (lo, hi))[0] / len(u) + smoothing
        pr = np.histogram(r[:, i], bins, (lo, hi))[0] / len(r) + smoothing
        out.append(scipy.stats.entropy(pu, pr))  # normalises both, KL(pu || pr)
    return np.array(out)


def test_klom_equals_histogram_oracle():
    rng = np.random.default_rng(2)
    k, n = 16, 300
    r = rng.normal(size=(k, n))
    for u in (rng.normal(size=(k, n)), rng.normal(size=(k + 4, n)) + 2.0, np.round(rng.normal(size=(k, n)), 1)):
        np.testing.assert_allclose(M.klom(u, r), brute_klom(u, r), rtol=1e-10, atol=1e-12)
    same, shifted = M.klom(rng.normal(size=(k, n)), r), M.klom(rng.normal(size=(k, n)) + 3, r)
    assert np.median(same) < np.median(shifted)
    # values on the bin edges (integers over [0, 20] -> every edge hit) still match numpy's assignment
    ui = rng.integers(0, 21, size=(k, n)).astype(float)
    ri = rng.integers(0, 21, size=(k, n)).astype(float)
    np.testing.assert_allclose(M.klom(ui, ri), brute_klom(ui, ri), rtol=1e-10, atol=1e-12)
    assert M.klom(np.ones((3, 2)), np.ones((4, 2))).tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- RMIA

def brute_rmia(tf, tp, rf, rp, gamma=1.0, a=1.0, exclude=False):
    kt, kr = len(tf), len(rf)
    s_f, s_p = np.empty(tf.shape), np.empty(tp.shape)
    for k in range(kt):
        refs = [j for j in range(kr) if not (exclude and j == k)]
        pf = 0.5 * ((1 + a) * rf[refs].mean(0) + (1 - a))
        pp = 0.5 * ((1 + a) * rp[refs].mean(0) + (1 - a))
        lf, lp = tf[k] / pf, tp[k] / pp
        for i in range(tf.shape[1]):
            s_f[k, i] = np.mean(lf[i] / lp >= gamma)
        for i in range(tp.shape[1]):
            others = np.delete(lp, i)
            s_p[k, i] = np.mean(lp[i] / others >= gamma)
    return s_f, s_p


@pytest.mark.parametrize("gamma,a,exclude", [(1.0, 1.0, False), (2.0, 0.5, False), (1.0, 1.0, True)])
def test_rmia_equals_pairwise_oracle(gamma, a, exclude):
    rng = np.random.default_rng(4)
    kr, nf, npop = 6, 40, 70
    rf, rp = rng.uniform(0.05, 0.95, (kr, nf)), rng.uniform(0.05, 0.95, (kr, npop))
    kt = kr if exclude else 3
    tf, tp = rng.uniform(0.05, 1.0, (kt, nf)), rng.uniform(0.05, 0.95, (kt, npop))
    s_f, s_p = M.rmia_scores(tf, tp, rf, rp, gamma=gamma, offline_a=a, exclude_target=exclude)
    b_f, b_p = brute_rmia(tf, tp, rf, rp, gamma, a, exclude)
    np.testing.assert_allclose(s_f, b_f, atol=1e-15)
    np.testing.assert_allclose(s_p, b_p, atol=1e-15)
    out = M.rmia(tf, tp, rf, rp, gamma=gamma, offline_a=a, exclude_target=exclude)
    y = np.r_[np.ones(b_f.size), np.zeros(b_p.size)]
    assert out["auc"] == pytest.approx(roc_auc_score(y, np.r_[b_f.ravel(), b_p.ravel()]), abs=1e-12)


def test_rmia_known_answers():
    rng = np.random.default_rng(5)
    kr, nf, npop = 8, 300, 600
    ref_f, ref_p = rng.uniform(0.2, 0.8, (kr, nf)), rng.uniform(0.2, 0.8, (kr, npop))
    # a target that memorised the forget set: p_y near 1 there -> forget scores far above population
    mem = M.rmia(np.full(nf, 0.999), rng.uniform(0.2, 0.8, npop), ref_f, ref_p)
    assert mem["auc"] > 0.95 and mem["tpr_at_1pct_fpr"] > 0.5
    # a target drawn like the references everywhere: chance
    chance = M.rmia(rng.uniform(0.2, 0.8, (4, nf)), rng.uniform(0.2, 0.8, (4, npop)), ref_f, ref_p)
    assert 0.45 < chance["auc"] < 0.55


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("call,match", [
    (lambda: M.per_example_epsilon(np.zeros((1, 3)), np.zeros((4, 3))), r"^unlearned: expected at least 2 models"),
    (lambda: M.per_example_epsilon(np.zeros((4, 3)), np.zeros((4, 2))), r"^retrained: expected 3 examples"),
    (lambda: M.per_example_epsilon(np.zeros(4), np.zeros((4, 2))), r"^unlearned: expected a 2-D array"),
    (lambda: M.per_example_epsilon(np.full((2, 2), np.nan), np.zeros((2, 2))), r"^unlearned: expected finite"),
    (lambda: M.per_example_epsilon(np.zeros((2, 2)), np.zeros((2, 2)), delta=1.5), r"^delta: expected"),
    (lambda: M.forgetting_quality(np.zeros((2, 0)), np.zeros((2, 0))), r"^unlearned: expected at least one example"),
    (lambda: M.ulira(np.zeros((3, 2)), np.array([[np.inf, 0.0]] * 3)), r"^retrained: expected finite"),
    (lambda: M.ulira(np.zeros((2, 2)), np.zeros((3, 2))), r"^unlearned: expected at least 3 models"),
    (lambda: M.klom(np.zeros((3, 2)), np.zeros((3, 2)), bins=0), r"^bins: expected an int >= 1"),
    (lambda: M.klom(np.zeros((3, 2)), np.zeros((1, 2))), r"^retrained_margins: expected at least 2 models"),
    (lambda: M.logit_scaled_confidence(np.zeros((3, 4)), [0, 1]), r"^labels: expected 3 labels"),
    (lambda: M.logit_scaled_confidence(np.zeros((3, 1)), [0, 0, 0]), r"^logits: expected at least 2 classes"),
    (lambda: M.margins(np.zeros((2, 3)), [0, 3]), r"^labels: expected values in \[0, 3\)"),
    (lambda: M.rmia(np.full(3, 1.5), np.ones(4) / 2, np.ones((2, 3)) / 2, np.ones((2, 4)) / 2),
     r"^target_probs_forget: expected probabilities in \[0, 1\]"),
    (lambda: M.rmia(np.ones(3) / 2, np.ones(4) / 2, np.ones((2, 5)) / 2, np.ones((2, 4)) / 2),
     r"^reference_probs_forget: expected 3 forget examples"),
    (lambda: M.epsilon_points([0.1], 1), r"^k: expected an int >= 2"),
])
def test_errors_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()



# --- F against another row: the paired bootstrap interval ------------------------------------------

def test_f_difference_is_the_mean_difference_with_a_bootstrap_interval_like_a_brute_force_one():
    rng = np.random.default_rng(5)
    a = rng.choice([0.0, 0.125, 0.25, 0.5, 1.0], size=400)
    b = np.clip(a + rng.normal(0.05, 0.2, size=400), 0, 1)
    out = M.f_difference(a, b)
    assert out["diff"] == pytest.approx(a.mean() - b.mean(), abs=1e-15)
    # oracle: a brute-force percentile bootstrap of the paired differences (numpy, other draws)
    d = a - b
    means = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(4000)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    width = hi - lo
    assert out["low"] == pytest.approx(lo, abs=0.1 * width) and out["high"] == pytest.approx(hi, abs=0.1 * width)
    # and the normal approximation's width: 2 * 1.96 * sd / sqrt(n)
    assert out["high"] - out["low"] == pytest.approx(2 * 1.96 * d.std(ddof=1) / math.sqrt(d.size), rel=0.15)
    assert M.f_difference(a, b) == out  # the seed fixes the resamples
    wider = M.f_difference(a, b, confidence=0.99)
    assert wider["low"] < out["low"] and wider["high"] > out["high"]


def test_f_difference_without_spread_and_its_bad_input():
    a = np.array([0.5, 0.25, 1.0])
    assert M.f_difference(a, a - 0.125) == {"diff": 0.125, "low": 0.125, "high": 0.125}  # every example moved alike
    assert M.f_difference([1.0], [0.5]) == {"diff": 0.5, "low": 0.5, "high": 0.5}
    with pytest.raises(ValueError, match=r"reference_points: expected the shape of points \(3,\)"):
        M.f_difference(a, a[:2])
    with pytest.raises(ValueError, match=r"points: expected a 1-D array"):
        M.f_difference(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"confidence: expected a float in \(0, 1\), got 1.5"):
        M.f_difference(a, a, confidence=1.5)
    with pytest.raises(ValueError, match=r"n_resamples: expected an int >= 100, got 10"):
        M.f_difference(a, a, n_resamples=10)
    with pytest.raises(ValueError, match=r"points: expected finite values"):
        M.f_difference([np.nan, 1.0], [0.0, 1.0])
