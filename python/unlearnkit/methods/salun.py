"""SalUn: random-label unlearning restricted to the weights most salient for the forget loss.
Fan, Liu, Zhang, Wong, Wei & Liu, SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation, ICLR 2024."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import integers, log_uniform, param, uniform
from ..data.batches import TensorSource
from ..training import Precision, sgd
from ._loops import random_wrong_labels
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class SalUnParams(StopParams):
    """threshold: fraction of all weights marked salient (the top fraction by forget-gradient
    magnitude; 0.5 is the paper's median threshold); epochs: passes (forget pass with random labels,
    then retain pass); lr, momentum, weight_decay: SGD; batch_size: samples per step."""

    threshold: float = param(0.5, gt=0, le=1, space=uniform(0.1, 0.9))
    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(0.013, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(256, ge=1)


def saliency_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor, fraction: float, *, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """SalUn's weight-saliency map: {parameter name: bool tensor}, True for the ``fraction`` of all
    parameters (ranked together, across layers) with the largest |grad_theta CE(theta; D_f)| at the
    current weights. Exactly round(fraction * n_params) entries are True. ``model`` is not changed.
    """
    return _saliency(model, TensorSource(x, y, name="x"), fraction, batch_size, torch.device(device))


def _saliency(model, source, fraction, batch_size, device, amp=None):
    """``saliency_mask`` over a BatchSource (read in order)."""
    amp = amp or Precision("fp32", device)
    params = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    grads = [torch.zeros_like(q) for _, q in params]
    was_training = model.training
    model.eval()
    for b in source.batches(batch_size, device=device):
        with amp.autocast():
            loss = F.cross_entropy(model(b.x), b.y, reduction="sum") / len(source)
        for g, gq in zip(grads, torch.autograd.grad(loss, [q for _, q in params])):
            g += gq
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads])
    k = int(round(fraction * flat.numel()))
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    masks, start = {}, 0
    for (name, q) in params:
        masks[name] = keep[start:start + q.numel()].view_as(q)
        start += q.numel()
    return masks


@register
class SalUn(Method[SalUnParams]):
    """SalUn (Fan et al., ICLR 2024): saliency-masked random labelling.

    1. Weight saliency: m = 1(|grad_theta CE(theta; D_f)| at theta_o >= gamma), with gamma chosen so
       that the top ``threshold`` fraction of all weights is salient (0.5: the median, the paper's
       default; ``saliency_mask``).
    2. Unlearning: update only the salient weights, theta = m * theta_u + (1 - m) * theta_o, minimising
       the random-label objective

        L(theta_u) = E_{(x, y) in D_f, y' != y} CE(theta; x, y') + CE(theta; D_r)

    (each epoch: a pass over the forget set with fresh random wrong labels, then a pass over the
    retain set, as the official CIFAR-10 code does). Non-salient weights and their momentum stay
    exactly at theta_o. Defaults are the official CIFAR-10 random-forgetting settings: SGD lr 0.013,
    momentum 0.9, weight decay 5e-4, 10 epochs, batch 256, mask threshold 0.5.
    """

    name = "salun"
    paper = "Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency, ICLR 2024"
    Params = SalUnParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        mask = _saliency(model, data.forget, p.threshold, p.batch_size, ctx.device, ctx.amp)
        density = sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
        ctx.log("saliency", 1, 1, density=density)
        named = [(n, q) for n, q in model.named_parameters() if n in mask]
        theta0 = {n: q.detach().clone() for n, q in named}
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)

        def mask_grads():
            for n, q in named:
                if q.grad is not None:
                    q.grad.mul_(mask[n])

        def masked_step(loss):
            ctx.amp.step(opt, loss, before_step=mask_grads)
            with torch.no_grad():
                for n, q in named:
                    q.copy_(torch.where(mask[n], q, theta0[n]))
                    buf = opt.state.get(q, {}).get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(mask[n])

        n_f, n_r = len(data.forget), len(data.retain)
        total_f, total_r = p.epochs * math.ceil(n_f / p.batch_size), p.epochs * math.ceil(n_r / p.batch_size)
        step_f = step_r = 0
        model.train()
        for _ in range(p.epochs):
            for b in ctx.batches(data.forget, p.batch_size):
                y_rand = random_wrong_labels(b.y, data.num_classes, ctx.generator)
                with ctx.amp.autocast():
                    loss = F.cross_entropy(model(b.x), y_rand)
                masked_step(loss)
                step_f += 1
                ctx.log("forget-random-labels", step_f, total_f, loss=loss.detach())
            for b in ctx.batches(data.retain, p.batch_size):
                with ctx.amp.autocast():
                    loss = F.cross_entropy(model(b.x), b.y)
                masked_step(loss)
                step_r += 1
                ctx.log("retain", step_r, total_r, loss=loss.detach())
                if ctx.stop_check(model):  # checked in the retain phase, where utility is being restored
                    model.eval()
                    return model
        model.eval()
        return model
