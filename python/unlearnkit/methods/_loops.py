"""Layer: methods. Training loops shared by several methods (kept here so each method file stays
about its idea). Every loop reads data through a ``BatchSource`` in the call's seeded order and
runs its forward passes under ``ctx.amp`` (mixed precision)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..data.batches import BatchSource, TensorSource
from .base import Context

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with no parameter requiring grad: a fixed teacher."""
    teacher = copy.deepcopy(model).eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    return teacher


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def run_epochs(model: nn.Module, x, y: torch.Tensor | None = None, *, epochs: int, batch_size: int,
               optimizer: torch.optim.Optimizer, ctx: Context, phase: str, loss_fn: LossFn = cross_entropy,
               sign: float = 1.0, relabel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               after_step: Callable[[], None] | None = None, stoppable: bool = False) -> bool:
    """``epochs`` shuffled passes over the data, minimising ``sign * loss_fn`` (sign -1: ascent).

    ``x``: a ``BatchSource`` (e.g. ``data.retain``), with ``y=None``; or (x, y) CPU tensors.
    ``relabel(idx, y_batch)`` may replace the labels of each batch (random-label methods): ``idx``
    are the batch's positions in the source (CPU int64), ``y_batch`` its labels on the device.
    ``after_step`` runs after each optimiser step (e.g. to re-apply a mask). Forward passes run
    under ``ctx.amp`` (mixed precision), steps through its scaler. ``stoppable``: this is the
    method's unlearning loop, so the call's stopping rule (``ctx.stop_check``) is asked after each
    step. Returns True when that rule stopped the loop.
    """
    source = x if isinstance(x, BatchSource) else TensorSource(x, y, name="x")
    model.train()
    total = epochs * -(-len(source) // batch_size)
    step = 0
    for _ in range(epochs):
        for b in ctx.batches(source, batch_size, shuffle=True):
            yb = b.y if relabel is None else relabel(b.idx, b.y).to(ctx.device)
            with ctx.amp.autocast():
                loss = loss_fn(model, b.x, yb)
            ctx.amp.step(optimizer, sign * loss)
            if after_step is not None:
                after_step()
            step += 1
            ctx.log(phase, step, total, loss=loss.detach())
            if stoppable and ctx.stop_check(model):
                model.eval()
                return True
    model.eval()
    return False


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn uniformly among the classes other than each sample's own."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)  # drawn on the CPU
    return (y + shift) % num_classes
