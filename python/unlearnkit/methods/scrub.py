"""SCRUB: a student that obeys its teacher (the original model) on the retain set and disobeys it on
the forget set. Kurmanji, Triantafillou, Hayes & Triantafillou, Towards Unbounded Machine
Unlearning, NeurIPS 2023."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import categorical, integers, log_uniform, param, uniform
from ..losses.distillation import self_distillation
from ..training import sgd
from ._loops import frozen_copy
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class ScrubParams(StopParams):
    """epochs: SCRUB epochs; msteps: how many of them start with a max-step (a pass over the forget
    set); alpha: weight of the retain KL; gamma: weight of the retain cross-entropy; temperature:
    distillation temperature T; lr, momentum, weight_decay: SGD shared by both steps;
    forget_batch_size, retain_batch_size: batch sizes of the max- and min-steps."""

    epochs: int = param(3, ge=0, space=integers(1, 10))
    msteps: int = param(2, ge=0, space=integers(0, 5))
    alpha: float = param(0.001, ge=0, space=log_uniform(1e-4, 1.0))
    gamma: float = param(0.99, ge=0, space=uniform(0.5, 1.0))
    temperature: float = param(4.0, gt=0)
    lr: float = param(5e-4, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    forget_batch_size: int = param(512, ge=1, space=categorical(32, 64, 128, 256, 512))
    retain_batch_size: int = param(256, ge=1)


@register
class Scrub(Method[ScrubParams]):
    """SCRUB (Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023).

    The original model w_o is a frozen teacher; the student w_u starts as a copy of it. With
    d(x; w_u) = KL(p(f(x; w_o)) || p(f(x; w_u))) at temperature T, SCRUB alternates

        max-step (first ``msteps`` epochs):  max_{w_u}  E_{x in D_f} d(x; w_u)
        min-step (every epoch):              min_{w_u}  alpha * E_{D_r} d(x; w_u) + gamma * E_{D_r} CE(f(x; w_u), y)

    one pass over the forget set, then one over the retain set, per epoch, so the student moves
    away from the teacher on D_f while staying faithful to it (and to the labels) on D_r. The
    extra min-only epochs at the end repair utility. Defaults are the official code's CIFAR-10 /
    ResNet-18 settings (SGD lr 5e-4, momentum 0.9, weight decay 5e-4, 3 epochs, msteps 2,
    alpha 0.001, gamma 0.99, T 4, forget batch 512, retain batch 256); its learning-rate decay at
    epoch 3 never triggers within 3 epochs, so there is none here.
    """

    name = "scrub"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (SCRUB)"
    Params = ScrubParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        teacher = frozen_copy(model)
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        n_f, n_r = len(data.forget), len(data.retain)
        steps_f, steps_r = math.ceil(n_f / p.forget_batch_size), math.ceil(n_r / p.retain_batch_size)
        total_max, total_min = min(p.msteps, p.epochs) * steps_f, p.epochs * steps_r
        step_max = step_min = 0
        model.train()
        for epoch in range(1, p.epochs + 1):
            if epoch <= p.msteps:
                for b in ctx.batches(data.forget, p.forget_batch_size):
                    with ctx.amp.autocast():
                        with torch.no_grad():
                            t = teacher(b.x)
                        kl = self_distillation(model(b.x), t, temperature=p.temperature)
                    ctx.amp.step(opt, -kl)
                    step_max += 1
                    ctx.log("max-forget", step_max, total_max, loss=-kl.detach(), forget_kl=kl.detach(), epoch=epoch)
            for b in ctx.batches(data.retain, p.retain_batch_size):
                with ctx.amp.autocast():
                    with torch.no_grad():
                        t = teacher(b.x)
                    out = model(b.x)
                    kl = self_distillation(out, t, temperature=p.temperature)
                    ce = F.cross_entropy(out, b.y)
                    loss = p.alpha * kl + p.gamma * ce
                ctx.amp.step(opt, loss)
                step_min += 1
                ctx.log("min-retain", step_min, total_min, loss=loss.detach(), retain_kl=kl.detach(), ce=ce.detach(),
                        epoch=epoch)
                if ctx.stop_check(model):  # checked in the min (retain) phase
                    model.eval()
                    return model
        model.eval()
        return model
