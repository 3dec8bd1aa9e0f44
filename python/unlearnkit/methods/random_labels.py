"""Random labels: fine-tune on the forget set relabelled with random wrong classes, together
with the retain set. Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020;
defaults as in SalUn's RL baseline (Fan et al., ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import categorical, integers, log_uniform, param
from ..data.batches import concat_sources
from ..training import sgd
from ._loops import random_wrong_labels, run_epochs
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class RandomLabelsParams(StopParams):
    """epochs over forget+retain; lr, momentum, weight_decay: SGD; batch_size."""

    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1, space=categorical(32, 64, 128, 256))


@register
class RandomLabels(Method[RandomLabelsParams]):
    name = "random_labels"
    paper = "Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (RL as in SalUn, ICLR 2024)"
    Params = RandomLabelsParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        both = concat_sources([data.forget, data.retain], name="forget+retain")  # forget first: positions < n_f
        n_f = len(data.forget)

        def relabel(idx, yb):  # fresh wrong labels for forget samples at every visit
            wrong = random_wrong_labels(yb, data.num_classes, ctx.generator)
            return torch.where((idx < n_f).to(yb.device), wrong, yb)

        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, both, epochs=p.epochs, batch_size=p.batch_size, optimizer=opt, ctx=ctx,
                   phase="relabelled", relabel=relabel, stoppable=True)
        return model
