"""Training loops shared by several methods (kept here so each method file stays about its idea)."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..data.tensors import iterate_batches
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


def run_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
               optimizer: torch.optim.Optimizer, ctx: Context, phase: str, loss_fn: LossFn = cross_entropy,
               sign: float = 1.0, relabel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               after_step: Callable[[], None] | None = None) -> None:
    """``epochs`` shuffled passes over (x, y), minimising ``sign * loss_fn`` (sign -1: ascent).

    ``relabel(idx, y_batch)`` may replace the labels of each batch (random-label methods).
    ``after_step`` runs after each optimiser step (e.g. to re-apply a mask).
    """
    model.train()
    total = epochs * -(-len(y) // batch_size)
    step = 0
    for _ in range(epochs):
        for idx in iterate_batches(len(y), batch_size, shuffle=True, generator=ctx.generator):
            yb = y[idx] if relabel is None else relabel(idx, y[idx])
            loss = loss_fn(model, x[idx].to(ctx.device), yb.to(ctx.device))
            optimizer.zero_grad(set_to_none=True)
            (sign * loss).backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            step += 1
            ctx.log(phase, step, total, loss=loss.detach())
    model.eval()


def random_wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn uniformly among the classes other than each sample's own."""
    shift = torch.randint(1, num_classes, y.shape, generator=generator)
    return (y + shift) % num_classes
