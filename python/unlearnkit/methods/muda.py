"""MUDA: machine unlearning with dimensional alignment and self-distillation, in alternating
forget and recover phases. Seo, Kim & Han, Revisiting Machine Unlearning with Dimensional
Alignment, WACV 2025 (arXiv 2407.17710). Spec: ``../shared/papers/muda.md``.

Data access: the forget and retain sets are read through their ``BatchSource``s in the call's
seeded order (a pass over D_f per forget phase, an endless cycle over D_r for the recover phases),
forward passes under ``ctx.amp``; only the feature bank (``bank_size`` retain samples) and the
probe's subsamples are read as index sets (``take``) and kept, so a streamed Dataset / DataLoader
is never held in memory whole. On tensors the result is bit for bit that of indexing them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .._validation import categorical, integers, log_uniform, param, uniform
from ..losses import DimensionalAlignmentLoss, SelfDistillationLoss
from ..training import extract_features, predict, sgd
from ._loops import frozen_copy
from ._stop import StopParams
from .base import Method, register

FORGET_LOSSES = ("neg_ce", "entropy", "val_losses", "val_features", "none")
NEEDS_VAL = ("val_losses", "val_features")
DA_VARIANTS = ("projection", "subspace")
RECOVER_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class MUDAParams(StopParams):
    """Hyper-parameters (defaults: the MUDA spec).

    epochs: forget/recover rounds; lr, momentum, weight_decay: SGD; batch_size: samples per
    minibatch in both phases; lambda_da: weight of L_DA = 1 - DA in the forget phase;
    lambda_sd: weight of the self-distillation term in the recover phase; temperature: its T;
    ce_cap: the forget loss is -min(CE, ce_cap) (bounded ascent, nats); energy / k: the retain
    eigenspace keeps k directions or the fewest holding ``energy`` of the spectrum; center: use
    the covariance; refresh: forget steps between recomputations of the retain eigenspace;
    bank_size: retain samples in the feature bank the eigenspace is computed from;
    recover_ratio: retain batches per forget batch seen in the preceding forget phase;
    forget_loss: the forget phase's term aimed at D_f, DA always its regulariser: "neg_ce"
    (-min(CE, ce_cap), the spec's reading), "entropy" (cross-entropy to the uniform distribution:
    the class evidence of D_f is removed without naming a wrong class), "val_losses" (the sorted
    per-sample cross-entropies of each forget batch pulled toward the same quantiles of unseen
    validation samples' under the model as given (fixed: a target that followed the model would
    rise with any damage and be chased), a 1-D optimal transport in loss space: memorised
    samples are pushed up to where unseen samples sit, the hardest ones to where unseen ones are
    misclassified, and a sample already as uncertain as unseen data is left alone; MUDA's
    observation that a retrained model treats forget samples as unseen ones, on its outputs),
    "val_features" (per class, the mean of D_f's features projected on the retain eigenspace pulled
    toward that of validation samples, the same observation on features) or "none" (the DA
    regulariser alone); the two "val_" terms need ``test=`` validation data;
    recover_passes: when set, each round's recovery runs this many passes over D_r (in retain
    samples: 1.0 = every retain sample once per round) instead of ``recover_ratio``;
    forget_lr: the forget phase's step size (default: ``lr``; setting it gives each phase its own
    optimiser, as ``phase_optimizers``);
    recover_schedule: "constant" (``lr`` throughout) or "cosine" (recovery's step size follows one
    cosine from ``lr`` to 0 over all rounds' recovery steps: the last round consolidates the retain
    set at small steps, as a training schedule ends, where SGD at a constant step leaves retain
    accuracy a few points under the original's; measured in docs/benchmarks.md);
    phase_optimizers: each phase has its own SGD state (the forget phase's momentum never carries
    into recovery, nor recovery's into the next forget phase) instead of one shared optimiser;
    da_variant: "projection" (the mean share of each forget feature's energy in U_k) or "subspace"
    (principal angles between the batch's own top-k directions and U_k);
    probe_every: None (default): the probe runs before the first round and after every round, and
    logs LP(D_r), LP(D_f) and the DA of D_f, D_r and validation samples on the current eigenspace
    (the paper's stability curves, epochs + 1 checks); N > 0: also every N forget/recover steps; 0:
    never. Each check fits a logistic-regression probe: every 10 steps they were 40% of a
    fashion-mnist-10k random-10 call (0.38 against 0.23 x retraining, the same weights out;
    docs/benchmarks.md, "MUDA (issue 25)"); probe_samples: samples per set in each check (a fixed
    subsample);
    max_grad_norm: when set, each step's gradient (both phases) is rescaled to this L2 norm at most
    (``torch.nn.utils.clip_grad_norm_``) before the SGD step; None: no clipping (the paper).
    """

    epochs: int = param(5, ge=0, space=integers(1, 5))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-4, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(128, ge=1)
    lambda_da: float = param(1.0, ge=0, space=log_uniform(0.1, 10.0))
    lambda_sd: float = param(1.0, ge=0, space=log_uniform(0.1, 10.0))
    temperature: float = param(4.0, gt=0)
    ce_cap: float = param(10.0, gt=0, space=uniform(0.5, 10.0))
    energy: float = param(0.9, gt=0, le=1)
    k: int | None = param(None, ge=1)
    center: bool = False
    refresh: int = param(10, ge=1)
    bank_size: int = param(2048, ge=1)
    recover_ratio: float = param(1.0, gt=0, space=log_uniform(0.5, 8.0))
    # "neg_ce", the spec's reading, and the measured choice: on the tuning seeds 100 and 101 (fashion-mnist-10k
    # random-10, recover_ratio 8, 5 rounds) its mean closed was 0.36, entropy's 0.36 at lower selectivity, the
    # DA term alone (lambda_da 10, the previous recipe) 0.26 (docs/benchmarks.md, "MUDA (issue 25)")
    forget_loss: str = param("neg_ce", choices=FORGET_LOSSES, space=categorical(*FORGET_LOSSES))
    recover_passes: float | None = param(None, gt=0)
    forget_lr: float | None = param(None, gt=0)
    recover_schedule: str = param("constant", choices=RECOVER_SCHEDULES, space=categorical(*RECOVER_SCHEDULES))
    phase_optimizers: bool = param(False, space=categorical(False, True))
    da_variant: str = param("projection", choices=DA_VARIANTS)
    probe_every: int | None = param(None, ge=0)
    max_grad_norm: float | None = param(None, gt=0)
    probe_samples: int = param(500, ge=2)


@register
class MUDA(Method[MUDAParams]):
    """MUDA (Seo, Kim & Han, Revisiting Machine Unlearning with Dimensional Alignment, WACV 2025).

    A model retrained without D_f keeps the (now unseen) forget features on the retain set's
    feature manifold. MUDA forgets without leaving it: for ``epochs`` rounds,

    * forget phase, over forget minibatches B_f:
      L = -min(CE(f(B_f), y), ce_cap) + lambda_da * (1 - DA(Z_f; U_k))   (``forget_loss="neg_ce"``)
      or L = lambda_da * (1 - DA(Z_f; U_k))                             (``forget_loss="none"``),
      with U_k the top eigenvectors of a retain feature bank (``bank_size`` samples, features in
      eval mode, detached), recomputed every ``refresh`` steps: the class evidence of D_f is
      removed while its features stay in the retain subspace;
    * recover phase, over ceil(recover_ratio * forget steps) retain minibatches:
      L = CE + lambda_sd * T^2 KL(softmax(teacher / T) || softmax(student / T)),
      the teacher being the original model, frozen.

    Logged per step: ``forget`` phase: loss, ce, da; ``recover`` phase: loss, ce, sd; before the
    first round, after every round and (``probe_every`` = N) every N steps, phase ``probe``: lp_retain and
    lp_forget, the accuracies of a logistic-regression probe fit on the frozen features of a fixed
    retain subsample, on another retain subsample and on a forget subsample (the paper's stability
    curves LP(D_r), LP(D_f)), with the phase (``after``) and step (``at_step``) they follow.

    Differences from the paper: its exact equations were not available; this follows the
    project's spec (``../shared/papers/muda.md``), which fixes the bounded negative CE as the
    forget loss, self-distillation on logits and the DA normalisation per sample.
    """

    name = "muda"
    paper = "Seo, Kim & Han, Revisiting Machine Unlearning with Dimensional Alignment, WACV 2025"
    Params = MUDAParams

    def _unlearn(self, model, data, ctx):
        p = self.params
        if p.forget_loss in NEEDS_VAL and data.test is None:
            raise ValueError(f"test: expected validation samples (UnlearningSplit.val) for forget_loss={p.forget_loss!r} "
                             "(it pulls D_f toward unseen samples), got None")
        teacher = frozen_copy(model)
        clip = None
        if p.max_grad_norm is not None:
            max_norm = float(p.max_grad_norm)

            def clip() -> None:  # before each SGD step, on the unscaled gradients (Precision.step)
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        da_loss = DimensionalAlignmentLoss(k=p.k, energy=p.energy, center=p.center, variant=p.da_variant)
        sd_loss = SelfDistillationLoss(temperature=p.temperature)
        opt_f = sgd(model, p.forget_lr if p.forget_lr is not None else p.lr, p.momentum, p.weight_decay)
        # a forget step size of its own needs its own optimiser
        opt_r = sgd(model, p.lr, p.momentum, p.weight_decay) if p.phase_optimizers or p.forget_lr is not None else opt_f
        n_f, n_r = len(data.forget), len(data.retain)
        bank_idx = torch.randperm(n_r, generator=ctx.generator)[: p.bank_size]
        # the bank's images are read once (bank_size samples, kept on the CPU); their features are
        # recomputed at every refresh
        bank_x = data.retain.take(bank_idx).x
        val_bank = _val_bank(data, p, ctx) if p.forget_loss in NEEDS_VAL else None
        forget_steps = math.ceil(n_f / p.batch_size)
        if p.recover_passes is not None:
            recover_steps = math.ceil(p.recover_passes * n_r / p.batch_size)
        else:
            recover_steps = math.ceil(p.recover_ratio * forget_steps)
        total_recover = max(p.epochs * recover_steps, 1)
        retain_batches = ctx.cycle(data.retain, p.batch_size)
        dev = ctx.device
        probe = _Probe(data, p.probe_samples, ctx) if p.probe_every != 0 else None
        n_probe = 0
        val_target = None  # val_features: per-class means; val_losses: sorted losses

        def maybe_probe(phase, step, force=False, **extra):
            nonlocal n_probe
            if probe is not None and (force or (p.probe_every and step % p.probe_every == 0)):
                n_probe += 1
                ctx.log("probe", n_probe, None, after=phase, at_step=step, **extra, **probe(model, da_loss))

        da_loss.refresh(extract_features(model, bank_x, precision=ctx.amp).to(dev))
        if p.forget_loss == "val_losses":  # the target: unseen samples' losses under the model as given, fixed (a
            val_target = _sorted_losses(model, val_bank, ctx.amp, dev)  # target that followed the model would chase it)
        maybe_probe("start", 0, force=True)
        step_f = step_r = 0
        for epoch in range(p.epochs):
            # forget phase
            if opt_f is opt_r:
                for g in opt_f.param_groups:
                    g["lr"] = p.lr
            for b in ctx.batches(data.forget, p.batch_size):
                if step_f % p.refresh == 0:
                    space = da_loss.refresh(extract_features(model, bank_x, precision=ctx.amp).to(dev))
                    if val_bank is not None and p.forget_loss == "val_features":
                        val_target = _class_means(extract_features(model, val_bank[0], precision=ctx.amp).to(dev),
                                                 val_bank[1].to(dev), space, data.num_classes)
                model.train()
                with ctx.amp.autocast():
                    z = model.features(b.x)
                    ce = F.cross_entropy(model.head(z), b.y)
                    l_da = da_loss(z)
                    loss = p.lambda_da * l_da
                    if p.forget_loss == "neg_ce":
                        loss = loss - ce.clamp(max=p.ce_cap)
                    elif p.forget_loss == "entropy":
                        loss = loss + _to_uniform(model.head(z))
                    elif p.forget_loss == "val_features":
                        assert val_target is not None, "set at the refresh of step 0"
                        loss = loss + _match_means(z, b.y, da_loss.eigenspace, val_target)
                    elif p.forget_loss == "val_losses":
                        assert val_target is not None, "set before the first epoch"
                        loss = loss + _match_quantiles(F.cross_entropy(model.head(z), b.y, reduction="none"),
                                                       val_target)
                ctx.amp.step(opt_f, loss, before_step=clip)
                step_f += 1
                ctx.log("forget", step_f, p.epochs * forget_steps, loss=loss.detach(), ce=ce.detach(),
                        da=1.0 - float(l_da.detach()), epoch=epoch + 1)
                maybe_probe("forget", step_f)
                model.train()
            # recover phase
            model.train()
            for _ in range(recover_steps):
                if p.recover_schedule == "cosine":
                    for g in opt_r.param_groups:
                        g["lr"] = 0.5 * p.lr * (1.0 + math.cos(math.pi * step_r / total_recover))
                b = next(retain_batches)
                with ctx.amp.autocast():
                    out = model(b.x)
                    with torch.no_grad():
                        t_out = teacher(b.x)
                    ce = F.cross_entropy(out, b.y)
                    sd = sd_loss(out, t_out)
                    loss = ce + p.lambda_sd * sd
                ctx.amp.step(opt_r, loss, before_step=clip)
                step_r += 1
                ctx.log("recover", step_r, p.epochs * recover_steps, loss=loss.detach(), ce=ce.detach(),
                        sd=sd.detach(), epoch=epoch + 1)
                maybe_probe("recover", step_r)
                model.train()
                if ctx.stop_check(model):  # checked in recovery: a forget phase's state is not a candidate
                    maybe_probe("end", step_f + step_r, force=True)
                    model.eval()
                    return model
            last = epoch == p.epochs - 1  # after each round (the last one is the "end" probe)
            maybe_probe("end" if last else "round", step_f + step_r, force=True, round=epoch + 1)
        if p.epochs == 0:
            maybe_probe("end", 0, force=True)
        model.eval()
        return model


def _to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax against the uniform distribution minus its minimum log C:
    KL(u || p) >= 0, 0 exactly at uniform predictions; it removes class evidence without naming a
    wrong class (unlike an ascent on the true label's CE, it is bounded below)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -logp.mean(1).mean() - math.log(logits.shape[1])


def _sorted_losses(model, val_bank, amp, dev) -> torch.Tensor:
    """Sorted per-sample cross-entropies (nats) of the validation bank under the current model."""
    x, y = val_bank
    logits = predict(model, x, precision=amp).float()
    return F.cross_entropy(logits, y.to(logits.device), reduction="none").sort().values.to(dev)


def _match_quantiles(ce: torch.Tensor, target_sorted: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the sorted batch losses (n,) and the target distribution's
    quantiles at the same ranks (i + 1/2) / n: the 1-D optimal transport (W2^2) between the two
    empirical distributions, in nats^2. 0 when the batch's losses are the target's quantiles."""
    n, m = ce.shape[0], target_sorted.shape[0]
    ranks = (torch.arange(n, device=ce.device, dtype=torch.float32) + 0.5) / n
    q = torch.quantile(target_sorted.float(), ranks) if m > 1 else target_sorted.float().expand(n)
    return (ce.float().sort().values - q).pow(2).mean()


def _val_bank(data, p, ctx):
    """A fixed validation subsample (at most ``bank_size`` samples; images and labels on the CPU)."""
    n = len(data.test)
    g = torch.Generator().manual_seed(ctx.seed + 11)
    b = data.test.take(torch.randperm(n, generator=g)[: p.bank_size])
    return b.x, b.y


def _class_means(z: torch.Tensor, y: torch.Tensor, space, num_classes: int) -> torch.Tensor:
    """(C, k) per-class means of the features projected on the eigenspace (NaN rows: absent classes)."""
    proj = _project(z.float(), space)
    out = torch.full((num_classes, proj.shape[1]), float("nan"), device=z.device)
    for c in y.unique().tolist():
        out[c] = proj[y == c].mean(0)
    return out


def _project(z: torch.Tensor, space) -> torch.Tensor:
    u = space.vectors.to(device=z.device, dtype=torch.float32)
    zc = z - space.mean.to(device=z.device, dtype=torch.float32) if space.mean is not None else z
    return zc @ u


def _match_means(z: torch.Tensor, y: torch.Tensor, space, val_means: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's classes of ||mean_c(U^T z_f) - mean_c(U^T z_val)||^2 / ||mean_c(U^T z_val)||^2."""
    proj = _project(z.float(), space)
    terms = []
    for c in y.unique().tolist():
        target = val_means[c]
        if torch.isnan(target).any():
            continue
        terms.append((proj[y == c].mean(0) - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12))
    return torch.stack(terms).mean() if terms else z.sum() * 0.0


class _Probe:
    """LP(D_r), LP(D_f) on fixed subsamples: a logistic-regression probe fit on the standardised
    frozen features of ``n`` retain samples, scored on ``n`` other retain samples and ``n`` forget
    samples. About 3n forward passes and one small fit per call."""

    def __init__(self, data, n: int, ctx):
        g = torch.Generator().manual_seed(ctx.seed + 7)
        perm = torch.randperm(len(data.retain), generator=g)
        fit_i, eval_i = perm[:n], perm[n:2 * n]
        if len(eval_i) == 0:  # tiny retain sets: score in-sample
            eval_i = fit_i
        f_i = torch.randperm(len(data.forget), generator=g)[:n]
        # the subsamples are read once (at most 3n samples, on the CPU)
        parts = [data.retain.take(fit_i), data.retain.take(eval_i), data.forget.take(f_i)]
        if data.test is not None:  # validation samples: DA only, never a probe fit
            parts.append(data.test.take(torch.randperm(len(data.test), generator=g)[:n]))
        self.sets = [(b.x, b.y.numpy()) for b in parts]
        self.amp = ctx.amp

    def __call__(self, model, da_loss=None) -> dict:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        (x_fit, y_fit), (x_r, y_r), (x_f, y_f) = self.sets[:3]
        feats = [extract_features(model, x, precision=self.amp) for x, _ in self.sets]
        out = {}
        if da_loss is not None and da_loss.eigenspace is not None:  # DA of each set on the current eigenspace
            with torch.no_grad():
                for name, z in zip(("da_retain", "da_forget", "da_val"), feats[1:]):
                    out[name] = 1.0 - float(da_loss(z.to(da_loss.eigenspace.vectors.device)))
        arrays = [f.cpu().numpy() for f in feats[:3]]
        if len(set(y_fit.tolist())) < 2:
            return out
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(arrays[0], y_fit)
        return {**out, "lp_retain": float(clf.score(arrays[1], y_r)), "lp_forget": float(clf.score(arrays[2], y_f))}
