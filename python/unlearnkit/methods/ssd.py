"""Selective Synaptic Dampening: shrink the weights far more important to the forget set than to
the training set. Foster, Schoepf & Brintrup, Fast Machine Unlearning Without Retraining Through
Selective Synaptic Dampening, AAAI 2024."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import log_uniform, param
from ..data.batches import BatchSource, TensorSource, concat_sources
from ..training import Precision
from .base import Context, Method, register


@dataclass(frozen=True)
class SSDParams:
    """dampening: lambda, the dampening constant; selection: alpha, the selection weighting;
    batch_size: samples per gradient when estimating the importances."""

    dampening: float = param(1.0, gt=0, space=log_uniform(0.1, 10.0))
    selection: float = param(10.0, gt=0, space=log_uniform(0.1, 100.0))
    batch_size: int = param(128, ge=1)


def importance(model: nn.Module, x, y: torch.Tensor | None = None, *, batch_size: int = 128,
               device: torch.device | str = "cpu", ctx: Context | None = None, phase: str = "importance"
               ) -> dict[str, torch.Tensor]:
    """SSD's diagonal Fisher estimate: for each parameter, the mean over the (unshuffled) batches of
    the squared gradient of the batch's mean cross-entropy, [I]_i = mean_b (d CE(B_b) / d theta_i)^2,
    as in the reference code. ``model`` is not changed. ``x`` may be a BatchSource (with ``y=None``)."""
    source = x if isinstance(x, BatchSource) else TensorSource(x, y, name="x")
    amp = ctx.amp if ctx is not None else Precision("fp32", device)
    params = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    imp = {n: torch.zeros_like(q) for n, q in params}
    was_training = model.training
    model.eval()
    n_batches = math.ceil(len(source) / batch_size)
    for k, b in enumerate(source.batches(batch_size, device=torch.device(device))):
        with amp.autocast():
            loss = F.cross_entropy(model(b.x), b.y)
        for (n, _), g in zip(params, torch.autograd.grad(loss, [q for _, q in params])):
            imp[n] += g.float().pow(2)
        if ctx is not None:
            ctx.log(phase, k + 1, n_batches, loss=loss.detach())
    model.train(was_training)
    return {n: v / n_batches for n, v in imp.items()}


@register
class SSD(Method[SSDParams]):
    """Selective Synaptic Dampening (Foster et al., AAAI 2024), retraining-free.

    With [I_D]_i and [I_Df]_i the diagonal Fisher importances of parameter i on the full training
    set D = D_r + D_f and on the forget set D_f (``importance``), SSD selects the parameters that
    matter far more to D_f than to D and dampens them:

        beta_i = min(lambda * [I_D]_i / [I_Df]_i, 1)
        theta_i <- beta_i * theta_i   if [I_Df]_i > alpha * [I_D]_i,   else theta_i unchanged

    Defaults are the paper's for every ResNet-18 CIFAR task: lambda = 1, alpha = 10, batches of 128
    (importances depend on the batch size, since each is the mean of squared batch gradients).
    No gradient step is taken; the cost is two passes of gradients, one over D.
    """

    name = "ssd"
    paper = "Foster et al., Fast Machine Unlearning Without Retraining Through Selective Synaptic Dampening, AAAI 2024"
    Params = SSDParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        imp_f = importance(model, data.forget, batch_size=p.batch_size, device=ctx.device, ctx=ctx,
                           phase="importance-forget")
        train = concat_sources([data.retain, data.forget], name="retain+forget")
        imp_d = importance(model, train, batch_size=p.batch_size, device=ctx.device, ctx=ctx,
                           phase="importance-train")
        selected = total = 0
        with torch.no_grad():
            for n, q in model.named_parameters():
                if n not in imp_f:
                    continue
                sel = imp_f[n] > p.selection * imp_d[n]
                beta = (p.dampening * imp_d[n] / imp_f[n]).clamp(max=1.0)
                q.copy_(torch.where(sel, q * beta, q))
                selected += int(sel.sum())
                total += sel.numel()
        ctx.log("dampen", 1, 1, selected=selected / max(total, 1))
        model.eval()
        return model
