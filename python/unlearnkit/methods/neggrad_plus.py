"""NegGrad+: gradient ascent on the forget set balanced by descent on the retain set.
Kurmanji, Triantafillou, Hayes & Triantafillou, Towards Unbounded Machine Unlearning, NeurIPS 2023."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import integers, log_uniform, param, uniform
from ..training import sgd
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class NegGradPlusParams(StopParams):
    """beta: weight of the retain loss (1 - beta weighs the forget ascent); epochs: passes over the
    retain set (each retain batch is paired with the next batch of the cycled forget set); lr,
    momentum, weight_decay: SGD (the SCRUB code base uses plain SGD, no momentum, no decay);
    batch_size: samples per retain batch and per forget batch."""

    beta: float = param(0.999, ge=0, le=1, space=uniform(0.5, 1.0))
    epochs: int = param(5, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.0, ge=0, lt=1)
    weight_decay: float = param(0.0, ge=0)
    batch_size: int = param(128, ge=1)


@register
class NegGradPlus(Method[NegGradPlusParams]):
    """NegGrad+ (Kurmanji et al., NeurIPS 2023), the strengthened gradient-ascent baseline of the
    SCRUB paper.

    Each step draws a retain batch B_r and the next batch B_f of the (cycled) forget set and descends

        L(theta) = beta * CE(theta; B_r) - (1 - beta) * CE(theta; B_f)

    so the forget loss is pushed up while the retain loss holds the model's utility. Plain NegGrad
    is the special case beta = 0 (without the retain term). Defaults follow the SCRUB code base
    (``negative_grad``: SGD, lr 0.01, 5 epochs over the retain set); beta = 0.999 is the weight used
    there for the random-forgetting experiments (values from 0.99 to 0.9999 appear across its
    scripts, so treat it as the first hyper-parameter to tune).
    """

    name = "neggrad_plus"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (NegGrad+)"
    Params = NegGradPlusParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        forget_batches = ctx.cycle(data.forget, p.batch_size)
        n_r = len(data.retain)
        total = p.epochs * math.ceil(n_r / p.batch_size)
        step = 0
        model.train()
        for _ in range(p.epochs):
            for b in ctx.batches(data.retain, p.batch_size):
                fb = next(forget_batches)
                with ctx.amp.autocast():
                    out = model(torch.cat([b.x, fb.x]))
                    loss_r = F.cross_entropy(out[: len(b.idx)], b.y)
                    loss_f = F.cross_entropy(out[len(b.idx):], fb.y)
                    loss = p.beta * loss_r - (1.0 - p.beta) * loss_f
                ctx.amp.step(opt, loss)
                step += 1
                ctx.log("retain-descent+forget-ascent", step, total, loss=loss.detach(),
                        retain_loss=loss_r.detach(), forget_loss=loss_f.detach())
                if ctx.stop_check(model):
                    model.eval()
                    return model
        model.eval()
        return model
