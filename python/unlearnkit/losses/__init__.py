"""Drop-in losses (``torch.nn.Module``): dimensional alignment, Sinkhorn optimal transport,
self-distillation. Each runs a torch reference path everywhere and a fused Triton path on CUDA
(``backend="auto" | "torch" | "triton"``)."""

from .alignment import (
                        DimensionalAlignmentLoss,
                        Eigenspace,
                        dimensional_alignment_torch,
                        retain_eigenspace,
                        spectral_projector,
)
from .distillation import SelfDistillationLoss, self_distillation
from .sinkhorn import SinkhornConvergenceWarning, SinkhornLoss, SinkhornResult, cost_matrix, sinkhorn

__all__ = ["DimensionalAlignmentLoss", "Eigenspace", "SelfDistillationLoss", "SinkhornConvergenceWarning",
           "SinkhornLoss", "SinkhornResult", "cost_matrix", "dimensional_alignment_torch", "retain_eigenspace",
           "self_distillation", "sinkhorn", "spectral_projector"]
