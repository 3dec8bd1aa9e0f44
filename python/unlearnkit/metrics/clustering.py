"""Clustering scores of two labelings, computed by the Rust engine (``unlearnkit._core``).

Arguments follow scikit-learn (``labels_true``, ``labels_pred``) and so do the values,
including the edge cases (one cluster, all singletons, empty input). The engine builds the
contingency table once, in one parallel pass, and derives every score from it, so
``clustering_scores`` costs about as much as a single score.

Labels are integers of any range (negative and huge values included, uint64 up to 2**64 - 1),
or floats holding integers; numpy arrays, torch tensors and sequences are accepted.

Invariants: NMI (every average), homogeneity, completeness and V-measure are in [0, 1] (the
engine clamps ratios that rounding puts an ulp above 1); uint64 labels at or above 2**63 are
factorised exactly (``np.unique``), never wrapped to negative int64.

Sharded data: build one table per shard with ``contingency_matrix``, add them with
``sum_contingency`` and score the sum once with ``scores_from_contingency``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _core
from .._validation import _describe, check_choice, check_labels, check_same_length, to_numpy

__all__ = [
    "adjusted_mutual_info_score",
    "adjusted_rand_score",
    "clustering_scores",
    "completeness_score",
    "contingency_matrix",
    "homogeneity_completeness_v_measure",
    "homogeneity_score",
    "matched_accuracy_score",
    "matched_f1_score",
    "normalized_mutual_info_score",
    "pair_f1_score",
    "pair_precision_recall_f1",
    "scores_from_contingency",
    "sum_contingency",
    "v_measure_score",
]

_AVERAGES = ("arithmetic", "geometric", "min", "max")

#: The largest connected block of the table (rows x columns) handed to the Hungarian solver;
#: a larger one makes the matched scores NaN (``clustering_scores``) or raise (``matched_*``).
MAX_MATCHING_CELLS = 25_000_000

#: Keys of ``clustering_scores`` and ``scores_from_contingency``, in order.
SCORE_KEYS = ("nmi", "nmi_geometric", "nmi_min", "nmi_max", "ami", "ari", "homogeneity", "completeness",
              "v_measure", "pair_precision", "pair_recall", "pair_f1", "matched_accuracy", "matched_f1")


_INT64_MAX = np.iinfo(np.int64).max


def _labels_exact(x, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``(codes, values)``: int32/int64 labels for the engine, and ``None`` when they are the
    labels themselves, or the sorted distinct uint64 values the codes index (labels at or above
    2**63, which an int64 cast would wrap to negative numbers, changing their order and values).
    Float labels must fit in int64 (a cast would merge them)."""
    a = to_numpy(x, name) if not isinstance(x, np.ndarray) else x
    if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
        with np.errstate(invalid="ignore"):
            big = np.abs(a) >= 2.0**63
        if big.any():
            raise ValueError(f"{name}: expected integer labels within the int64 range, got {a[big].flat[0]!r}")
    if isinstance(a, np.ndarray) and a.dtype.kind == "u" and a.ndim == 1 and a.size and a.max() > _INT64_MAX:
        values, codes = np.unique(a, return_inverse=True)
        return np.ascontiguousarray(codes, dtype=np.int64), values
    return check_labels(a, name), None


def _labels(x, name: str) -> np.ndarray:
    """Engine labels whose equalities are those of ``x`` (uint64 >= 2**63 factorised)."""
    return _labels_exact(x, name)[0]


def _labels_pair(labels_true, labels_pred):
    a = _labels(labels_true, "labels_true")
    b = _labels(labels_pred, "labels_pred")
    check_same_length(a, b, "labels_true", "labels_pred")
    return a, b


def _label_union(arrays, name: str) -> np.ndarray:
    """Sorted distinct labels of several label arrays, exactly: int64, or uint64 when a value
    is at or above 2**63 (then no label may be negative)."""
    parts = []
    for x in arrays:
        codes, values = _labels_exact(x, name)
        parts.append(codes if values is None else values)
    if any(p.dtype == np.uint64 for p in parts):
        if any(p.dtype != np.uint64 and p.size and p.min() < 0 for p in parts):
            raise ValueError(f"{name}: expected labels that fit one integer type (int64, or uint64 when some are "
                             f">= 2**63), got negative labels and labels >= 2**63")
        parts = [p.astype(np.uint64) for p in parts]
        return np.unique(np.concatenate(parts))
    return np.unique(np.concatenate([p.astype(np.int64, copy=False) for p in parts]))


# --------------------------------------------------------------------------------------------
# The table


def contingency_matrix(labels_true, labels_pred, *, sparse: bool = False):
    """Contingency table of two labelings: how many samples have each (class, cluster) pair.

    Rows are the distinct values of ``labels_true`` and columns those of ``labels_pred``,
    both ascending (the order of ``np.unique`` and of ``sklearn.metrics.cluster.contingency_matrix``).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.
        sparse: return the table as a ``scipy.sparse.csr_array`` (for many classes and clusters).

    Returns:
        tuple: ``(classes, clusters, table)``: the sorted distinct labels of each side (int64;
        uint64 for a side holding labels at or above 2**63) and the int64 table of shape
        (n_classes, n_clusters).

    Raises:
        ValueError: the dense table would exceed 2**31 cells (use ``sparse=True``).
    """
    a, a_values = _labels_exact(labels_true, "labels_true")
    b, b_values = _labels_exact(labels_pred, "labels_pred")
    check_same_length(a, b, "labels_true", "labels_pred")
    classes, clusters, (rows, cols, counts) = _core.contingency_cells(a, b)
    # Factorised uint64 labels: the engine saw their codes (same order), map back to the values.
    if a_values is not None:
        classes = a_values[classes]
    if b_values is not None:
        clusters = b_values[clusters]
    shape = (len(classes), len(clusters))
    if sparse:
        import scipy.sparse as sp

        return classes, clusters, sp.csr_array((counts, (rows, cols)), shape=shape, dtype=np.int64)
    if shape[0] * shape[1] > 2**31:
        raise ValueError(f"sparse: expected True for a table of {shape[0]} x {shape[1]} cells, got False")
    table = np.zeros(shape, dtype=np.int64)
    table[rows, cols] = counts
    return classes, clusters, table


def _cells_of(table, name: str = "table"):
    """(rows, cols, counts) int64 of a dense or scipy.sparse table of non-negative integer counts."""
    try:
        import scipy.sparse as sp

        if sp.issparse(table):
            coo = sp.coo_array(table)
            if coo.ndim != 2:
                raise ValueError(f"{name}: expected a 2-D table, got {coo.ndim} dimension(s)")
            values = np.asarray(coo.data)
            rows, cols = np.asarray(coo.coords[0]), np.asarray(coo.coords[1])
            return rows.astype(np.int64), cols.astype(np.int64), _counts(values, name)
    except ImportError:  # pragma: no cover
        pass
    t = to_numpy(table, name)
    if t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D table (n_classes, n_clusters), got {_describe(t)}")
    counts = _counts(t, name)
    rows, cols = np.nonzero(counts)
    return rows.astype(np.int64), cols.astype(np.int64), counts[rows, cols]


def _counts(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype.kind == "b" or values.dtype.kind not in "iuf":
        raise TypeError(f"{name}: expected integer counts, got {_describe(values)}")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: expected finite counts, got NaN or Inf")
        if not (values == np.round(values)).all():
            raise ValueError(f"{name}: expected integer-valued counts, got fractional values")
    if values.size and values.min() < 0:
        raise ValueError(f"{name}: expected non-negative counts, got minimum {values.min()}")
    if values.dtype.kind == "u" and values.size and values.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: expected counts below 2**63, got {values.max()}")
    if values.dtype.kind == "f" and values.size and values.max() >= 2.0**63:
        raise ValueError(f"{name}: expected counts below 2**63, got {values.max()}")
    return values.astype(np.int64)


def sum_contingency(parts):
    """Adds contingency tables computed on shards of the same data (aligning their labels).

    Args:
        parts: iterable of ``(classes, clusters, table)`` as returned by ``contingency_matrix``
            (dense tables).

    Returns:
        tuple: ``(classes, clusters, table)`` over the union of the labels.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("parts: expected at least one (classes, clusters, table) triple, got none")
    for i, p in enumerate(parts):
        if not (isinstance(p, (tuple, list)) and len(p) == 3):
            raise TypeError(f"parts: expected (classes, clusters, table) triples, got {_describe(p)} at position {i}")
    classes = _label_union([p[0] for p in parts], "classes")
    clusters = _label_union([p[1] for p in parts], "clusters")
    total = np.zeros((len(classes), len(clusters)), dtype=np.int64)
    for cl, cu, t in parts:
        t = np.asarray(t)
        if t.shape != (len(cl), len(cu)):
            raise ValueError(f"parts: expected a table of shape ({len(cl)}, {len(cu)}), got {t.shape}")
        ri = np.searchsorted(classes, np.asarray(cl).astype(classes.dtype))
        ci = np.searchsorted(clusters, np.asarray(cu).astype(clusters.dtype))
        total[np.ix_(ri, ci)] += _counts(t, "parts")
    return classes, clusters, total


# --------------------------------------------------------------------------------------------
# All scores at once


def _matching(raw: _core.Scores, *, strict: bool) -> tuple[float, float]:
    """Hungarian-matched accuracy and macro F1 from the engine's decomposition of the table."""
    n, n_classes, m = raw.n_samples, raw.n_classes, raw.matching
    if n == 0:
        return 1.0, 1.0
    from scipy.optimize import linear_sum_assignment

    assert m is not None, "the engine returns the matching decomposition when asked for it"
    total_count = int(m.trivial_count)
    total_f1 = float(m.trivial_f1)
    comp, rows, cols, counts = m.comp, m.rows, m.cols, m.counts
    row_sums, col_sums = m.row_sums, m.col_sums
    if len(comp):
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(comp)) + 1, [len(comp)]])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            ru, ri = np.unique(rows[lo:hi], return_inverse=True)
            cu, ci = np.unique(cols[lo:hi], return_inverse=True)
            if len(ru) * len(cu) > MAX_MATCHING_CELLS:
                msg = (f"labels_pred: expected a contingency table whose largest connected block has at most "
                       f"{MAX_MATCHING_CELLS} cells for the Hungarian matching, got {len(ru)} x {len(cu)}")
                if strict:
                    raise ValueError(msg)
                warnings.warn(msg + "; matched scores are NaN", RuntimeWarning, stacklevel=3)
                return math.nan, math.nan
            w = np.zeros((len(ru), len(cu)))
            w[ri, ci] = counts[lo:hi]
            r, c = linear_sum_assignment(w, maximize=True)
            total_count += int(w[r, c].sum())
            f1 = 2.0 * w / (row_sums[ru][:, None] + col_sums[cu][None, :])
            r, c = linear_sum_assignment(f1, maximize=True)
            total_f1 += float(f1[r, c].sum())
    return total_count / n, total_f1 / n_classes


def _finish(raw: _core.Scores, matched: bool, *, strict: bool = False) -> dict:
    out = {
        "nmi": raw.nmi_arithmetic,
        "nmi_geometric": raw.nmi_geometric,
        "nmi_min": raw.nmi_min,
        "nmi_max": raw.nmi_max,
        "ami": raw.ami_arithmetic,
        "ari": raw.ari,
        "homogeneity": raw.homogeneity,
        "completeness": raw.completeness,
        "v_measure": raw.v_measure,
        "pair_precision": raw.pair_precision,
        "pair_recall": raw.pair_recall,
        "pair_f1": raw.pair_f1,
    }
    if matched:
        out["matched_accuracy"], out["matched_f1"] = _matching(raw, strict=strict)
    return out


def clustering_scores(labels_true, labels_pred, *, matched: bool = True) -> dict:
    """Every clustering score of two labelings from one contingency table (one parallel pass).

    Keys (floats): ``nmi`` (arithmetic average), ``nmi_geometric``, ``nmi_min``, ``nmi_max``,
    ``ami`` (arithmetic), ``ari``, ``homogeneity``, ``completeness``, ``v_measure``,
    ``pair_precision``, ``pair_recall``, ``pair_f1``, ``matched_accuracy``, ``matched_f1``.
    Each equals the function of the same name in this module (and scikit-learn's where it has one).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.
        matched: also compute the two Hungarian-matched scores (scipy's
            ``linear_sum_assignment`` on the table's connected blocks). If a block exceeds
            ``MAX_MATCHING_CELLS`` they are NaN, with a ``RuntimeWarning``.

    Returns:
        dict: score name -> float.
    """
    a, b = _labels_pair(labels_true, labels_pred)
    return _finish(_core.clustering_scores(a, b, matched), matched)


def scores_from_contingency(table, *, matched: bool = True) -> dict:
    """The scores of ``clustering_scores`` from a contingency table instead of labels.

    For sharded data: sum the shards' tables (``sum_contingency``, or any table over a common
    label indexing) and score the sum once. All-zero rows and columns are ignored, as a class or
    cluster without samples does not exist for the label-based scores.

    Args:
        table: (n_classes, n_clusters) non-negative integer counts, dense (numpy, torch) or
            scipy.sparse.
        matched: also compute the Hungarian-matched scores.

    Returns:
        dict: the same keys and values as ``clustering_scores`` on the labels behind the table.
    """
    rows, cols, counts = _cells_of(table)
    return _finish(_core.scores_from_cells(rows, cols, counts, matched), matched)


# --------------------------------------------------------------------------------------------
# One function per score, scikit-learn's names and arguments


def normalized_mutual_info_score(labels_true, labels_pred, *, average_method: str = "arithmetic") -> float:
    """Normalized mutual information between two labelings, in [0, 1].

    NMI = I(Y; C) / mean(H(Y), H(C)), the mean chosen by ``average_method``
    (``arithmetic`` (default), ``geometric``, ``min`` or ``max``), entropies in nats.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.
        average_method: how the two entropies are averaged.

    Returns:
        float: 1.0 for identical partitions (also when both have one cluster), 0.0 when independent.
    """
    check_choice(average_method, "average_method", _AVERAGES)
    a, b = _labels_pair(labels_true, labels_pred)
    return float(_core.normalized_mutual_info(a, b, average_method))  # type: ignore[arg-type]


def adjusted_mutual_info_score(labels_true, labels_pred, *, average_method: str = "arithmetic") -> float:
    """Adjusted mutual information: (I - E[I]) / (mean(H(Y), H(C)) - E[I]), chance-corrected.

    E[I] is the expected mutual information of two random labelings with the same cluster
    sizes (hypergeometric model, Vinh et al. 2010), as ``sklearn.metrics.adjusted_mutual_info_score``.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.
        average_method: ``arithmetic`` (default), ``geometric``, ``min`` or ``max``.

    Returns:
        float: 1.0 for identical partitions, about 0.0 for independent ones (may be negative).
    """
    check_choice(average_method, "average_method", _AVERAGES)
    a, b = _labels_pair(labels_true, labels_pred)
    return float(_core.adjusted_mutual_info(a, b, average_method))  # type: ignore[arg-type]


def _score(labels_true, labels_pred, key: str) -> float:
    a, b = _labels_pair(labels_true, labels_pred)
    return float(getattr(_core.clustering_scores(a, b, False, False), key))


def adjusted_rand_score(labels_true, labels_pred) -> float:
    """Adjusted Rand index: pair-counting agreement corrected for chance, as scikit-learn's.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: 1.0 for identical partitions, about 0.0 at chance, down to -0.5.
    """
    return _score(labels_true, labels_pred, "ari")


def homogeneity_completeness_v_measure(labels_true, labels_pred) -> tuple[float, float, float]:
    """Homogeneity I/H(Y), completeness I/H(C) and their harmonic mean (V-measure, beta = 1).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        tuple: (homogeneity, completeness, v_measure), as scikit-learn's.
    """
    a, b = _labels_pair(labels_true, labels_pred)
    raw = _core.clustering_scores(a, b, False, False)
    return float(raw.homogeneity), float(raw.completeness), float(raw.v_measure)


def homogeneity_score(labels_true, labels_pred) -> float:
    """Homogeneity: each cluster holds members of a single class (I(Y; C) / H(Y); 1.0 when H(Y) = 0).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1], as ``sklearn.metrics.homogeneity_score``.
    """
    return _score(labels_true, labels_pred, "homogeneity")


def completeness_score(labels_true, labels_pred) -> float:
    """Completeness: all members of a class are in one cluster (I(Y; C) / H(C); 1.0 when H(C) = 0).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1], as ``sklearn.metrics.completeness_score``.
    """
    return _score(labels_true, labels_pred, "completeness")


def v_measure_score(labels_true, labels_pred) -> float:
    """V-measure: harmonic mean of homogeneity and completeness (equals NMI with the arithmetic mean).

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1], as ``sklearn.metrics.v_measure_score`` with beta = 1.
    """
    return _score(labels_true, labels_pred, "v_measure")


def pair_precision_recall_f1(labels_true, labels_pred) -> tuple[float, float, float]:
    """Pair-counting precision, recall and F1 ("clustering F1").

    Over all pairs of distinct samples, a pair is predicted positive when both samples share a
    cluster and truly positive when they also share a class (the counts of
    ``sklearn.metrics.cluster.pair_confusion_matrix``): precision = TP / (TP + FP),
    recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN). A ratio with no pairs in its
    denominator is 1.0 (scikit-learn's ``zero_division=1.0``): two all-singleton labelings agree.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        tuple: (precision, recall, f1).
    """
    a, b = _labels_pair(labels_true, labels_pred)
    raw = _core.clustering_scores(a, b, False, False)
    return float(raw.pair_precision), float(raw.pair_recall), float(raw.pair_f1)


def pair_f1_score(labels_true, labels_pred) -> float:
    """Pair-counting F1 ("clustering F1"): 2 TP / (2 TP + FP + FN) over pairs of samples.

    See ``pair_precision_recall_f1`` for the definition and the zero-division rule.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1].
    """
    return _score(labels_true, labels_pred, "pair_f1")


def _matched(labels_true, labels_pred, index: int) -> float:
    a, b = _labels_pair(labels_true, labels_pred)
    return float(_matching(_core.clustering_scores(a, b, True, False), strict=True)[index])


def matched_accuracy_score(labels_true, labels_pred) -> float:
    """Accuracy of the clusters after the best one-to-one matching of clusters to classes.

    The matching maximises the number of samples whose cluster is matched to their class
    (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``, on the contingency table);
    unmatched clusters count as wrong.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1]; 1.0 for empty input.

    Raises:
        ValueError: a connected block of the table exceeds ``MAX_MATCHING_CELLS``.
    """
    return _matched(labels_true, labels_pred, 0)


def matched_f1_score(labels_true, labels_pred) -> float:
    """Macro F1 over classes after the best one-to-one matching of clusters to classes.

    The F1 of class i matched with cluster j is 2 n_ij / (n_i + n_j); an unmatched class has F1
    0. The matching maximises the mean (Hungarian algorithm on the table of per-pair F1), so
    the value is the macro F1 (``sklearn.metrics.f1_score(average="macro")``) of the best
    relabelling of the clusters.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: in [0, 1]; 1.0 for empty input.

    Raises:
        ValueError: a connected block of the table exceeds ``MAX_MATCHING_CELLS``.
    """
    return _matched(labels_true, labels_pred, 1)
