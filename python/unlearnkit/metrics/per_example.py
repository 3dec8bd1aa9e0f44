"""Layer: metrics. Per-example unlearning scores from pools of models (``shared/papers/evaluation.md``).

A population attack trains one classifier over all forget samples and averages away the samples
that were not forgotten. These scores look at each forget example on its own, through the
distribution of one statistic over K models of each pool:

- statistics per (model, example): :func:`logit_scaled_confidence` (phi = ln p_y - ln(1 - p_y))
  and :func:`margins` (z_y - max_{c != y} z_c);
- the NeurIPS 2023 unlearning challenge's score: :func:`per_example_epsilon`,
  :func:`forgetting_quality` (F) and :func:`challenge_score`;
- U-LiRA, leave-one-out over both pools (:func:`ulira`, :func:`ulira_scores`);
- KLOM, the KL divergence of the margin histograms (:func:`klom`);
- RMIA, the pairwise likelihood-ratio membership test (:func:`rmia`, :func:`rmia_scores`).

Pools are arrays of shape (K, n): row k is model k, column i example i. Every function validates
its input (shapes, K >= 2, finite values) and raises ``ValueError``/``TypeError`` as
``name: expected ..., got ...``.

Numerical invariants:

- phi is computed from logits as ``z_y - logsumexp_{c != y} z_c`` (float64): no ``log(1 - p)`` of a
  rounded probability, exact for logits of any magnitude (no overflow, no cancellation to 0);
- the challenge's threshold sweep runs in the Rust engine (``unlearnkit._core.challenge_epsilons``):
  its grids are ``numpy.linspace``'s values bit for bit and its counts exact comparisons, so it
  equals a brute-force loop over the same rules;
- with K models in the smaller pool, the largest finite epsilon is ln(K (1 - delta) - 1), about
  ln(K - 1) (:func:`largest_measurable_epsilon`): report K beside every score.
"""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_labels, check_positive_int, to_numpy

__all__ = ["challenge_score", "epsilon_points", "f_difference", "forgetting_quality", "klom", "largest_measurable_epsilon",
           "logit_scaled_confidence", "margins", "per_example_epsilon", "rmia", "rmia_scores", "ulira",
           "ulira_scores"]

#: The epsilon of a spiky example, and the clip of every epsilon (the challenge's value).
EPS_CLIP = 50.0


# ---------------------------------------------------------------------------------------------
# validation


def _describe_shape(a: np.ndarray) -> str:
    return f"an array of shape {a.shape}"


def _pool(x, name: str, *, min_models: int = 2) -> np.ndarray:
    """(K, n) float64, K >= min_models, n >= 1, finite."""
    a = to_numpy(x, name)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric array (K models, n examples), got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (K models, n examples), got {_describe_shape(a)}")
    if a.shape[0] < min_models:
        raise ValueError(f"{name}: expected at least {min_models} models (rows), got {a.shape[0]}")
    if a.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one example (column), got shape {a.shape}")
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=0).sum())
        raise ValueError(f"{name}: expected finite values, got NaN or Inf in {bad} example(s)")
    return a


def _pools(u, r, name_u: str, name_r: str, *, min_models: int = 2) -> tuple[np.ndarray, np.ndarray]:
    u = _pool(u, name_u, min_models=min_models)
    r = _pool(r, name_r, min_models=min_models)
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"{name_r}: expected {u.shape[1]} examples (columns, as {name_u}), got {r.shape[1]}")
    return u, r


def _logits(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = to_numpy(logits, "logits")
    if z.dtype.kind not in "fiu":
        raise TypeError(f"logits: expected a numeric array, got dtype {z.dtype}")
    if z.ndim not in (2, 3):
        raise ValueError(f"logits: expected an array (n, n_classes) or (K, n, n_classes), got {_describe_shape(z)}")
    if z.shape[-1] < 2:
        raise ValueError(f"logits: expected at least 2 classes (columns), got {z.shape[-1]}")
    z = np.asarray(z, dtype=np.float64)
    if not np.isfinite(z).all():
        raise ValueError("logits: expected finite values, got NaN or Inf")
    y = check_labels(labels, "labels")
    if len(y) != z.shape[-2]:
        raise ValueError(f"labels: expected {z.shape[-2]} labels (one per row of logits), got {len(y)}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels: expected values in [0, {z.shape[-1]}), got {y.min()}..{y.max()}")
    return z, y


def _own_and_rest(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z_y (..., n) and the logits with the own class set to -inf (..., n, C)."""
    idx = np.broadcast_to(y[:, None], z.shape[:-1] + (1,))
    own = np.take_along_axis(z, idx, axis=-1)[..., 0]
    rest = z.copy()
    np.put_along_axis(rest, idx, -np.inf, axis=-1)
    return own, rest


# ---------------------------------------------------------------------------------------------
# statistics per (model, example)


def logit_scaled_confidence(logits, labels) -> np.ndarray:
    """phi = ln p_y - ln(1 - p_y), computed stably from logits.

    ``phi = z_y - logsumexp_{c != y} z_c``: both logarithms share the softmax normaliser, which
    cancels, and the log-sum-exp of the wrong classes is taken about its own maximum, so phi is
    exact for logits of any magnitude (a p_y that rounds to 1 in float64 still gets its phi).

    Args:
        logits: (n, C) or (K, n, C) logits (numpy or torch); C >= 2.
        labels: (n,) integer labels in [0, C).

    Returns:
        (n,) or (K, n) float64.
    """
    z, y = _logits(logits, labels)
    own, rest = _own_and_rest(z, y)
    m = rest.max(axis=-1)
    lse = m + np.log(np.exp(rest - m[..., None]).sum(axis=-1))
    return own - lse


def margins(logits, labels) -> np.ndarray:
    """z_y - max_{c != y} z_c: (n, C) -> (n,) or (K, n, C) -> (K, n) float64 (logit units)."""
    z, y = _logits(logits, labels)
    own, rest = _own_and_rest(z, y)
    return own - rest.max(axis=-1)


# ---------------------------------------------------------------------------------------------
# 1. the NeurIPS 2023 unlearning challenge


def largest_measurable_epsilon(k: int, delta: float = 1e-5) -> float:
    """The largest finite per-example epsilon K models per pool can show: ln(K (1 - delta) - 1).

    A rule that misclassifies one model of each pool (FPR = FNR = 1/K) gives it; fewer errors
    means a perfect separation (epsilon = inf, clipped to 50). About ln(K - 1).
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k: expected an int >= 2 (models per pool), got {k!r}")
    return float(max(0.0, math.log(1 - delta - 1 / k) - math.log(1 / k)))


def per_example_epsilon(unlearned, retrained, *, delta: float = 1e-5) -> np.ndarray:
    """Per-example epsilon of the NeurIPS 2023 unlearning challenge (Triantafillou et al., 2024).

    For each example, with u its statistic under the unlearned models and r under the retrained:
    if ``min(range u, range r) / max(range u, range r) < 0.01`` (one pool is a spike, e.g. a
    deterministic method) epsilon is 50; otherwise two families of decision rules are swept,
    thresholds (``phi >= t``, t over ``ceil(100 (hi - lo))`` values) and bands
    (``l <= phi <= h`` around the peakier pool, 400 x ``ceil(100 (hi_p - lo_p - w + 4))`` rules),
    each rule's (FPR, FNR) over the two pools gives
    ``max(0, ln(1 - delta - FPR) - ln FNR, ln(1 - delta - FNR) - ln FPR)`` (inf if both are 0,
    discarded if one is), and epsilon is the maximum, clipped to [0, 50].

    Ties: when the medians (or the ranges) are equal, the unlearned pool is the positive (the
    peakier) one. A term ln of a negative number (FPR or FNR = 1) is left out; a rule with both
    terms left out (a perfect inverted separation) counts as inf (evaluation.md leaves both cases
    open; this is our reading).

    Args:
        unlearned: (K_u, n) logit-scaled confidences under the unlearned models, K_u >= 2.
        retrained: (K_r, n) under the retrained models, K_r >= 2.
        delta: the delta of (epsilon, delta); the challenge's 1e-5.

    Returns:
        (n,) float64 in [0, 50].
    """
    from .. import _core

    u, r = _pools(unlearned, retrained, "unlearned", "retrained")
    if not (isinstance(delta, (int, float, np.floating)) and 0 <= delta < 1):
        raise ValueError(f"delta: expected a number in [0, 1), got {delta!r}")
    return _core.challenge_epsilons(np.ascontiguousarray(u.T), np.ascontiguousarray(r.T), float(delta))


def epsilon_points(epsilons, k: int) -> np.ndarray:
    """Points per example: bins of width 0.5 from 0; bin j = 0, 1, ... gives 2^-j points; the
    bins end at ``ceil(ln(k - 1))`` and an epsilon beyond the last bin scores 0.

    Args:
        epsilons: (n,) per-example epsilons (:func:`per_example_epsilon`).
        k: models per pool (the smaller pool when they differ), >= 2.
    """
    e = to_numpy(epsilons, "epsilons").astype(np.float64, copy=False)
    if e.ndim != 1:
        raise ValueError(f"epsilons: expected a 1-D array, got {_describe_shape(e)}")
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("epsilons: expected non-negative values, got NaN or negative values")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k: expected an int >= 2 (models per pool), got {k!r}")
    top = math.ceil(math.log(k - 1))
    j = np.floor(e / 0.5)
    return np.where(e < top, np.exp2(-np.minimum(j, 1074)), 0.0)


def forgetting_quality(unlearned, retrained, *, delta: float = 1e-5) -> float:
    """F: the mean of :func:`epsilon_points` over the forget set (1 = indistinguishable from
    retraining in every example; 0 = every example separated).

    Args:
        unlearned: (K_u, n) logit-scaled confidences of the forget examples under the unlearned pool.
        retrained: (K_r, n) under the retrained pool. The bins end at ceil(ln(K - 1)) with
            K = min(K_u, K_r).
    """
    u, r = _pools(unlearned, retrained, "unlearned", "retrained")
    eps = per_example_epsilon(u, r, delta=delta)
    return float(epsilon_points(eps, min(u.shape[0], r.shape[0])).mean())


def f_difference(points, reference_points, *, confidence: float = 0.95, n_resamples: int = 2000,
                 seed: int = 0) -> dict[str, float]:
    """F of one pool minus F of another (typically the original's: doing nothing), with a paired
    percentile bootstrap interval over the forget examples (``scipy.stats.bootstrap``).

    F is the mean of per-example points, so the difference is the mean of per-example differences;
    resampling examples (both pools' points of an example together) gives its spread over *which
    examples* were forgotten. It does not cover the pools' seeds (a new pool of K models is another
    draw): an interval that holds 0 cannot tell the two rows apart; one that does not, can, for this
    forget set and these pools.

    Args:
        points: (n,) :func:`epsilon_points` of the row, one per forget example.
        reference_points: (n,) of the row it is compared with, same examples in the same order.
        confidence: two-sided level of the interval, in (0, 1).
        n_resamples: bootstrap resamples, >= 100; ``seed`` fixes them (the same interval every run).

    Returns:
        ``{"diff": F - F_ref, "low": ..., "high": ...}``; ``low == high == diff`` when every
        example's difference is the same (no spread to resample).
    """
    from scipy import stats

    a = to_numpy(points, "points").astype(np.float64, copy=False)
    b = to_numpy(reference_points, "reference_points").astype(np.float64, copy=False)
    for name, x in (("points", a), ("reference_points", b)):
        if x.ndim != 1 or x.size < 1:
            raise ValueError(f"{name}: expected a 1-D array of at least one example, got {_describe_shape(x)}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    if a.shape != b.shape:
        raise ValueError(f"reference_points: expected the shape of points {a.shape} (the same examples), got {b.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a float in (0, 1), got {confidence!r}")
    n_resamples = check_positive_int(n_resamples, "n_resamples", minimum=100)
    d = a - b
    diff = float(d.mean())
    if d.size < 2 or np.ptp(d) == 0.0:
        return {"diff": diff, "low": diff, "high": diff}
    res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed), vectorized=True)
    return {"diff": diff, "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high)}


def _mean_accuracy(x, name: str) -> float:
    a = to_numpy(x, name).astype(np.float64, copy=False).ravel()
    if a.size == 0 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name}: expected accuracies in [0, 1] (a number or one per model), got {x!r}"[:300])
    return float(a.mean())


def challenge_score(F: float, ra_u, ra_r, ta_u, ta_r) -> float:
    """The challenge's final score: ``F * (RA_u / RA_r) * (TA_u / TA_r)``.

    Args:
        F: :func:`forgetting_quality`.
        ra_u, ra_r: retain accuracy of the unlearned and retrained pools (a number, or one per
            model: averaged over the pool), in [0, 1].
        ta_u, ta_r: test accuracy, likewise.
    """
    f = float(F)
    if not 0 <= f <= 1:
        raise ValueError(f"F: expected a number in [0, 1], got {F!r}")
    vals = [_mean_accuracy(v, n) for v, n in ((ra_u, "ra_u"), (ra_r, "ra_r"), (ta_u, "ta_u"), (ta_r, "ta_r"))]
    for v, n in ((vals[1], "ra_r"), (vals[3], "ta_r")):
        if v == 0:
            raise ValueError(f"{n}: expected a positive accuracy (it divides), got 0")
    return f * (vals[0] / vals[1]) * (vals[2] / vals[3])


# ---------------------------------------------------------------------------------------------
# ROC helpers


def _roc(pos: np.ndarray, neg: np.ndarray) -> dict:
    """AUC and TPR at 1% and 0.1% FPR of scores where larger = positive."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    s = np.r_[pos.ravel(), neg.ravel()]
    fpr, tpr, _ = roc_curve(y, s)
    return {"auc": float(roc_auc_score(y, s)),
            "tpr_at_1pct_fpr": float(tpr[fpr <= 0.01].max()),
            "tpr_at_0.1pct_fpr": float(tpr[fpr <= 0.001].max())}


# ---------------------------------------------------------------------------------------------
# 2. U-LiRA


def _loo_gaussian(x: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out mean and std (maximum likelihood, ddof=0) of each row of x (K, n) against
    the other K - 1 rows: (K, n) each. The sum of squares is down-dated about the mean, not
    formed from raw squares, so large offsets cost no precision."""
    k = x.shape[0]
    mean = x.mean(axis=0)
    ss = ((x - mean) ** 2).sum(axis=0)
    loo_mean = (k * mean - x) / (k - 1)
    loo_ss = np.maximum(ss - (x - mean) * (x - loo_mean), 0.0)
    return loo_mean, np.maximum(np.sqrt(loo_ss / (k - 1)), min_std)


def _log_normal(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi)


def ulira_scores(unlearned, retrained, *, min_std: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out log likelihood ratios of U-LiRA (Hayes et al., 2024), fixed forget set.

    Each model of either pool is the target once. For target model t and example i, one Gaussian
    is fitted (maximum likelihood) to the example's statistic over the unlearned models and one
    over the retrained models, leaving t out of its own pool; the score is
    ``ln N(phi_ti; mu_u, sigma_u) - ln N(phi_ti; mu_r, sigma_r)`` (> 0: called "unlearned").

    Args:
        unlearned: (K_u, n) logit-scaled confidences under the unlearned pool, K_u >= 3 (leaving
            one out must leave two models to fit a Gaussian).
        retrained: (K_r, n) under the retrained pool, K_r >= 3.
        min_std: floor of each fitted standard deviation (phi units), so a pool that is a spike
            (a deterministic method) gives a finite, very peaked density instead of 0/0.

    Returns:
        (scores of the unlearned targets (K_u, n), scores of the retrained targets (K_r, n)).
    """
    # leave-one-out leaves K - 1 models to fit each Gaussian: at least 2
    u, r = _pools(unlearned, retrained, "unlearned", "retrained", min_models=3)
    if not (isinstance(min_std, (int, float, np.floating)) and min_std > 0 and math.isfinite(min_std)):
        raise ValueError(f"min_std: expected a positive number, got {min_std!r}")
    mu_u_loo, sd_u_loo = _loo_gaussian(u, min_std)
    mu_r_loo, sd_r_loo = _loo_gaussian(r, min_std)
    mu_u, sd_u = u.mean(axis=0), np.maximum(u.std(axis=0), min_std)
    mu_r, sd_r = r.mean(axis=0), np.maximum(r.std(axis=0), min_std)
    s_u = _log_normal(u, mu_u_loo, sd_u_loo) - _log_normal(u, mu_r, sd_r)
    s_r = _log_normal(r, mu_u, sd_u) - _log_normal(r, mu_r_loo, sd_r_loo)
    return s_u, s_r


def ulira(unlearned, retrained, *, min_std: float = 1e-6) -> dict:
    """U-LiRA's per-example attack, leave-one-out over both pools (the fixed-forget-set variant).

    Every (target model, forget example) pair is classified "unlearned" when the likelihood
    ratio of :func:`ulira_scores` exceeds 1.

    Returns:
        ``balanced_accuracy`` (0.5 = indistinguishable from retraining, the ideal; 1 = always
        told apart), ``auc`` of the ratio as a score, and ``tpr_at_1pct_fpr``,
        ``tpr_at_0.1pct_fpr`` (positives: unlearned targets).
    """
    s_u, s_r = ulira_scores(unlearned, retrained, min_std=min_std)
    out = {"balanced_accuracy": float(0.5 * ((s_u > 0).mean() + (s_r <= 0).mean()))}
    out.update(_roc(s_u, s_r))
    return out


# ---------------------------------------------------------------------------------------------
# 3. KLOM


def _histograms(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Counts (n, bins) of each column of x (K, n) over [lo_i, hi_i] in equal-width bins,
    assigning values to bins exactly as ``numpy.histogram(x[:, i], bins, (lo_i, hi_i))`` does.
    Columns with lo == hi are not used by the caller."""
    k, n = x.shape
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    norm = bins / safe
    edges = np.linspace(lo, hi, bins + 1, axis=1)  # (n, bins + 1), numpy's edges
    idx = ((x - lo) * norm).astype(np.intp)
    idx[idx == bins] -= 1
    idx = np.clip(idx, 0, bins - 1)
    cols = np.broadcast_to(np.arange(n), x.shape)
    dec = x < edges[cols, idx]
    idx[dec] -= 1
    inc = (x >= edges[cols, idx + 1]) & (idx != bins - 1)
    idx[inc] += 1
    counts = np.zeros((n, bins), np.int64)
    np.add.at(counts, (cols.ravel(), idx.ravel()), 1)
    return counts


def klom(unlearned_margins, retrained_margins, *, bins: int = 20, smoothing: float = 1e-5) -> np.ndarray:
    """KLOM (Georgiev et al., 2024): per example, KL(unlearned || retrained) of the margin
    distributions.

    Each distribution is a histogram of the example's margin over its pool, ``bins`` equal-width
    bins over the pooled range (both pools together), as probabilities plus ``smoothing`` per
    bin, renormalised, so empty bins stay finite. An example whose pooled margins are all equal
    scores 0. 0 is perfect.

    Args:
        unlearned_margins: (K_u, n) margins (:func:`margins`) under the unlearned pool, K_u >= 2.
        retrained_margins: (K_r, n) under the retrained pool.
        bins: number of bins (20, the paper's).
        smoothing: added to each bin's probability before renormalising.

    Returns:
        (n,) float64 >= 0 (nats).
    """
    u, r = _pools(unlearned_margins, retrained_margins, "unlearned_margins", "retrained_margins")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins: expected an int >= 1, got {bins!r}")
    if not (isinstance(smoothing, (int, float, np.floating)) and smoothing > 0 and math.isfinite(smoothing)):
        raise ValueError(f"smoothing: expected a positive number, got {smoothing!r}")
    lo = np.minimum(u.min(axis=0), r.min(axis=0))
    hi = np.maximum(u.max(axis=0), r.max(axis=0))

    def probs(x):
        p = _histograms(x, lo, hi, int(bins)) / x.shape[0] + smoothing
        return p / p.sum(axis=1, keepdims=True)

    pu, pr = probs(u), probs(r)
    kl = (pu * (np.log(pu) - np.log(pr))).sum(axis=1)
    return np.where(hi > lo, np.maximum(kl, 0.0), 0.0)


# ---------------------------------------------------------------------------------------------
# 4. RMIA


def _probs_pool(x, name: str, min_models: int = 1) -> np.ndarray:
    a = to_numpy(x, name)
    if a.ndim == 1:
        a = a[None, :]
    a = _pool(a, name, min_models=min_models)
    if (a < 0).any() or (a > 1).any():
        raise ValueError(f"{name}: expected probabilities in [0, 1], got values from {a.min():.4g} to {a.max():.4g}")
    return a


def rmia_scores(target_probs_forget, target_probs_population, reference_probs_forget,
                reference_probs_population, *, gamma: float = 1.0, offline_a: float = 1.0,
                exclude_target: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """RMIA scores (Zarifzadeh, Liu, Shokri, ICML 2024) of forget and population examples.

    ``LR(x) = p_theta(y|x) / p_ref(y|x)`` with ``p_ref = ((1 + a) p_OUT + (1 - a)) / 2``, p_OUT the
    mean over the reference models (the paper's offline form; a = 1 is the plain mean). The score
    of x is the fraction of population examples z with ``LR(x) / LR(z) >= gamma``; a population
    example is compared with every *other* population example.

    Args:
        target_probs_forget: (n_f,) or (K_t, n_f) p_y of the forget examples under each target model.
        target_probs_population: (n_p,) or (K_t, n_p) p_y of unseen examples (n_p >= 2).
        reference_probs_forget: (K_r, n_f) p_y under the reference models (the retrained pool).
        reference_probs_population: (K_r, n_p).
        gamma: the pairwise threshold (the paper's 1).
        offline_a: the offline scaling a in (0, 1].
        exclude_target: the targets are the reference models themselves (K_t = K_r): target k's
            p_ref leaves reference k out.

    Returns:
        (scores of forget examples (K_t, n_f), scores of population examples (K_t, n_p)), in [0, 1].
    """
    tf = _probs_pool(target_probs_forget, "target_probs_forget")
    tp = _probs_pool(target_probs_population, "target_probs_population")
    rf = _probs_pool(reference_probs_forget, "reference_probs_forget")
    rp = _probs_pool(reference_probs_population, "reference_probs_population")
    if tp.shape[0] != tf.shape[0]:
        raise ValueError(f"target_probs_population: expected {tf.shape[0]} target models (rows), got {tp.shape[0]}")
    if rf.shape[1] != tf.shape[1]:
        raise ValueError(f"reference_probs_forget: expected {tf.shape[1]} forget examples (columns), got {rf.shape[1]}")
    if rp.shape != (rf.shape[0], tp.shape[1]):
        raise ValueError(f"reference_probs_population: expected shape {(rf.shape[0], tp.shape[1])}, got {rp.shape}")
    if tp.shape[1] < 2:
        raise ValueError(f"target_probs_population: expected at least 2 population examples, got {tp.shape[1]}")
    if not (isinstance(gamma, (int, float, np.floating)) and gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma: expected a positive number, got {gamma!r}")
    if not (isinstance(offline_a, (int, float, np.floating)) and 0 < offline_a <= 1):
        raise ValueError(f"offline_a: expected a number in (0, 1], got {offline_a!r}")
    k_t, k_r = tf.shape[0], rf.shape[0]
    if exclude_target:
        if k_t != k_r:
            raise ValueError(f"exclude_target: expected as many targets as references ({k_r}), got {k_t}")
        if k_r < 2:
            raise ValueError("exclude_target: expected at least 2 reference models, got 1")
        out_f = (rf.sum(axis=0) - rf) / (k_r - 1)
        out_p = (rp.sum(axis=0) - rp) / (k_r - 1)
    else:
        out_f, out_p = rf.mean(axis=0, keepdims=True), rp.mean(axis=0, keepdims=True)
    tiny = np.finfo(np.float64).tiny
    a = float(offline_a)

    def log_lr(p_t, p_out):
        p_ref = 0.5 * ((1 + a) * p_out + (1 - a))
        return np.log(np.maximum(p_t, tiny)) - np.log(np.maximum(p_ref, tiny))

    lr_f = np.broadcast_to(log_lr(tf, out_f), tf.shape)
    lr_p = np.broadcast_to(log_lr(tp, out_p), tp.shape)
    lg = math.log(gamma)
    n_p = tp.shape[1]
    s_f = np.empty(tf.shape)
    s_p = np.empty(tp.shape)
    for k in range(k_t):
        z = np.sort(lr_p[k])
        s_f[k] = np.searchsorted(z, lr_f[k] - lg, side="right") / n_p
        thr = lr_p[k] - lg
        self_in = lr_p[k] <= thr
        s_p[k] = (np.searchsorted(z, thr, side="right") - self_in) / (n_p - 1)
    return s_f, s_p


def rmia(target_probs_forget, target_probs_population, reference_probs_forget, reference_probs_population, *,
         gamma: float = 1.0, offline_a: float = 1.0, exclude_target: bool = False) -> dict:
    """RMIA separating the forget examples (positives) from unseen population examples
    (negatives) under the target models; arguments as :func:`rmia_scores`.

    Returns:
        ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr`` over all (target, example) pairs. A
        method that forgot sits where the retrained models do (``exclude_target=True`` with the
        retrained pool as both targets and references).
    """
    s_f, s_p = rmia_scores(target_probs_forget, target_probs_population, reference_probs_forget,
                           reference_probs_population, gamma=gamma, offline_a=offline_a,
                           exclude_target=exclude_target)
    return _roc(s_f, s_p)
