"""Retrain from scratch on the retain set: the gold standard every method is measured against."""

from __future__ import annotations

from ..training import TrainConfig, fit
from .base import Method, register


def reset_parameters(model) -> None:
    for m in model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


@register
class Retrain(Method[TrainConfig]):
    name = "retrain"
    paper = "the exact-unlearning reference (Cao & Yang, S&P 2015; Bourtoule et al., S&P 2021)"
    Params = TrainConfig  # the original model's recipe, applied to the retain set

    def _unlearn(self, model, data, ctx):
        reset_parameters(model)
        return fit(model, data.x_retain, data.y_retain, self.params, seed=ctx.seed, callbacks=ctx.callbacks,
                   source=ctx.source)
