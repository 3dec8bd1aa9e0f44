"""Self-distillation: temperature-scaled KL from a frozen teacher to the student.

L_SD = T^2 * KL( softmax(t / T) || softmax(s / T) ), averaged over the batch (MUDA's recover
phase, ``../shared/papers/muda.md``; Hinton et al. 2015 for the T^2 factor, which keeps the
gradient scale independent of T). Works on logits or on any (n, c) outputs, such as features.

Precision: computed in float32 for float16 / bfloat16 / float32 inputs (float64 for float64), with
autocast disabled, and returned in the student's dtype: half-precision logits of ~1e4 overflow
the sum of exponentials otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_backend, check_points, check_same_device, compute_dtype, full_precision

__all__ = ["SelfDistillationLoss", "self_distillation"]


def self_distillation(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float = 4.0,
                      reduction: str = "batchmean") -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)); the teacher is detached.

    student, teacher: (n, c). reduction: ``"batchmean"`` (0-d) or ``"none"`` ((n,) per sample).
    Returns the student's dtype (accumulated in float32, or float64 for float64 inputs).
    """
    check_points(student, "student")
    check_points(teacher, "teacher")
    if student.shape != teacher.shape:
        raise ValueError(f"teacher: expected the student's shape {tuple(student.shape)}, got {tuple(teacher.shape)}")
    check_same_device(student=student, teacher=teacher)
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    if reduction not in ("batchmean", "none"):
        raise ValueError(f"reduction: expected 'batchmean' or 'none', got {reduction!r}")
    t, cdt = float(temperature), compute_dtype(student)
    with full_precision(student.device):
        log_p_teacher = F.log_softmax(teacher.detach().to(cdt) / t, dim=1)
        log_p_student = F.log_softmax(student.to(cdt) / t, dim=1)
        per_sample = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1) * (t * t)
        out = per_sample.mean() if reduction == "batchmean" else per_sample
    return out.to(student.dtype)


class SelfDistillationLoss(nn.Module):
    """``loss(student_outputs, teacher_outputs)``: T^2-scaled KL, teacher frozen (detached).

    Args: temperature T (default 4, the MUDA spec); reduction ``"batchmean"`` or ``"none"``;
    backend accepted for a uniform interface: this loss is two log-softmaxes that torch already
    fuses well, so every backend runs the torch path.
    """

    def __init__(self, temperature: float = 4.0, reduction: str = "batchmean", backend: str = "auto"):
        super().__init__()
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
        if reduction not in ("batchmean", "none"):
            raise ValueError(f"reduction: expected 'batchmean' or 'none', got {reduction!r}")
        self.temperature, self.reduction, self.backend = float(temperature), reduction, check_backend(backend)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return self_distillation(student, teacher, temperature=self.temperature, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"
