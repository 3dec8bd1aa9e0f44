"""Clustering scores of the Rust engine against independent oracles.

Oracles: scikit-learn for NMI (four averages), AMI (four averages), ARI, homogeneity,
completeness, V-measure, the contingency table and the pair confusion matrix; an explicit
enumeration of all pairs (scored by sklearn's precision/recall/F1) for the pair scores; a brute
force over all matchings (and sklearn's accuracy/F1 of the relabelled predictions) for the
Hungarian-matched scores.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics.cluster import contingency_matrix as sk_contingency
from sklearn.metrics.cluster import pair_confusion_matrix

import unlearnkit.metrics as M

AVERAGES = ("arithmetic", "geometric", "min", "max")
TOL = 1e-10
I64 = np.iinfo(np.int64)


def close(a: float, b: float, tol: float = TOL) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def ami_is_zero_over_zero(y, c, average: str) -> bool:
    """AMI is 0/0 when one labeling is all singletons (then E[MI] = MI = the other's entropy) and
    the average equals that entropy: scikit-learn's value is then rounding noise (its +-eps
    clamps), ours is 1.0, the value sklearn's comment intends."""
    y, c = np.asarray(y), np.asarray(c)
    if len(y) <= 1:
        return False
    dy, dc = len(np.unique(y)) == len(y), len(np.unique(c)) == len(c)
    if len(np.unique(y)) == 1 or len(np.unique(c)) == 1:
        return False
    return (dy or dc) and (average == "min" or (dy and dc))


def check_ami(ours: float, y, c, average: str = "arithmetic") -> None:
    if ami_is_zero_over_zero(y, c, average):
        assert ours == 1.0
    else:
        want = skm.adjusted_mutual_info_score(y, c, average_method=average)
        assert close(ours, want), (ours, want)


def sklearn_scores(y, c) -> dict:
    h, comp, v = skm.homogeneity_completeness_v_measure(y, c)
    out = {
        "nmi": skm.normalized_mutual_info_score(y, c),
        "nmi_geometric": skm.normalized_mutual_info_score(y, c, average_method="geometric"),
        "nmi_min": skm.normalized_mutual_info_score(y, c, average_method="min"),
        "nmi_max": skm.normalized_mutual_info_score(y, c, average_method="max"),
        "ari": skm.adjusted_rand_score(y, c),
        "homogeneity": h,
        "completeness": comp,
        "v_measure": v,
    }
    return out


def pair_oracle(y, c) -> tuple[float, float, float]:
    """Precision/recall/F1 over the explicit list of unordered pairs (zero_division=1.0)."""
    y, c = np.asarray(y), np.asarray(c)
    if len(y) < 2:
        return 1.0, 1.0, 1.0
    i, j = np.triu_indices(len(y), 1)
    same_true = y[i] == y[j]
    same_pred = c[i] == c[j]
    p, r, f, _ = skm.precision_recall_fscore_support(same_true, same_pred, average="binary", zero_division=1.0)
    return float(p), float(r), float(f)


def matched_oracle(y, c) -> tuple[float, float]:
    """Best accuracy and best macro F1 over every one-to-one mapping of clusters to classes.

    Each mapping relabels the predictions (an unmatched cluster gets a label no class has); the
    scores of the best mappings are then confirmed with sklearn's accuracy_score / f1_score.
    """
    y, c = np.asarray(y), np.asarray(c)
    if len(y) == 0:
        return 1.0, 1.0
    classes, clusters = np.unique(y), np.unique(c)
    slots = list(clusters) + [None] * max(0, len(classes) - len(clusters))
    best = {"acc": (-1.0, None), "f1": (-1.0, None)}
    for perm in itertools.permutations(slots, len(classes)):
        mapping = {cl: cls for cls, cl in zip(classes, perm) if cl is not None}
        pred = np.array([mapping.get(v, I64.min) for v in c])
        acc = float(np.mean(pred == y))
        f1s = []
        for cls in classes:
            tp = np.sum((pred == cls) & (y == cls))
            denom = np.sum(pred == cls) + np.sum(y == cls)
            f1s.append(2 * tp / denom if denom else 0.0)
        f1 = float(np.mean(f1s))
        if acc > best["acc"][0]:
            best["acc"] = (acc, pred)
        if f1 > best["f1"][0]:
            best["f1"] = (f1, pred)
    acc, pred = best["acc"]
    assert close(acc, skm.accuracy_score(y, pred))
    f1, pred = best["f1"]
    assert close(f1, skm.f1_score(y, pred, labels=classes, average="macro", zero_division=0.0))
    return acc, f1


labelings = st.integers(0, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-3, 4), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
    )
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(labelings)
def test_every_score_equals_sklearn(pair):
    y, c = (np.asarray(v, dtype=np.int64) for v in pair)
    ours = M.clustering_scores(y, c)
    for key, want in sklearn_scores(y, c).items():
        assert close(ours[key], want), (key, ours[key], want)
    check_ami(ours["ami"], y, c)
    p, r, f = pair_oracle(y, c)
    assert close(ours["pair_precision"], p) and close(ours["pair_recall"], r) and close(ours["pair_f1"], f)
    # Single-score functions agree with the dict.
    for avg, key in zip(AVERAGES, ("nmi", "nmi_geometric", "nmi_min", "nmi_max")):
        assert M.normalized_mutual_info_score(y, c, average_method=avg) == ours[key]
        check_ami(M.adjusted_mutual_info_score(y, c, average_method=avg), y, c, avg)
    assert M.adjusted_rand_score(y, c) == ours["ari"]
    assert M.homogeneity_completeness_v_measure(y, c) == (ours["homogeneity"], ours["completeness"], ours["v_measure"])
    assert M.pair_f1_score(y, c) == ours["pair_f1"]


small_labelings = st.integers(0, 12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
    )
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(small_labelings)
def test_matched_scores_equal_brute_force_over_matchings(pair):
    y, c = (np.asarray(v, dtype=np.int64) for v in pair)
    acc, f1 = matched_oracle(y, c)
    ours = M.clustering_scores(y, c)
    assert close(ours["matched_accuracy"], acc) and close(ours["matched_f1"], f1)
    assert M.matched_accuracy_score(y, c) == ours["matched_accuracy"]
    assert M.matched_f1_score(y, c) == ours["matched_f1"]


def test_matched_scores_equal_hungarian_on_the_full_table():
    # A larger table with several connected blocks and singleton rows/columns.
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(3)
    y = rng.integers(0, 60, 20_000)
    c = np.where(rng.random(20_000) < 0.7, y // 2, rng.integers(100, 110, 20_000))
    c[:50] = np.arange(1000, 1050)  # singleton clusters
    w = sk_contingency(y, c).astype(float)
    r, k = linear_sum_assignment(w, maximize=True)
    f1 = 2 * w / (w.sum(1)[:, None] + w.sum(0)[None, :])
    r2, k2 = linear_sum_assignment(f1, maximize=True)
    ours = M.clustering_scores(y, c)
    assert close(ours["matched_accuracy"], w[r, k].sum() / len(y))
    assert close(ours["matched_f1"], f1[r2, k2].sum() / w.shape[0])


@pytest.mark.parametrize(
    "y, c",
    [
        ([], []),  # empty
        ([7], [3]),  # one sample
        ([1, 1, 1, 1], [0, 0, 0, 0]),  # single class, single cluster
        ([1, 1, 1, 1], [0, 1, 2, 3]),  # single class, all singletons
        ([0, 1, 2, 3], [5, 5, 5, 5]),  # all distinct classes, one cluster
        ([0, 1, 2, 3], [9, 8, 7, 6]),  # all distinct on both sides
        ([0, 0, 1, 1], [0, 1, 0, 1]),  # independent
        ([I64.min, I64.max, 0, I64.min], [I64.max, I64.max, -5, I64.min]),  # extreme values
        ([-10**15, 10**15, -10**15, 3], [2**40, 2**40, -(2**40), 0]),  # huge sparse values
    ],
)
def test_edge_cases_equal_sklearn(y, c):
    y, c = np.asarray(y, dtype=np.int64), np.asarray(c, dtype=np.int64)
    ours = M.clustering_scores(y, c)
    for key, want in sklearn_scores(y, c).items():
        assert close(ours[key], want), (key, ours[key], want)
    for avg in AVERAGES:
        check_ami(M.adjusted_mutual_info_score(y, c, average_method=avg), y, c, avg)
    p, r, f = pair_oracle(y, c)
    assert (ours["pair_precision"], ours["pair_recall"], ours["pair_f1"]) == pytest.approx((p, r, f), abs=TOL)
    if len(y) <= 6:
        acc, f1 = matched_oracle(y, c)
        assert close(ours["matched_accuracy"], acc) and close(ours["matched_f1"], f1)


def test_large_random_labelings_equal_sklearn():
    # The parallel dense path (1000 x 1000 table) on 2e5 samples.
    rng = np.random.default_rng(0)
    n = 200_000
    y = rng.integers(0, 1000, n)
    c = (y * 7 + rng.integers(0, 40, n)) % 1000
    ours = M.clustering_scores(y, c)
    want = sklearn_scores(y, c)
    for key in ("nmi", "nmi_geometric", "nmi_min", "nmi_max", "ari", "homogeneity", "completeness", "v_measure"):
        assert close(ours[key], want[key]), key
    (tn, fp), (fn, tp) = pair_confusion_matrix(y, c)
    assert close(ours["pair_precision"], tp / (tp + fp)) and close(ours["pair_recall"], tp / (tp + fn))
    assert close(ours["pair_f1"], 2 * tp / (2 * tp + fp + fn))
    # AMI on a smaller table (sklearn's EMI loop is quadratic in the number of clusters).
    y, c = y[:20_000] % 100, c[:20_000] % 90
    assert close(M.adjusted_mutual_info_score(y, c), skm.adjusted_mutual_info_score(y, c), 1e-9)


def exact_emi(y, c) -> float:
    """Expected mutual information summed in 40-digit arithmetic (mpmath), grouped by the
    distinct (row sum, column sum) pairs."""
    from collections import Counter

    import mpmath as mp

    mp.mp.dps = 40
    table = sk_contingency(y, c, sparse=True)
    rows = Counter(np.ravel(table.sum(1)).tolist())
    cols = Counter(np.ravel(table.sum(0)).tolist())
    n = len(y)
    big_n = mp.mpf(n)

    def lf(x):
        return mp.loggamma(x + 1)

    total = mp.mpf(0)
    for a, ca in rows.items():
        for b, cb in cols.items():
            s = mp.mpf(0)
            for x in range(max(1, a + b - n), min(a, b) + 1):
                lp = lf(a) + lf(b) + lf(n - a) + lf(n - b) - lf(n) - lf(x) - lf(a - x) - lf(b - x) - lf(n - a - b + x)
                s += x / big_n * mp.log(big_n * x / (a * b)) * mp.exp(lp)
            total += ca * cb * s
    return float(total)


def test_sparse_and_hashed_paths_equal_sklearn():
    # Many distinct values over a huge range: sorted encoding and the hashed table.
    rng = np.random.default_rng(1)
    n = 50_000
    y = rng.integers(-(2**62), 2**62, n)
    c = rng.integers(0, 30_000, n) * 1_000_003
    y[: n // 2] = y[n // 2:]  # some repeated classes
    ours = M.clustering_scores(y, c, matched=False)
    want = sklearn_scores(y, c)
    for key in ("nmi", "ari", "homogeneity", "completeness", "v_measure"):
        assert close(ours[key], want[key]), key
    # AMI against an exact expectation: here sklearn's own EMI is off by ~5e-9 relative (it sums
    # exp of log-gamma differences of size N log N over 7e8 terms), ours by < 1e-15.
    from unlearnkit import _core

    raw = _core.clustering_scores(y, c)
    emi = exact_emi(y, c)
    assert math.isclose(raw.expected_mutual_info, emi, rel_tol=1e-13)
    mi = skm.mutual_info_score(y, c)
    h = (raw.entropy_true + raw.entropy_pred) / 2
    assert close(ours["ami"], (mi - emi) / (h - emi), 1e-8)


def test_contingency_matrix_equals_sklearn_and_sums_over_shards():
    rng = np.random.default_rng(2)
    y = rng.integers(-5, 50, 5000)
    c = rng.integers(10, 40, 5000)
    classes, clusters, table = M.contingency_matrix(y, c)
    assert np.array_equal(classes, np.unique(y)) and np.array_equal(clusters, np.unique(c))
    assert table.dtype == np.int64 and np.array_equal(table, sk_contingency(y, c))
    _, _, sparse = M.contingency_matrix(y, c, sparse=True)
    assert np.array_equal(sparse.toarray(), table)
    whole = M.clustering_scores(y, c)
    assert M.scores_from_contingency(table) == whole
    assert M.scores_from_contingency(sparse) == whole
    # Shards with different label sets, summed.
    parts = [M.contingency_matrix(y[i:i + 1000], c[i:i + 1000]) for i in range(0, 5000, 1000)]
    cl, cu, total = M.sum_contingency(parts)
    assert np.array_equal(total, table) and np.array_equal(cl, classes) and np.array_equal(cu, clusters)
    # Empty rows/columns (a table over a fixed label range) are ignored.
    padded = np.zeros((table.shape[0] + 2, table.shape[1] + 3), dtype=np.int64)
    padded[1:-1, 2:-1] = table
    assert M.scores_from_contingency(padded) == whole
    assert M.scores_from_contingency(padded.astype(np.float64)) == whole


def test_input_kinds_give_the_same_scores():
    import torch

    rng = np.random.default_rng(4)
    y = rng.integers(0, 9, 3000)
    c = rng.integers(0, 7, 3000)
    want = M.clustering_scores(y, c)
    assert M.clustering_scores(y.astype(np.int32), c.astype(np.uint8)) == want
    assert M.clustering_scores(list(y), tuple(c)) == want
    assert M.clustering_scores(torch.from_numpy(y), torch.from_numpy(c)) == want
    assert M.clustering_scores(y.astype(np.float64), c) == want
    # Strided views.
    y2 = np.repeat(y, 2)[::2]
    c2 = np.stack([c, c], axis=1)[:, 1]
    assert not y2.flags.c_contiguous and not c2.flags.c_contiguous
    assert M.clustering_scores(y2, c2) == want


def test_clustering_scores_keys():
    d = M.clustering_scores([0, 0, 1], [1, 1, 0])
    assert tuple(d) == ("nmi", "nmi_geometric", "nmi_min", "nmi_max", "ami", "ari", "homogeneity", "completeness",
                        "v_measure", "pair_precision", "pair_recall", "pair_f1", "matched_accuracy", "matched_f1")
    assert all(isinstance(v, float) for v in d.values())


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: M.clustering_scores([0, 1, 2], [0, 1]), ValueError, "labels_pred.*length"),
        (lambda: M.clustering_scores(np.zeros((2, 2)), [0, 1]), ValueError, "labels_true.*1-D"),
        (lambda: M.clustering_scores([0, 1], [np.nan, 1]), ValueError, "labels_pred.*finite"),
        (lambda: M.clustering_scores([0.5, 1], [0, 1]), ValueError, "labels_true.*integer"),
        (lambda: M.clustering_scores(["a", "b"], [0, 1]), TypeError, "labels_true"),
        (lambda: M.clustering_scores(None, [0, 1]), TypeError, "labels_true"),
        (lambda: M.adjusted_mutual_info_score([0], [0], average_method="median"), ValueError, "average_method"),
        (lambda: M.normalized_mutual_info_score([0], [0], average_method="mean"), ValueError, "average_method"),
        (lambda: M.scores_from_contingency(np.array([[1, -1]])), ValueError, "table.*non-negative"),
        (lambda: M.scores_from_contingency(np.array([[1.5]])), ValueError, "table.*integer"),
        (lambda: M.scores_from_contingency(np.array([1, 2])), ValueError, "table.*2-D"),
        (lambda: M.scores_from_contingency(np.array([[np.inf]])), ValueError, "table.*finite"),
        (lambda: M.scores_from_contingency(np.array([["a"]])), TypeError, "table"),
        (lambda: M.sum_contingency([]), ValueError, "parts"),
        (lambda: M.sum_contingency([(np.array([0]), np.array([0]), np.ones((2, 2)))]), ValueError, "parts.*shape"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_engine_errors_are_value_errors():
    from unlearnkit import _core

    with pytest.raises(ValueError, match="labels_pred: expected the same length"):
        _core.clustering_scores(np.zeros(3, dtype=np.int64), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="average_method"):
        _core.normalized_mutual_info(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64), "x")


# ---------------------------------------------------------------------------------------------
# Regressions (issue 14): uint64 labels at or above 2**63, scores documented in [0, 1]


def test_uint64_labels_above_2_63_are_handled_exactly():
    """They used to be cast to int64 (wrapping to negative values): wrong class values and
    order. Oracle: scikit-learn's contingency matrix (np.unique on the uint64 values)."""
    rng = np.random.default_rng(7)
    values = np.array([0, 5, 2**63 - 1, 2**63, 2**63 + 7, 2**64 - 1], dtype=np.uint64)
    y = values[rng.integers(0, len(values), 500)]
    c = values[rng.integers(1, 4, 500)]
    classes, clusters, table = M.contingency_matrix(y, c)
    assert classes.dtype == np.uint64 and np.array_equal(classes, np.unique(y))
    assert np.array_equal(clusters, np.unique(c).astype(clusters.dtype))
    assert np.array_equal(table, sk_contingency(y, c))
    _, _, sparse = M.contingency_matrix(y, c, sparse=True)
    assert np.array_equal(sparse.toarray(), table)
    # Scores on the uint64 labels equal sklearn's (and those of the labels' codes).
    ours = M.clustering_scores(y, c)
    want = sklearn_scores(y, c)
    for key in ("nmi", "nmi_min", "ari", "homogeneity", "completeness", "v_measure"):
        assert close(ours[key], want[key]), key
    assert close(ours["ami"], skm.adjusted_mutual_info_score(y, c), 1e-8)
    assert ours == M.clustering_scores(np.unique(y, return_inverse=True)[1], np.unique(c, return_inverse=True)[1])
    # Sharded tables over uint64 labels add up to the whole one.
    parts = [M.contingency_matrix(y[:200], c[:200]), M.contingency_matrix(y[200:], c[200:])]
    total = M.sum_contingency(parts)
    assert np.array_equal(total[0], classes) and np.array_equal(total[2], table)
    # uint64 >= 2**63 and negative labels cannot share one integer type.
    with pytest.raises(ValueError, match="classes: expected labels that fit one integer type"):
        M.sum_contingency([(np.array([-1]), np.array([0]), np.ones((1, 1))),
                           (np.array([2**63], dtype=np.uint64), np.array([0]), np.ones((1, 1)))])


def test_bounded_scores_never_exceed_one():
    """Values like 1.0000000000000593 (labels_true all distinct, so MI = H(pred) exactly) must
    be clamped: NMI (every average), homogeneity, completeness and V-measure are in [0, 1]."""
    rng = np.random.RandomState(0)
    y, c = np.arange(10000), rng.randint(0, 10, 10000)
    assert M.normalized_mutual_info_score(y, c, average_method="min") <= 1.0
    worst = 0.0
    for seed in range(8):
        r = np.random.RandomState(seed)
        n = int(r.randint(100, 10000))
        a, b = np.arange(n), r.randint(0, int(r.randint(2, 50)), n)
        for x, z in ((a, b), (b, a)):
            s = M.clustering_scores(x, z, matched=False)
            h, co, v = M.homogeneity_completeness_v_measure(x, z)
            vals = [s[k] for k in ("nmi", "nmi_geometric", "nmi_min", "nmi_max", "homogeneity", "completeness",
                                   "v_measure")] + [h, co, v, M.homogeneity_score(x, z), M.completeness_score(x, z)]
            vals += [M.normalized_mutual_info_score(x, z, average_method=avg) for avg in AVERAGES]
            assert all(0.0 <= val <= 1.0 for val in vals), vals
            # And they still equal sklearn's (which may sit an ulp above 1).
            assert close(s["nmi_min"], skm.normalized_mutual_info_score(x, z, average_method="min"))
            worst = max(worst, skm.normalized_mutual_info_score(x, z, average_method="min"))
    assert worst >= 1.0  # the oracle does go above 1 on these cases: the test exercises the clamp


def test_engine_scores_are_a_typed_object():
    from unlearnkit import _core

    y = np.array([0, 0, 1, 1, 2, 2], dtype=np.int64)
    c = np.array([0, 0, 1, 2, 2, 2], dtype=np.int64)
    s = _core.clustering_scores(y, c)
    assert isinstance(s, _core.Scores) and isinstance(s.matching, _core.Matching)
    assert (s.n_samples, s.n_classes, s.n_clusters) == (6, 3, 3)
    assert close(s.nmi_arithmetic, skm.normalized_mutual_info_score(y, c))
    assert close(s.ami_max, skm.adjusted_mutual_info_score(y, c, average_method="max"))
    assert np.array_equal(s.matching.row_sums, [2, 2, 2]) and np.array_equal(s.matching.col_sums, [2, 1, 3])
    with pytest.raises(AttributeError):
        s.ari = 0.0  # frozen
    s = _core.clustering_scores(y, c, False, False)
    assert s.matching is None and math.isnan(s.ami_arithmetic)
    t = _core.scores_from_cells(np.array([0, 1]), np.array([0, 1]), np.array([3, 4]))
    assert t.nmi_arithmetic == 1.0 and t.matching.trivial_count == 7
