"""Dimensional alignment (MUDA) as an evaluation metric: a float from two feature arrays.

The loss (``unlearnkit.losses.DimensionalAlignmentLoss``) and this metric share one definition
(``unlearnkit.losses.alignment``); here everything is float64, no gradient, numpy or torch in.
"""

from __future__ import annotations

import numpy as np
import torch

from .._validation import check_features

__all__ = ["dimensional_alignment"]


def dimensional_alignment(forget_features, retain_features, *, k: int | None = None, energy: float = 0.9,
                          center: bool = False, reduction: str = "mean", variant: str = "projection") -> float:
    """How much of the forget features lies in the retain features' principal subspace, in [0, 1].

    With S_r = Z_r^T Z_r / n_r (the covariance when ``center``; the retain mean is then removed
    from Z_f too) and U_k its top-k eigenvectors (k given, or the smallest k holding ``energy``
    of the trace):

        DA = mean_z ||U_k^T z||^2 / ||z||^2             over forget rows z    (reduction="mean")
        DA = ||Z_f U_k||_F^2 / ||Z_f||_F^2                                     (reduction="total")
        DA = ||U_f^T U_k||_F^2 / k   (U_f: the forget set's own top-k)         (variant="subspace")

    A model retrained without the forget set keeps its (now unseen) forget features on the
    retain manifold; compare an unlearned model's DA with the gold model's.

    Args:
        forget_features: (n_f, d) penultimate features of the forget set.
        retain_features: (n_r, d) features of the retain set (any n_r >= 1).
        k, energy, center, reduction, variant: as above (defaults from the MUDA spec).

    Returns:
        float: DA, dimensionless.
    """
    zf = check_features(forget_features, "forget_features", dtype=np.float64)
    zr = check_features(retain_features, "retain_features", dtype=np.float64)
    if zf.shape[1] != zr.shape[1]:
        raise ValueError(f"retain_features: expected {zf.shape[1]} columns like forget_features, "
                         f"got {zr.shape[1]}")
    # k, energy, reduction and variant are validated by the shared definition below
    from ..losses.alignment import dimensional_alignment_torch

    with torch.no_grad():
        da = dimensional_alignment_torch(torch.from_numpy(zf), torch.from_numpy(zr), k=k, energy=energy,
                                         center=center, reduction=reduction, variant=variant, backend="torch")
    return float(da)
