"""Boundary Shrink: relabel each forget sample with the class of its nearest adversarial neighbour
and fine-tune on those labels. Chen, Gao, Zhou, Wei & Chen, Boundary Unlearning, CVPR 2023."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import integers, log_uniform, param
from ..data.batches import TensorSource
from ..training import Precision, sgd
from ._loops import run_epochs
from ._stop import StopParams
from .base import Method, register


@dataclass(frozen=True)
class BoundaryShrinkParams(StopParams):
    """bound: FGSM step (L-infinity radius, in [0, 1] pixel units) of the neighbour search; epochs:
    passes over the forget set; lr, momentum, weight_decay: SGD (the paper: lr 1e-5, momentum 0.9,
    10 epochs); batch_size: forget samples per step."""

    bound: float = param(0.1, gt=0, space=log_uniform(0.01, 0.5))
    epochs: int = param(10, ge=0, space=integers(1, 10))
    lr: float = param(1e-5, gt=0, space=log_uniform(1e-6, 1e-2))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(0.0, ge=0)
    batch_size: int = param(64, ge=1)


@torch.no_grad()
def _masked_argmax(logits: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    return logits.scatter(1, exclude[:, None], float("-inf")).argmax(1)


def nearest_wrong_labels(model, x: torch.Tensor, y: torch.Tensor, *, bound: float, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """The label of each sample's FGSM neighbour under ``model``, never the sample's own.

    x_adv = clip(x + bound * sign(grad_x CE(model(x), y)), 0, 1); the new label is the arg-max of
    model(x_adv) over the classes other than y (when the attack crosses the boundary this is
    its prediction; when it does not, it is the runner-up class at the neighbour, the nearest wrong
    side of the boundary). ``model`` is not changed. Returns (n,) int64 labels on the CPU.
    """
    return _neighbours(model, TensorSource(x, y, name="x"), bound, batch_size, torch.device(device))[0]


def _neighbours(model, source, bound, batch_size, device, amp=None):
    """(nearest wrong labels, whether the FGSM neighbour's prediction already left the true class),
    over ``source`` (a BatchSource) in order."""
    amp = amp or Precision("fp32", device)
    was_training = model.training
    model.eval()
    labels, crossed = [], []
    for b in source.batches(batch_size, device=device):
        xb = b.x.clone().requires_grad_(True)
        yb = b.y
        with amp.autocast():
            loss = F.cross_entropy(model(xb), yb)
        (grad,) = torch.autograd.grad(loss, xb)
        x_adv = (xb.detach() + bound * grad.sign()).clamp_(0.0, 1.0)
        with torch.no_grad(), amp.autocast():
            logits = model(x_adv).float()
        labels.append(_masked_argmax(logits, yb).cpu())
        crossed.append((logits.argmax(1) != yb).cpu())
    model.train(was_training)
    return torch.cat(labels), torch.cat(crossed)


@register
class BoundaryShrink(Method[BoundaryShrinkParams]):
    """Boundary Shrink (Chen et al., Boundary Unlearning, CVPR 2023).

    The original model theta_o is frozen as the neighbour searcher. For every forget sample (x, y) an
    FGSM step of radius ``bound`` finds a nearby point just across the decision boundary,

        x' = clip(x + bound * sign(grad_x CE(f(x; theta_o), y)), 0, 1)
        y_nbi = argmax_{k != y} f(x'; theta_o)_k

    and the model is fine-tuned on the forget set relabelled with these nearest wrong classes,
    min_theta E_{(x, y) in D_f} CE(f(x; theta), y_nbi), which shrinks the forget samples' decision
    space into their neighbouring classes. Defaults are the paper's (bound 0.1 on [0, 1] images,
    SGD lr 1e-5, momentum 0.9, 10 epochs); that learning rate is meant for ResNets on CIFAR and is
    raised in the recipes for the small CNN. Since theta_o is fixed and FGSM deterministic, the
    neighbour labels are computed once. Two small departures from the reference code: the arg-max
    excludes the true class (the code keeps the true label when FGSM fails to cross), and pixels are
    not re-quantised to 1/255 after the step.
    """

    name = "boundary_shrink"
    paper = ("Chen et al., Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the Decision "
             "Boundary, CVPR 2023")
    Params = BoundaryShrinkParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        y_nbi, crossed = _neighbours(model, data.forget, p.bound, 256, ctx.device, ctx.amp)
        ctx.log("neighbour-search", 1, 1, crossed=crossed.float().mean())
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        run_epochs(model, data.forget, epochs=p.epochs, batch_size=p.batch_size, optimizer=opt,
                   ctx=ctx, phase="shrink", relabel=lambda idx, yb: y_nbi[idx], stoppable=True)
        return model
