"""Random labels: fine-tune on the forget set relabelled with random wrong classes, together
with the retain set. Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020;
defaults as in SalUn's RL baseline (Fan et al., ICLR 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..training import sgd
from ._loops import random_wrong_labels, run_epochs
from .base import Method, register


@dataclass(frozen=True)
class RandomLabelsParams:
    """epochs over forget+retain; lr, momentum, weight_decay: SGD; batch_size."""

    epochs: int = 10
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64


@register
class RandomLabels(Method):
    name = "random_labels"
    paper = "Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (RL as in SalUn, ICLR 2024)"
    Params = RandomLabelsParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        x = torch.cat([data.x_forget, data.x_retain])
        y = torch.cat([data.y_forget, data.y_retain])
        is_forget = torch.zeros(len(y), dtype=torch.bool)
        is_forget[: len(data.y_forget)] = True

        def relabel(idx, yb):  # fresh wrong labels for forget samples at every visit
            wrong = random_wrong_labels(yb, data.num_classes, ctx.generator)
            return torch.where(is_forget[idx], wrong, yb)

        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, x, y, epochs=p.epochs, batch_size=p.batch_size, optimizer=opt, ctx=ctx,
                   phase="relabelled", relabel=relabel)
        return model
