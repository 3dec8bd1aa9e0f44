"""Layer: methods. CF-k (catastrophic forgetting of the last k layers): freeze everything but the
last k parameterised layers and fine-tune those on the retain set. Goel et al., Towards Adversarial
Evaluation of Machine Unlearning / Evaluating Inexact Unlearning Requires Revisiting Forgetting,
arXiv 2201.06640 (2022); a baseline of SCRUB (NeurIPS 2023) and DLFD (AAAI 2025).

Invariant: every parameter and buffer outside the last k layers is bit-identical before and after
(frozen norm layers are kept in eval mode, so their running statistics do not move either).

``k`` counts parameterised layers from the head, in the order the forward pass runs them (found
with forward hooks on one retain sample, so it works on any wrapped model): a layer is a module
holding parameters of its own; a normalisation layer (BatchNorm, LayerNorm, GroupNorm) joins the
layer that ran before it instead of counting on its own (a conv and its BatchNorm are one layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import categorical, integers, log_uniform, param
from ..training import sgd
from ._loops import run_epochs
from ._stop import StopParams
from .base import Method, register

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def parameterised_layers(model: nn.Module, example: torch.Tensor) -> list[list[nn.Module]]:
    """The model's parameterised layers in forward-execution order, each a list of modules (a layer
    and the normalisation modules that follow it).

    Args:
        model: any module; it is run once, in eval mode and without gradients, on ``example``.
        example: (n, C, H, W) input (one or two samples suffice).
    """
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module, _inputs, _output):
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    handles = [m.register_forward_hook(hook) for m in owners]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    groups: list[list[nn.Module]] = []
    for m in order:
        if isinstance(m, _NORMS) and groups:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def example_input(data, ctx) -> torch.Tensor:
    """Two retain samples on the method's device (enough for a forward pass that orders the layers)."""
    return data.retain.take(torch.arange(min(2, len(data.retain))), device=ctx.device).x


def last_k_layers(model: nn.Module, k: int, example: torch.Tensor, *, name: str = "k") -> list[nn.Module]:
    """The modules of the last ``k`` parameterised layers (see ``parameterised_layers``)."""
    groups = parameterised_layers(model, example)
    if k > len(groups):
        raise ValueError(f"{name}: expected at most {len(groups)} (the model's parameterised layers), got {k}")
    return [m for g in groups[len(groups) - k:] for m in g]


def train_last_layers(model: nn.Module, layers: list[nn.Module], data, ctx, *, epochs: int, lr: float,
                      momentum: float, weight_decay: float, batch_size: int, phase: str) -> None:
    """Cross-entropy SGD on the retain set over the parameters of ``layers`` only; every other
    parameter keeps requires_grad False meanwhile, and the norm layers outside ``layers`` stay in
    eval mode (their running statistics are part of the frozen model). Restores requires_grad."""
    chosen = {id(m) for m in layers}
    trainable = [p for m in layers for p in m.parameters(recurse=False)]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    frozen_norms = [m for m in model.modules() if isinstance(m, _NORMS) and id(m) not in chosen]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)

    def loss_fn(m, x, y):
        for norm in frozen_norms:
            norm.eval()
        return F.cross_entropy(m(x), y)

    try:
        opt = sgd(model, lr, momentum, weight_decay, params=trainable)
        run_epochs(model, data.retain, epochs=epochs, batch_size=batch_size, optimizer=opt, ctx=ctx, phase=phase,
                   loss_fn=loss_fn, stoppable=True)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class CFkParams(StopParams):
    """k: parameterised layers counted from the head that are trained; epochs, lr, momentum,
    weight_decay, batch_size: SGD on the retain set (SCRUB's code for CF-k / EU-k: 10 epochs at
    lr 0.01, batch 64)."""

    k: int = param(2, ge=1, space=integers(1, 4))
    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-4, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1, space=categorical(32, 64, 128, 256))


@register
class CFk(Method[CFkParams]):
    """CF-k: fine-tune only the last ``k`` parameterised layers on the retain set.

    The earlier layers keep what they learned (from the forget set too); only the last k layers
    can forget it, by catastrophic forgetting while they fit the retain set. k = 2 by default (on
    the small CNN: the penultimate fully connected layer and the head; SCRUB's code trains the last
    residual stage of a ResNet, Goel et al. sweep k).
    """

    name = "cf_k"
    paper = ("Goel et al., Towards Adversarial Evaluation of Machine Unlearning (CF-k), arXiv 2201.06640, 2022; "
             "as a baseline in Kurmanji et al., SCRUB, NeurIPS 2023")
    Params = CFkParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        layers = last_k_layers(model, p.k, example_input(data, ctx), name=f"{self.name}.k")
        train_last_layers(model, layers, data, ctx, epochs=p.epochs, lr=p.lr, momentum=p.momentum,
                          weight_decay=p.weight_decay, batch_size=p.batch_size, phase="retain")
        return model
