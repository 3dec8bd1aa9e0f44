"""Layer: metrics. The backdoor scenario's metric: how often a planted trigger still works."""

from __future__ import annotations

import torch

from ..data.backdoor import Trigger
from ..training import predict


def attack_success_rate(model: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor, trigger: Trigger) -> float:
    """Fraction of test images *not* of the target class that the model assigns to the target
    class once the trigger is planted (lower is better after unlearning)."""
    keep = y_test != trigger.target
    pred = predict(model, trigger.apply(x_test[keep])).argmax(1)
    return float((pred == trigger.target).float().mean())
__all__ = ["attack_success_rate"]
