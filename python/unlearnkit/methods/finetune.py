"""Fine-tune: keep training on the retain set only, so the forget set is slowly forgotten
("catastrophic forgetting"). Warnecke et al. 2023; Golatkar et al., CVPR 2020 (as a baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from ..training import sgd
from ._loops import run_epochs
from .base import Method, register


@dataclass(frozen=True)
class FineTuneParams:
    """epochs: passes over the retain set; lr, momentum, weight_decay: SGD; batch_size."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64


@register
class FineTune(Method):
    name = "finetune"
    paper = "Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023 (FT baseline)"
    Params = FineTuneParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, data.x_retain, data.y_retain, epochs=p.epochs, batch_size=p.batch_size,
                   optimizer=opt, ctx=ctx, phase="retain")
        return model
