"""Clustering scores of two labelings, computed by the Rust engine (``unlearnkit._core``).

Arguments follow scikit-learn (``labels_true``, ``labels_pred``) and so do the values,
including the edge cases (one cluster, all singletons, empty input).
"""

from __future__ import annotations

from .._validation import check_choice, check_labels, check_same_length
from .. import _core

__all__ = ["normalized_mutual_info_score"]

_AVERAGES = ("arithmetic", "geometric", "min", "max")


def _labels_pair(labels_true, labels_pred):
    a = check_labels(labels_true, "labels_true")
    b = check_labels(labels_pred, "labels_pred")
    check_same_length(a, b, "labels_true", "labels_pred")
    return a, b


def normalized_mutual_info_score(labels_true, labels_pred, *, average_method: str = "arithmetic") -> float:
    """Normalized mutual information between two labelings, in [0, 1].

    NMI = I(Y; C) / mean(H(Y), H(C)), the mean chosen by ``average_method``
    (``arithmetic`` (default), ``geometric``, ``min`` or ``max``), entropies in nats.

    Args:
        labels_true: (n,) integer class labels.
        labels_pred: (n,) integer cluster labels.

    Returns:
        float: 1.0 for identical partitions (also when both have one cluster), 0.0 when independent.
    """
    check_choice(average_method, "average_method", _AVERAGES)
    a, b = _labels_pair(labels_true, labels_pred)
    return float(_core.normalized_mutual_info(a, b, average_method))
