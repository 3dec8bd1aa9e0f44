"""NegGrad (gradient ascent): maximise the cross-entropy on the forget set.
Thudi et al., Unrolling SGD, EuroS&P 2022; Golatkar et al., CVPR 2020."""

from __future__ import annotations

from dataclasses import dataclass

from .._validation import categorical, integers, log_uniform, param
from ..training import sgd
from ._loops import run_epochs
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class NegGradParams(StopParams):
    """epochs: passes over the forget set; lr: SGD step (small: ascent diverges fast)."""

    epochs: int = param(5, ge=0, space=integers(1, 10))
    lr: float = param(1e-4, gt=0, space=log_uniform(1e-6, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1, space=categorical(32, 64, 128, 256))


@register
class NegGrad(Method[NegGradParams]):
    name = "neggrad"
    paper = "Thudi et al., Unrolling SGD: Understanding Factors Influencing Machine Unlearning, EuroS&P 2022"
    Params = NegGradParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, data.forget, epochs=p.epochs, batch_size=p.batch_size, optimizer=opt, ctx=ctx,
                   phase="forget-ascent", sign=-1.0, stoppable=True)
        return model
