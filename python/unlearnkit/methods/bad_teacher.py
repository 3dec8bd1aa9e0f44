"""Bad teacher: distil from a competent teacher on retained data and from an incompetent (randomly
initialised) teacher on the forget set. Chundawat, Tarun, Mandal & Kankanhalli, Can Bad Teaching
Induce Forgetting? Unlearning in Deep Networks Using an Incompetent Teacher, AAAI 2023."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import integers, log_uniform, param, uniform
from ..data.batches import concat_sources
from ._loops import frozen_copy
from ._stop import StopParams
from .base import Method, register
from .retrain import reset_parameters


@dataclass(frozen=True)
class BadTeacherParams(StopParams):
    """epochs: passes over forget + retain subset; lr: Adam step; batch_size: samples per step;
    temperature: KL temperature; retain_fraction: share of the retain set distilled from the
    competent teacher (drawn at random once per call)."""

    epochs: int = param(1, ge=0, space=integers(1, 10))
    lr: float = param(1e-4, gt=0, space=log_uniform(1e-6, 1e-2))
    batch_size: int = param(256, ge=1)
    temperature: float = param(1.0, gt=0)
    retain_fraction: float = param(0.3, gt=0, le=1, space=uniform(0.1, 1.0))


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (seeded): the 'bad' teacher. Input
    normalisation buffers are kept; ``model`` is not changed."""
    teacher = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset_parameters(teacher)
    return teacher.eval()


@register
class BadTeacher(Method[BadTeacherParams]):
    """Bad teacher (Chundawat et al., AAAI 2023): competent/incompetent teacher distillation.

    The student starts as the original model. A competent teacher T_s (the original model, frozen)
    and an incompetent teacher T_d (the same architecture, randomly initialised) provide targets:
    with l = 1 for a forget sample and l = 0 for a retained one,

        t(x) = l * softmax(T_d(x) / T) + (1 - l) * softmax(T_s(x) / T)
        L(theta) = E_x KL(t(x) || softmax(S_theta(x) / T))

    over the forget set and a random ``retain_fraction`` of the retain set, shuffled together. The
    student's forget outputs drift towards the random teacher's while its retained behaviour is
    anchored to the original. Defaults are the paper's: Adam lr 1e-4, 1 epoch, batch 256,
    temperature 1, 30% of the retain set. The KL is averaged over samples ('batchmean'; the
    reference code's element-wise mean is the same loss divided by the number of classes, which
    Adam's scale invariance all but cancels).
    """

    name = "bad_teacher"
    paper = ("Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks Using an "
             "Incompetent Teacher, AAAI 2023")
    Params = BadTeacherParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        good = frozen_copy(model)
        bad = incompetent_teacher(model, ctx.seed)
        for q in bad.parameters():
            q.requires_grad_(False)
        n_f, n_r = len(data.forget), len(data.retain)
        n_keep = max(1, int(round(p.retain_fraction * n_r)))
        keep = torch.randperm(n_r, generator=ctx.generator)[:n_keep]
        both = concat_sources([data.forget, data.retain.subset(keep)], name="forget+retain")  # forget: < n_f
        opt = torch.optim.Adam(model.parameters(), lr=p.lr)
        total = p.epochs * math.ceil(len(both) / p.batch_size)
        step = 0
        model.train()
        for _ in range(p.epochs):
            for b in ctx.batches(both, p.batch_size):
                lb = (b.idx < n_f).to(ctx.device)[:, None]
                with ctx.amp.autocast():
                    with torch.no_grad():
                        target = torch.where(lb, F.softmax(bad(b.x).float() / p.temperature, 1),
                                             F.softmax(good(b.x).float() / p.temperature, 1))
                    loss = F.kl_div(F.log_softmax(model(b.x).float() / p.temperature, 1), target,
                                    reduction="batchmean")
                ctx.amp.step(opt, loss)
                step += 1
                ctx.log("distill", step, total, loss=loss.detach())
                if ctx.stop_check(model):
                    model.eval()
                    return model
        model.eval()
        return model
