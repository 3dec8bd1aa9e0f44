"""Layer: methods. Fisher forgetting: add Gaussian noise to the weights, scaled by the inverse of
the diagonal Fisher information of the retain loss, so that weights the retain set does not pin
down are scrambled (and with them what only the forget set taught). Golatkar, Achille & Soatto,
Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks, CVPR 2020.

Numerical invariants: the Fisher diagonal is the exact per-sample one of the reference code,
F_i = (1/n) sum_n sum_c p(c | x_n) (d CE(f(x_n), c) / d theta_i)^2 (the expectation over the
model's own predictive distribution: the true Fisher, not the empirical one), accumulated batch by
batch from per-sample gradients (``torch.func.vmap``), so only one batch of per-sample gradients
exists at a time. The variance is finite and positive (1 / (F + 1e-8) clamped).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from .._validation import log_uniform, param
from ..data.batches import BatchSource, TensorSource
from ..training import Precision
from .base import Context, Method, register
from .cf_k import example_input, parameterised_layers


@dataclass(frozen=True)
class FisherParams:
    """alpha: the noise scale (the reference code's 1e-6 for the scrubbing step); clamp, head_clamp:
    upper bounds of 1/F for all weights and for the classifier's (1e3 and 1e2 in the code);
    batch_size: samples per batch of per-sample gradients (memory: batch_size x parameters floats)."""

    alpha: float = param(1e-6, gt=0, space=log_uniform(1e-9, 1e-5))
    clamp: float = param(1e3, gt=0)
    head_clamp: float = param(1e2, gt=0)
    batch_size: int = param(128, ge=1)


def diagonal_fisher(model: nn.Module, x: torch.Tensor | BatchSource, *, batch_size: int = 64, device=None,
                    ctx: Context | None = None, amp: Precision | None = None) -> dict[str, torch.Tensor]:
    """The diagonal of the (true) Fisher information of the cross-entropy on ``x``.

    Args:
        model: the classifier (set to eval mode for the computation; not changed).
        x: (n, C, H, W) inputs, or a ``BatchSource`` (read in order; its labels are not needed: the
            expectation is over the model's classes).
        batch_size: samples whose per-sample gradients are held at once.
        ctx: the method's context (progress events; its ``amp`` is the default of ``amp``).
        amp: the precision of the forward passes (autocast); default fp32. The softmax and the
            squared gradients are accumulated in float32 whatever the precision.

    Returns:
        ``{name: (shape of the parameter) float32 tensor}`` on the CPU for each parameter that
        requires grad: (1/n) sum_n sum_c p(c|x_n) g_{n,c}^2, g_{n,c} the gradient of CE(f(x_n), c).
    """
    device = device if device is not None else next(model.parameters()).device
    amp = amp or (ctx.amp if ctx is not None else Precision("fp32", device))
    params = {n: q.detach() for n, q in model.named_parameters() if q.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    was_training = model.training
    model.eval()

    def loss(ps, xi, ci):
        with amp.autocast():
            out = functional_call(model, (ps, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out.float(), ci.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    acc = {n: torch.zeros_like(q, dtype=torch.float32) for n, q in params.items()}
    source = x if isinstance(x, BatchSource) else TensorSource(x, torch.zeros(len(x), dtype=torch.long), name="x")
    n_batches = -(-len(source) // batch_size)
    try:
        for b, batch in enumerate(source.batches(batch_size, shuffle=False, device=device)):
            xb = batch.x
            with torch.no_grad(), amp.autocast():
                logits = model(xb)
            prob = F.softmax(logits.float(), dim=1)
            for c in range(prob.shape[1]):
                g = per_sample(params, xb, torch.full((len(xb),), c, dtype=torch.long, device=device))
                w = prob[:, c]
                for n in acc:
                    acc[n] += torch.einsum("b,b...->...", w, g[n].float().pow(2))
            if ctx is not None:
                ctx.log("fisher", b + 1, n_batches)
    finally:
        model.train(was_training)
    return {n: (v / max(len(source), 1)).cpu() for n, v in acc.items()}


def noise_variance(fisher: dict[str, torch.Tensor], *, alpha: float, head: set[str], clamp: float = 1e3,
                   head_clamp: float = 1e2, forget_classes: list[int] | tuple = ()) -> dict[str, torch.Tensor]:
    """The per-weight noise variance of the reference code, from a Fisher diagonal.

    For each parameter: v = min(1 / (F + 1e-8), clamp) (``head_clamp`` for the classifier's
    parameters, names in ``head``), times ``alpha``; for a parameter of two or more dimensions v is
    averaged over dimension 1 (over the inputs of each output unit); the classifier's variance and
    that of every 1-D parameter (biases, norm scales) is multiplied by 10. For a removed class
    (``forget_classes``) the classifier's rows get variance 1e-4 (and the caller sets their mean to 0).
    """
    out = {}
    for n, f in fisher.items():
        v = (1.0 / (f + 1e-8)).clamp(max=head_clamp if n in head else clamp) * alpha
        if v.dim() > 1:
            v = v.mean(dim=1, keepdim=True).expand_as(f).clone()
        if n in head and len(forget_classes):
            v[list(forget_classes)] = 1e-4
        if n in head or v.dim() == 1:
            v = v * 10
        out[n] = v
    return out


@register
class FisherForgetting(Method[FisherParams]):
    """Fisher forgetting (Golatkar et al., CVPR 2020), retraining-free.

    theta <- theta + sqrt(v) * N(0, I), v = ``noise_variance(diagonal_fisher(retain))``: the noise
    is large along the directions the retain loss is flat in. When whole classes are removed (no
    retain sample has a forget label) the classifier's rows of those classes are set to 0 plus a
    little noise (variance 1e-3 after the x10), as the reference code does for class forgetting.
    Cost: ``num_classes`` per-sample gradient passes over the retain set.
    """

    name = "fisher"
    paper = ("Golatkar, Achille & Soatto, Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
             "Networks, CVPR 2020")
    Params = FisherParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        head_modules = parameterised_layers(model, example_input(data, ctx))[-1][:1]
        head_params = {id(q) for m in head_modules for q in m.parameters(recurse=False)}
        head = {n for n, q in model.named_parameters() if id(q) in head_params}
        removed = sorted(set(data.forget.all_labels(p.batch_size).tolist())
                         - set(data.retain.all_labels(p.batch_size).tolist()))
        fisher = diagonal_fisher(model, data.retain, batch_size=p.batch_size, device=ctx.device, ctx=ctx)
        var = noise_variance(fisher, alpha=p.alpha, head=head, clamp=p.clamp, head_clamp=p.head_clamp,
                             forget_classes=removed)
        with torch.no_grad():
            for n, q in model.named_parameters():
                if n not in var:
                    continue
                mu = q.detach().clone()
                if n in head and removed:
                    mu[removed] = 0.0
                eps = torch.randn(q.shape, generator=ctx.generator).to(q.device, q.dtype)
                q.copy_(mu + var[n].to(q.device, q.dtype).sqrt() * eps)
        ctx.log("noise", 1, 1, mean_std=torch.cat([v.flatten().sqrt() for v in var.values()]).mean())
        return model
