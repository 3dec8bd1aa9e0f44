"""Layer: methods. UNSIR: learn error-maximising noise for what is to be forgotten, train on it
with a little retain data (impair), then on retain data only (repair). Tarun, Chundawat, Mandal &
Kankanhalli, Fast Yet Effective Machine Unlearning, IEEE TNNLS 2023 (arXiv 2111.08947).

Noise lives in the model's input space (unnormalised [0, 1] pixel units; it is not clamped, as in
the paper's code) and is optimised with the model frozen: maximise CE(f(N), y) - lambda *
mean_i ||N_i||^2 (the code's 0.1 * mean over noise images of the sum of squares). The model's
parameters only change in the impair and repair passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import categorical, integers, log_uniform, param
from ..data.batches import BatchSource, TensorSource, concat_sources
from ..training import Precision
from ._loops import run_epochs
from .base import Method, register


@dataclass(frozen=True)
class UNSIRParams:
    """Defaults are the paper's code (CIFAR-10, ResNet-18, Adam throughout).

    mode: "class" learns one batch of ``noise_batch`` noise images per forget class (the paper);
        "sample" learns one noise image per forget sample, with that sample's label (random
        forgetting, as DLFD's code does); "auto" picks "class" when every forget class is absent
        from the retain set (a whole class is removed), else "sample".
    noise_lr, noise_epochs, noise_steps: Adam on the noise (5 x 8 steps at 0.1);
    noise_reg: lambda, the weight of the noise's squared L2 norm (0.1);
    noise_batch: noise images per class (class mode) / per optimisation batch (sample mode) (256);
    noise_repeats: copies of each class's noise batch in the impair set (20; class mode only:
        sample mode uses each noise image once, as many as forget samples);
    retain_per_class: retain samples per class in the impair and repair sets (1000; None: all);
    impair_lr, repair_lr, impair_epochs, repair_epochs: Adam passes (0.02 / 0.01, one each);
    batch_size: impair and repair batches (256).
    """

    mode: str = param("auto", choices=("auto", "class", "sample"))
    noise_lr: float = param(0.1, gt=0, space=log_uniform(1e-3, 1.0))
    noise_epochs: int = param(5, ge=0)
    noise_steps: int = param(8, ge=1)
    noise_reg: float = param(0.1, ge=0, space=log_uniform(1e-3, 1.0))
    noise_batch: int = param(256, ge=1)
    noise_repeats: int = param(20, ge=1)
    retain_per_class: int | None = param(1000, ge=1, space=categorical(100, 300, 1000))
    impair_lr: float = param(0.02, gt=0, space=log_uniform(1e-5, 1e-1))
    repair_lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    impair_epochs: int = param(1, ge=0, space=integers(1, 3))
    repair_epochs: int = param(1, ge=0, space=integers(1, 3))
    batch_size: int = param(256, ge=1, space=categorical(64, 128, 256))


def error_maximising_noise(model, labels: torch.Tensor, shape: tuple, *, lr: float, epochs: int, steps: int,
                           reg: float, generator: torch.Generator, device, amp: Precision | None = None) -> torch.Tensor:
    """(len(labels), *shape) noise maximising the model's cross-entropy on ``labels`` with an L2
    penalty: Adam ascent on CE(f(N), labels) - reg * mean_i ||N_i||^2 from N ~ N(0, 1), the model
    in eval mode and untouched (gradients are taken w.r.t. the noise only). ``amp``: the forward
    pass's precision (autocast; the noise itself and its Adam state stay float32)."""
    amp = amp or Precision("fp32", device)
    noise = torch.randn((len(labels), *shape), generator=generator).to(device).requires_grad_(True)
    opt = torch.optim.Adam([noise], lr=lr)
    labels = labels.to(device)
    was_training = model.training
    model.eval()
    for _ in range(epochs * steps):
        with amp.autocast():
            logits = model(noise)
        loss = -F.cross_entropy(logits.float(), labels) + reg * noise.pow(2).flatten(1).sum(1).mean()
        (g,) = torch.autograd.grad(loss, [noise])
        opt.zero_grad(set_to_none=True)
        noise.grad = g
        opt.step()
    model.train(was_training)
    return noise.detach().cpu()


def _impair_source(noise: TensorSource, retain: BatchSource) -> BatchSource:
    """The impair set: the noise images, then the retain samples (positions in that order).

    In memory (a TensorSource retain) this is one TensorSource of the concatenated tensors; a
    streamed retain set stays streamed (``concat_sources``), except when it is read through the
    user's own ``collate_fn`` (which cannot be mixed with tensor items): then only the retain
    subset, at most ``retain_per_class`` samples per class, is read into memory."""
    try:
        return concat_sources([noise, retain], name="impair")
    except ValueError:
        x_r, y_r = retain.tensors()
        return TensorSource(torch.cat([noise.x, x_r.to(noise.x.dtype)]), torch.cat([noise.y, y_r]), name="impair")


def _per_class_subset(y: torch.Tensor, per_class: int | None, generator: torch.Generator) -> torch.Tensor:
    """Indices of up to ``per_class`` samples of each class (a seeded random choice), or all."""
    if per_class is None:
        return torch.arange(len(y))
    perm = torch.randperm(len(y), generator=generator)
    keep = torch.zeros(len(y), dtype=torch.bool)
    for c in torch.unique(y):
        keep[perm[y[perm] == c][:per_class]] = True
    return torch.nonzero(keep).flatten()


@register
class UNSIR(Method[UNSIRParams]):
    """UNSIR: error-maximising noise, impair, repair (Tarun et al., TNNLS 2023).

    1. Noise: for each forget class, a batch of noise images labelled with that class whose
       cross-entropy under the frozen model is maximised (``error_maximising_noise``); in "sample"
       mode one noise image per forget sample, with its label.
    2. Impair: Adam passes over the noise (``noise_repeats`` copies per class) mixed with
       ``retain_per_class`` retain samples per class: learning that the forget labels go with
       error-maximising inputs damages what the model knows of them.
    3. Repair: Adam passes over the same retain samples only.

    Deviation from the released notebook: it labels every class's noise with class 0 (a counter
    that never advances), right only for its first forget class; here each noise batch carries its
    own class. DLFD's code for random forgetting learns one noise batch for the first forget batch
    and reuses it cyclically with the labels of all forget samples; here every forget sample gets
    its own noise image optimised for its own label.
    """

    name = "unsir"
    paper = "Tarun et al., Fast Yet Effective Machine Unlearning, IEEE TNNLS 2023 (arXiv 2111.08947)"
    Params = UNSIRParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        shape = tuple(data.forget.take(torch.arange(1)).x.shape[1:])
        y_forget = data.forget.all_labels(p.batch_size)
        y_retain = data.retain.all_labels(p.batch_size)
        forget_classes = torch.unique(y_forget)
        mode = p.mode
        if mode == "auto":
            mode = "class" if not torch.isin(forget_classes, y_retain).any() else "sample"
        noise_kw = dict(lr=p.noise_lr, epochs=p.noise_epochs, steps=p.noise_steps, reg=p.noise_reg,
                        generator=ctx.generator, device=ctx.device, amp=ctx.amp)
        xs, ys = [], []
        if mode == "class":
            for i, c in enumerate(forget_classes.tolist()):
                labels = torch.full((p.noise_batch,), c, dtype=torch.long)
                n = error_maximising_noise(model, labels, shape, **noise_kw)
                xs.append(n.repeat(p.noise_repeats, *([1] * len(shape))))
                ys.append(labels.repeat(p.noise_repeats))
                ctx.log("noise", i + 1, len(forget_classes), norm=n.flatten(1).norm(dim=1).mean())
        else:
            n_batches = -(-len(y_forget) // p.noise_batch)
            for b in range(n_batches):
                labels = y_forget[b * p.noise_batch:(b + 1) * p.noise_batch]
                n = error_maximising_noise(model, labels, shape, **noise_kw)
                xs.append(n)
                ys.append(labels)
                ctx.log("noise", b + 1, n_batches, norm=n.flatten(1).norm(dim=1).mean())
        keep = _per_class_subset(y_retain, p.retain_per_class, ctx.generator)
        retain = data.retain.subset(keep)  # the impair/repair retain samples, streamed like the retain set
        noise = TensorSource(torch.cat(xs), torch.cat(ys), name="noise")
        impair = _impair_source(noise, retain)
        opt = torch.optim.Adam(model.parameters(), lr=p.impair_lr)
        run_epochs(model, impair, epochs=p.impair_epochs, batch_size=p.batch_size, optimizer=opt,
                   ctx=ctx, phase="impair")
        opt = torch.optim.Adam(model.parameters(), lr=p.repair_lr)
        run_epochs(model, retain, epochs=p.repair_epochs, batch_size=p.batch_size, optimizer=opt,
                   ctx=ctx, phase="repair")
        return model
