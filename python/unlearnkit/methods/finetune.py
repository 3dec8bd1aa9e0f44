"""Fine-tune: keep training on the retain set only, so the forget set is slowly forgotten
("catastrophic forgetting"). Warnecke et al. 2023; Golatkar et al., CVPR 2020 (as a baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import categorical, integers, log_uniform, param
from ..training import sgd
from ._loops import run_epochs
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class FineTuneParams(StopParams):
    """epochs: passes over the retain set; lr, momentum, weight_decay: SGD; batch_size."""

    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1, space=categorical(32, 64, 128, 256))


@register
class FineTune(Method[FineTuneParams]):
    name = "finetune"
    paper = "Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023 (FT baseline)"
    Params = FineTuneParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, data.retain, epochs=p.epochs, batch_size=p.batch_size, optimizer=opt, ctx=ctx,
                   phase="retain", stoppable=True)
        return model
