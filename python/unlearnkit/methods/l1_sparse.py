"""l1-sparse: fine-tune on the retain set with an L1 penalty on the weights whose strength decays
linearly to zero. Jia, Liu, Ram, Yao, Liu, Liu, Sharma & Liu, Model Sparsity Can Simplify Machine
Unlearning, NeurIPS 2023."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import integers, log_uniform, param
from ..training import sgd
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class L1SparseParams(StopParams):
    """alpha: initial L1 strength (gamma in the paper), decayed linearly per epoch; epochs: passes
    over the retain set; lr, momentum, weight_decay: SGD; batch_size: retain samples per step."""

    alpha: float = param(5e-4, ge=0, space=log_uniform(1e-6, 1e-2))
    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(256, ge=1)


def l1_norm(model: torch.nn.Module) -> torch.Tensor:
    """||theta||_1 over every parameter of ``model`` (weights and biases, as in the reference code)."""
    return torch.as_tensor(sum(p.abs().sum() for p in model.parameters()))  # a tensor: no parameters gives 0.


@register
class L1Sparse(Method[L1SparseParams]):
    """l1-sparse unlearning (Jia et al., Model Sparsity Can Simplify Machine Unlearning, NeurIPS 2023).

    Sparsity-aware fine-tuning: starting from the original model, minimise on the retain set

        L_t(theta) = CE(theta; D_r) + gamma_t * ||theta||_1,   gamma_t = gamma * (1 - t / T)

    for epochs t = 0..T-1, so the L1 prior pushes towards a sparse model (which the paper shows
    narrows the gap to retraining) early on and vanishes by the end. Defaults are the
    Unlearn-Sparse / SalUn code bases' (``FT_l1``): SGD lr 0.01, momentum 0.9, weight decay 5e-4,
    10 epochs, batch 256, gamma = 5e-4 (the paper searches gamma in about [1e-5, 1e-3]).
    """

    name = "l1_sparse"
    paper = "Jia et al., Model Sparsity Can Simplify Machine Unlearning, NeurIPS 2023 (l1-sparse)"
    Params = L1SparseParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        n = len(data.retain)
        total = p.epochs * math.ceil(n / p.batch_size)
        step = 0
        model.train()
        for epoch in range(p.epochs):
            alpha = p.alpha * (1.0 - epoch / p.epochs)
            for b in ctx.batches(data.retain, p.batch_size):
                with ctx.amp.autocast():
                    ce = F.cross_entropy(model(b.x), b.y)
                loss = ce + alpha * l1_norm(model) if alpha > 0 else ce
                ctx.amp.step(opt, loss)
                step += 1
                ctx.log("retain+l1", step, total, loss=loss.detach(), ce=ce.detach(), alpha=alpha)
                if ctx.stop_check(model):
                    model.eval()
                    return model
        model.eval()
        return model
