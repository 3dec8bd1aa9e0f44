"""DLFD: distribution-level feature distancing. Choi & Na, Distribution-Level Feature Distancing
for Machine Unlearning: Towards a Better Trade-off Between Model Utility and Forgetting, AAAI 2025
(arXiv 2409.14747). Spec: ``../shared/papers/dlfd.md``.

Data access: the retain set is read in passes and the forget set in an endless cycle, both through
their ``BatchSource``s in the call's seeded order, forward passes under ``ctx.amp``; the forgetting
score reads only its ``mia_samples`` per set and the validation accuracy a fixed ``val_samples``
subsample of ``test`` (read once), as index sets (``take``), so a streamed Dataset / DataLoader is
never held in memory whole. On tensors the result is bit for bit that of indexing them."""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import categorical, integers, log_uniform, param
from ..data.batches import BatchSource, TensorSource
from ..losses import SinkhornLoss
from ..metrics.membership import mia_forget_vs_test
from ..training import Precision, predict, sgd
from ._stop import StopParams, stop_enabled
from .base import Method, register

MODES = ("paper", "reference_code")
LAYERS = ("logits", "features")


@dataclass(frozen=True)
class DLFDParams(StopParams):
    """Hyper-parameters (defaults: the paper's MUFAC setting, read from the official code).

    epochs: passes over the retain set (the paper: one); batch_size: retain (and forget) batch;
    lr, momentum, weight_decay: SGD; lambda_f: weight of the OT term in the synthesis;
    w_start, w_end: the classification weight w_t ramps linearly between them over the pass;
    steps: S, sign-gradient steps of the synthesis; alpha: step size, in the units of the
    model's input tensors (images in [0, 1] here; the paper's 0.4 is for its normalised inputs,
    so rescale per dataset: the recipes do); pixel_range: clamp of the perturbed images;
    forget_threshold: synthesise while FS = |MIA - 0.5| >= it; max_forgetting_score: keep the
    best-validation state among those with FS <= it; epsilon, ot_max_iter, ot_tol: Sinkhorn
    (cosine cost, uniform weights, no annealing); layer: "logits" (official code) or "features";
    mode: "paper" (OT on the perturbed features) or "reference_code" (OT on the clean batch, no
    gradient to delta, as released); mia_samples: per-set subsample of the forgetting score;
    mia_splits: its shuffle splits; check_every: retain batches between forgetting-score checks
    (1 = every batch, the paper; larger saves time on CPU); val_samples: validation subsample.
    """

    epochs: int = param(1, ge=0, space=integers(1, 3))
    batch_size: int = param(32, ge=1, space=categorical(32, 64, 128))
    lr: float = param(0.008, gt=0, space=log_uniform(1e-4, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    lambda_f: float = param(3.0, ge=0, space=log_uniform(0.1, 10.0))
    w_start: float = param(0.0, ge=0)
    w_end: float = param(1.0, ge=0)
    steps: int = param(15, ge=0, space=integers(1, 20))
    alpha: float = param(0.4, ge=0, space=log_uniform(1e-3, 1.0))
    pixel_range: tuple[float, float] = param((0.0, 1.0), length=2)
    forget_threshold: float = param(0.15, ge=0, le=0.5)
    max_forgetting_score: float = param(0.09, ge=0, le=0.5)
    epsilon: float = param(0.01, gt=0)
    ot_max_iter: int = param(50, ge=1)
    ot_tol: float = param(0.1, gt=0)
    layer: str = param("logits", choices=LAYERS)
    mode: str = param("paper", choices=MODES)
    mia_samples: int = param(300, ge=1)
    mia_splits: int = param(10, ge=1)
    check_every: int = param(1, ge=1)
    val_samples: int = param(2000, ge=1)

    def __post_init__(self):  # per-field constraints live in the field metadata (checked by Method)
        lo, hi = self.pixel_range
        if not lo < hi:
            raise ValueError(f"pixel_range: expected (low, high) with low < high, got {self.pixel_range!r}")


def _outputs(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    return model(x) if layer == "logits" else model.features(x)


def synthesize(model: nn.Module, x_retain: torch.Tensor, y_retain: torch.Tensor, z_forget: torch.Tensor, *,
               ot: SinkhornLoss, w: float, lambda_f: float, steps: int, alpha: float,
               pixel_range: tuple[float, float] = (0.0, 1.0), layer: str = "logits",
               mode: str = "paper", amp: Precision | None = None) -> tuple[torch.Tensor, list[float]]:
    """DLFD's synthesis step: a perturbation that moves the retain batch's outputs away from the
    forget batch's (in OT distance) while keeping them classifiable.

    delta = 0; S times: x' = clamp(x_r + delta), L = -w CE(f(x'), y_r) + lambda_f OT(f(x'), z_f),
    delta += alpha * sign(dL / d delta). In ``mode="reference_code"`` the OT term is computed on
    the clean batch (it then has no gradient w.r.t. delta, as in the released code).

    Args:
        x_retain: (B, C, H, W) retain images; y_retain: (B,) labels.
        z_forget: (B_f, K) outputs of the forget batch at ``layer`` (detached).
        amp: the call's precision: the model's forward passes run under its autocast (the OT and
            the cross-entropy choose their own dtypes); None: float32.
    Returns:
        (x' (B, C, H, W) detached, the OT value after each step (S floats), computed on x').
    The model's parameters get no gradient; its mode is left as found.
    """
    autocast = amp.autocast if amp is not None else contextlib.nullcontext
    lo, hi = pixel_range
    delta = torch.zeros_like(x_retain, requires_grad=True)
    history = []
    params = [q for q in model.parameters() if q.requires_grad]
    for q in params:
        q.requires_grad_(False)
    ot.reset_warm_start()  # potentials carry over between the S steps of this batch only
    try:
        # reference_code: the OT term is the clean batch's, a constant of delta: solved once
        if mode == "reference_code":
            with autocast():
                clean_ot = ot(_outputs(model, x_retain, layer).detach(), z_forget)
        else:
            clean_ot = None
        for step in range(steps + 1):
            last = step == steps
            if last and clean_ot is not None:
                history.append(float(clean_ot))
                break
            xp = (x_retain + delta).clamp(lo, hi)
            with torch.set_grad_enabled(not last), autocast():
                feats = model.features(xp)
                logits = model.head(feats)
                ot_val = clean_ot if clean_ot is not None else ot(logits if layer == "logits" else feats, z_forget)
            if step > 0:
                # the OT at the start of step k+1 is the OT after step k's update: one forward
                # and one Sinkhorn solve per step, not two
                history.append(float(ot_val.detach()))
            if last:
                break
            with autocast():
                loss = -w * F.cross_entropy(logits, y_retain) + lambda_f * ot_val
            (grad,) = torch.autograd.grad(loss, delta, allow_unused=True)
            with torch.no_grad():
                if grad is not None:
                    delta += alpha * grad.sign()
    finally:
        for q in params:
            q.requires_grad_(True)
    return (x_retain + delta.detach()).clamp(lo, hi), history


def forgetting_score(model: nn.Module, x_forget, y_forget, x_unseen, y_unseen, *, samples: int, splits: int,
                     seed: int) -> tuple[float, float]:
    """(FS, MIA): MIA = mean accuracy of a logistic-regression attack on per-sample cross-entropy
    telling forget (1) from unseen (0) samples (``samples`` per set, ``splits`` stratified shuffle
    splits); FS = |MIA - 0.5| (the official code's scale; the paper reports 2 FS).

    ``x_forget``, ``x_unseen``: (n, C, H, W) images with their (n,) labels ``y_forget``, ``y_unseen``;
    or ``BatchSource``s with ``y_*=None``, of which only the ``samples`` drawn are read."""
    forget = x_forget if isinstance(x_forget, BatchSource) else TensorSource(x_forget, y_forget, name="x_forget")
    unseen = x_unseen if isinstance(x_unseen, BatchSource) else TensorSource(x_unseen, y_unseen, name="x_unseen")
    return _forgetting_score(model, forget, unseen, samples=samples, splits=splits, seed=seed)


def _forgetting_score(model, forget: BatchSource, unseen: BatchSource, *, samples: int, splits: int, seed: int,
                      amp: Precision | None = None) -> tuple[float, float]:
    g = np.random.default_rng(seed)
    fi = g.permutation(len(forget))[:samples]
    ti = g.permutation(len(unseen))[:samples]
    precision = amp if amp is not None else "fp32"
    bf, bt = forget.take(fi), unseen.take(ti)
    lf = F.cross_entropy(predict(model, bf.x, precision=precision), bf.y.cpu(), reduction="none").numpy()
    lt = F.cross_entropy(predict(model, bt.x, precision=precision), bt.y.cpu(), reduction="none").numpy()
    mia = mia_forget_vs_test(lf, lt, n_splits=splits, seed=seed)
    return abs(mia - 0.5), mia


@register
class DLFD(Method):
    """DLFD (Choi & Na, Distribution-Level Feature Distancing for Machine Unlearning, AAAI 2025).

    One pass over the retain set in batches of ``batch_size``, each paired with a forget batch.
    After every ``check_every`` batches the forgetting score FS = |MIA - 0.5| of the loss-based
    attack (forget vs unseen) is measured. While FS >= ``forget_threshold`` a batch is replaced by
    synthesised samples (:func:`synthesize`: pushed away from the forget batch's output
    distribution in Sinkhorn OT distance, cosine cost, while the classification weight w_t ramps
    from ``w_start`` to ``w_end``) and the model takes one SGD step on CE of them; otherwise it
    takes a plain CE step on the clean batch. The returned state is the one with the best
    validation accuracy among those with FS <= ``max_forgetting_score`` (the last state if none).

    Needs unseen samples for the attack and the checkpoint selection: ``test``, which must be a
    validation split disjoint from the split the result is evaluated on (the bench passes
    ``UnlearningSplit.val``; the official code monitors a separate validation split too). DLFD's
    paper targets random-sample forgetting (``targets``): the runner warns on other scenarios.

    Logged per step: phase ``synthesis`` (loss, ot_first, ot_last, w) or ``finetune`` (loss);
    phase ``monitor``: fs, mia, val_acc.

    Implementation choices (documented differences): the synthesis runs the model in eval mode
    (BatchNorm statistics are not updated by the S perturbation passes); ``ot_tol`` bounds the
    L1 marginal violation of our Sinkhorn solver, where the code bounds the potentials' change.
    """

    name = "dlfd"
    paper = ("Choi & Na, Distribution-Level Feature Distancing for Machine Unlearning: Towards a Better "
             "Trade-off Between Model Utility and Forgetting, AAAI 2025")
    Params = DLFDParams
    #: the scenarios the paper evaluates (MUFAC, CIFAR-10 random samples); the runner warns on others
    targets = ("random",)

    def _unlearn(self, model, data, ctx):
        p = self.params
        if data.test is None:
            raise ValueError("test: DLFD needs unseen validation samples for its forgetting score and checkpoint "
                             "choice (never the evaluation test split), got None")
        # warm start: within one synthesis the clouds move by one sign step at a time, so the last
        # potentials are a far better start than zeros (same fixed point, same stopping rule)
        ot = SinkhornLoss(epsilon=p.epsilon, cost="cosine", output="cost", scaling=1.0, max_iter=p.ot_max_iter,
                          tol=p.ot_tol, warm_start=True)
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        n_r = len(data.retain)
        forget_batches = ctx.cycle(data.forget, p.batch_size)
        val_idx = torch.randperm(len(data.test), generator=ctx.generator)[: p.val_samples]
        val = data.test.take(val_idx)  # the validation subsample, read once (val_samples samples, CPU)
        total = p.epochs * -(-n_r // p.batch_size)

        def monitor(step):
            fs, mia = _forgetting_score(model, data.forget, data.test, samples=p.mia_samples, splits=p.mia_splits,
                                        seed=ctx.seed + step, amp=ctx.amp)
            acc = None
            if fs <= p.max_forgetting_score:
                acc = float((predict(model, val.x, precision=ctx.amp).argmax(1) == val.y).float().mean())
            ctx.log("monitor", step, total, fs=fs, mia=mia, **({"val_acc": acc} if acc is not None else {}))
            return fs, acc

        best_state, best_val = None, -1.0
        fs, acc = monitor(0)
        if fs < p.forget_threshold:
            # the switch starts in fine-tune mode: with an attack at chance the synthesis never runs
            warnings.warn(f"forget_threshold: on the model given, the loss attack tells forget from unseen samples "
                          f"no better than chance + {fs:.3f} (forgetting score < forget_threshold "
                          f"{p.forget_threshold}): "
                          "DLFD starts by plain fine-tuning and synthesises only if the score rises", stacklevel=3)
        if acc is not None:
            best_state, best_val = copy.deepcopy(model.state_dict()), acc
        step = 0
        for _ in range(p.epochs):
            for b in ctx.batches(data.retain, p.batch_size):
                x, y = b.x, b.y
                w = p.w_start + (p.w_end - p.w_start) * (step / max(total - 1, 1))
                if fs >= p.forget_threshold:
                    fb = next(forget_batches)
                    model.eval()
                    with torch.no_grad(), ctx.amp.autocast():
                        z_f = _outputs(model, fb.x, p.layer)
                    x, hist = synthesize(model, x, y, z_f, ot=ot, w=w, lambda_f=p.lambda_f, steps=p.steps,
                                         alpha=p.alpha, pixel_range=p.pixel_range, layer=p.layer, mode=p.mode,
                                         amp=ctx.amp)
                    phase, extra = "synthesis", {"ot_first": hist[0] if hist else 0.0,
                                                 "ot_last": hist[-1] if hist else 0.0, "w": w}
                else:
                    phase, extra = "finetune", {}
                model.train()
                with ctx.amp.autocast():
                    loss = F.cross_entropy(model(x), y)
                ctx.amp.step(opt, loss)
                step += 1
                ctx.log(phase, step, total, loss=loss.detach(), **extra)
                if step % p.check_every == 0 or step == total:
                    fs, acc = monitor(step)
                    if acc is not None and acc > best_val:
                        best_state, best_val = copy.deepcopy(model.state_dict()), acc
                if ctx.stop_check(model):  # stop="val-match": the shared rule stops and chooses the state
                    model.eval()
                    return model
        if best_state is not None and not stop_enabled(p):  # the paper's choice; the shared rule's otherwise
            model.load_state_dict(best_state)
        model.eval()
        return model
