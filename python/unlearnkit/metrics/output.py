"""Output-space metrics on predictions: accuracy, distances between two models' outputs, NoMUS.

Inputs are numpy arrays or torch tensors; ``probs`` are (n, n_classes) rows summing to 1,
``logits`` are raw scores. Every function validates shapes and returns floats; nothing returns
NaN for bad input: an empty set, a label outside the score columns or a negative or non-normalised
probability raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_labels, check_same_length, to_numpy

__all__ = ["accuracy", "activation_distance", "js_divergence", "nomus", "softmax"]


def _matrix(x, name: str) -> np.ndarray:
    a = to_numpy(x, name)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, n_classes), got shape {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected floating-point scores, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return a


def softmax(logits) -> np.ndarray:
    """(n, c) logits -> (n, c) probabilities, computed stably in float64."""
    z = _matrix(logits, "logits")
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(labels_true, logits) -> float:
    """Fraction of rows whose arg-max score is the true label. logits: (n, c); labels_true: (n,)
    with values in [0, c). An empty set has no accuracy and raises ``ValueError``, as does a label
    outside the score columns (it could never be predicted, so it would silently count as an error)."""
    y = check_labels(labels_true, "labels_true", allow_empty=False)
    z = _matrix(logits, "logits")
    check_same_length(y, z, "labels_true", "logits")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= z.shape[1]:
        raise ValueError(f"labels_true: expected labels in [0, {z.shape[1]}) (the columns of logits), "
                         f"got values {lo}..{hi}")
    return float((z.argmax(axis=1) == y).mean())


def _probs(x, name: str) -> np.ndarray:
    """(n, c) float64 rows of probabilities: non-negative, each summing to 1 within 1e-4."""
    p = _matrix(x, name)
    if (p < 0).any():
        raise ValueError(f"{name}: expected non-negative probabilities, got minimum {p.min():.6g}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > 1e-4:
        raise ValueError(f"{name}: expected rows summing to 1, got row {worst} summing to {sums[worst]:.6g}")
    return p


def activation_distance(probs_a, probs_b) -> float:
    """Mean over samples of the L2 distance between two models' output distributions,
    mean_i || p_a(x_i) - p_b(x_i) ||_2 (Chundawat et al. 2023; TMU). Lower = closer."""
    a, b = _probs(probs_a, "probs_a"), _probs(probs_b, "probs_b")
    if a.shape != b.shape:
        raise ValueError(f"probs_b: expected the shape of probs_a {a.shape}, got {b.shape}")
    return float(np.linalg.norm(a - b, axis=1).mean())


def js_divergence(probs_a, probs_b) -> float:
    """Mean Jensen-Shannon divergence (nats) between two models' output distributions:
    JS(p, q) = KL(p || m)/2 + KL(q || m)/2 with m = (p + q)/2; in [0, ln 2]. Rows must be
    probability vectors (non-negative, summing to 1), else ``ValueError``."""
    a, b = _probs(probs_a, "probs_a"), _probs(probs_b, "probs_b")
    if a.shape != b.shape:
        raise ValueError(f"probs_b: expected the shape of probs_a {a.shape}, got {b.shape}")
    m = (a + b) / 2

    def kl(p, q):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0).sum(axis=1)

    return float((kl(a, m) / 2 + kl(b, m) / 2).mean())


def nomus(test_accuracy: float, mia_accuracy: float) -> float:
    """Normalized machine-unlearning score (DLFD): 0.5 * (test_acc + (1 - 2 |MIA - 0.5|)), in [0, 1],
    higher is better. ``mia_accuracy`` is the accuracy of a forget-vs-test attack (0.5 = chance)."""
    for name, v in (("test_accuracy", test_accuracy), ("mia_accuracy", mia_accuracy)):
        if not (0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name}: expected a value in [0, 1], got {v!r}")
    return 0.5 * (float(test_accuracy) + (1.0 - 2.0 * abs(float(mia_accuracy) - 0.5)))
