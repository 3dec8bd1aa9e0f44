"""TMU: twin machine unlearning. Ji, Lin, Sun, Fei, Wang, Gao & Niu, "Towards Aligned Data Removal
via Twin Machine Unlearning" (arXiv 2408.11433; extended as arXiv 2501.08615).

The gold (retrained) model still classifies the forget samples that generalise ("easy") and
misses those it could only know by memorising them ("hard"). TMU predicts which forget samples are
hard and unlearns only those:

1. Twin problem. The twin model M_t is the original M_o fine-tuned on the training set plus unseen
   held-out data D_twin. In it M_o plays the gold model and D_twin the forget set, so the
   generalisation label of a D_twin sample is known: 1 (easy) if M_o classifies it correctly.
2. Three generalisation features per sample (M_t on D_twin, M_o on D_f): DF, the mean L2 distance
   of its L2-normalised penultimate features to its k nearest same-class training samples; AF, the
   cross-entropy between the clean and the PGD-attacked prediction; CF, its cross-entropy under a
   curriculum model trained from scratch for 2 epochs. Each is clipped to the Tukey fences and
   min-max scaled, per set.
3. An MLP (3 -> 32 -> 16 -> 1) learns the generalisation label from the features of D_twin and
   splits D_f into predicted-easy D_f^e and predicted-hard D_f^h.
4. M_o is fine-tuned on D_r + D_f^e (true labels, Gaussian input noise) + D_f^h (random wrong
   labels), so its accuracy drops only on the hard forget samples.

Data access: every set is read through its ``BatchSource`` in minibatches (training passes in the
call's seeded order over the concatenated sources, inference passes in order, forward passes
under ``ctx.amp``), so a streamed Dataset / DataLoader is never held in memory whole; what is
kept are per-sample features and labels. (A DataLoader with a custom ``collate_fn`` cannot be
concatenated item by item: TMU then reads the sets into memory, with a warning.) On tensors the
result is bit for bit that of indexing them. The public feature functions take tensors and run
the same code over a ``TensorSource``.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import metrics as _metrics
from .._validation import integers, log_uniform, param
from ..checkpoints import cache_key, cached_train, tensors_digest
from ..data.batches import BatchSource, LoaderSource, TensorSource, concat_sources
from ..data.tensors import iterate_batches
from ..training import Precision, extract_features, predict, sgd
from ._loops import random_wrong_labels, run_epochs
from ._stop import StopParams
from .base import Context, Method, _item_shape, register

FEATURES = ("df", "af", "cf")
#: named feature sets: the paper's three features, and the released code's two (it feeds DF and CF only)
FEATURE_SETS = {"df_af_cf": ("df", "af", "cf"), "df_cf": ("df", "cf")}
UNLEARN_MODELS = ("original", "twin")
FEATURE_SCALINGS = ("auto", "set", "class")
#: the released code's easy/hard cut: its raw output compared with 0.5 with the sigmoid commented
#: out, i.e. easy when P(easy) > sigmoid(0.5)
RELEASED_THRESHOLD = 1 / (1 + math.exp(-0.5))  # 0.6225


@dataclass(frozen=True)
class TMUParams(StopParams):
    """Hyper-parameters of TMU; defaults are the paper's where it gives them.

    Twin model (not given by the paper; our choice, mirroring the unlearning fine-tune):
        twin_match: stop the twin fine-tuning at the end of the first epoch where M_t's accuracy on
            D_twin reaches M_o's accuracy on D_f minus ``twin_tolerance`` (M_t memorises D_twin as
            M_o memorised D_f, the premise of the twin problem); ``twin_epochs`` is then the most.
        twin_epochs, twin_lr, twin_batch_size: SGD fine-tuning of a copy of M_o on
            D_r + D_f + D_twin (momentum and weight decay as below).
        twin_check_every: check the ``twin_match`` criterion every this many steps (and at each
            epoch's end), so the twin stops within that many steps of reaching it; None (default):
            after each epoch only. A check is one inference pass over D_twin and D_f's target is
            measured once.
        twin_others: None (default): each twin epoch is a pass over D_r + D_f + D_twin. A number r:
            each twin epoch is D_twin plus round(r * |D_twin|) samples of D_r + D_f drawn afresh
            (all of them at most), so the twin's steps go mostly to what it must memorise and an
            epoch costs (1 + r) |D_twin| samples instead of |D_r + D_f + D_twin| (the cheaper twin:
            with a small D_twin, a tenth of the cost per pass over it or less).
    Features:
        features: which generalisation features the predictor sees, a subset of
            ("df", "af", "cf") (the paper: all three; its released code: ("df", "cf")).
        feature_set: None, or a named set that sets ``features``: "df_af_cf" (the paper's three)
            or "df_cf" (the released code's two).
        feature_scaling: "set" (each feature clipped and min-max scaled over the whole set, the
            paper's), "class" (first z-scored within each class of the set, so the predictor ranks
            samples against their own class, not classes against each other: random forgetting mixes
            classes whose features differ by class) or "auto" (default: "class" when D_twin holds
            more than one class, else "set"; the same thing for a one-class D_twin).
        k: neighbours of the distance feature DF (5).
        pgd_epsilon: L-infinity radius of the PGD attack of AF in [0, 1] pixel units (4/255).
        pgd_steps: PGD steps (5).
        pgd_step_size: PGD step in pixel units; None means pgd_epsilon / 3.
        curriculum_epochs: epochs of the from-scratch curriculum model of CF (2).
        curriculum_lr, curriculum_batch_size: its SGD settings (not given; our choice).
            The curriculum model's initialisation and batch order come from the call's seed alone
            (never from the phases before it), so it is the same model in every call with the same
            data, model, settings and seed.
        cache_curriculum: keep that model in the call's ``cache_dir`` (``Method.unlearn``; by
            default the checkpoint cache, ``$UNLEARNKIT_CACHE``) and load it in a later call where the data
            D_r + D_f + D_twin (by content), the model's architecture and initial state, the
            curriculum settings, precision, device type and seed are the same: trials of a search on
            one deletion request train it once. The result is the same as without the cache. The
            cached training time is still counted (``Method.last_cached_seconds``; the history's
            ``cost`` event carries ``curriculum_cached``). Only in-memory data without a transform is
            keyed; other data trains the model every call. False by default (no files written).
        iqr_factor: features are clipped to [Q1 - f*IQR, Q3 + f*IQR] before min-max scaling (1.5).
    Generalisation-label predictor:
        hidden: widths of the MLP's two hidden layers ((32, 16)).
        predictor_lr, predictor_epochs, predictor_batch_size: Adam 0.01, 200 epochs, batch 128.
        threshold: a forget sample is predicted hard when P(easy) < threshold (0.5, the paper's;
            the released code's cut is P(easy) <= sigmoid(0.5) = 0.6225, ``RELEASED_THRESHOLD``).
            Used when ``hard_fraction`` is None.
        hard_fraction: instead of a threshold, flag a fixed share of D_f as hard: the
            round(hard_fraction * n) forget samples with the lowest P(easy) (ties: the earlier
            position first). "auto": the share is M_o's error rate on D_twin (what the twin labels
            say a gold model gets wrong on unseen data), matched per class: in each class c of D_f,
            the round(err_c * n_c) samples of that class with the lowest P(easy), err_c being M_o's
            error rate on D_twin's class-c samples (its overall rate for a class D_twin lacks).
            None (default): use ``threshold``.
    Which model is unlearned:
        unlearn_model: "original" (M_o, the paper's text; default) or "twin" (M_t, as the released
            code does: M_o's weights are replaced by the twin's before step 4).
    Unlearning (fine-tuning of M_o):
        epochs, lr, momentum, weight_decay, batch_size: SGD, 5 epochs, 0.01, 0.9, 5e-4, 64.
        noise_std: std of the Gaussian input noise on the predicted-easy forget samples, in pixel
            units (0.05; the paper's exact noise form is not known, see ``TMU``).
    """

    twin_epochs: int = param(5, ge=0, space=integers(1, 40))
    twin_lr: float = param(0.01, gt=0)
    twin_batch_size: int = param(64, ge=1)
    twin_match: bool = True
    twin_tolerance: float = param(0.01, ge=0, le=1)
    twin_check_every: int | None = param(None, ge=1)
    twin_others: float | None = param(None, ge=0)
    features: tuple[str, ...] = param(FEATURES, choices=FEATURES)
    feature_set: str | None = param(None, choices=tuple(FEATURE_SETS))
    feature_scaling: str = param("auto", choices=FEATURE_SCALINGS)
    k: int = param(5, ge=1)
    pgd_epsilon: float = param(4 / 255, ge=0)
    pgd_steps: int = param(5, ge=0)
    pgd_step_size: float | None = param(None, gt=0)
    curriculum_epochs: int = param(2, ge=0, space=integers(1, 3))
    curriculum_lr: float = param(0.01, gt=0)
    curriculum_batch_size: int = param(64, ge=1)
    cache_curriculum: bool = False
    iqr_factor: float = param(1.5, ge=0)
    hidden: tuple[int, ...] = param((32, 16), ge=1)
    predictor_lr: float = param(0.01, gt=0)
    predictor_epochs: int = param(200, ge=1)
    predictor_batch_size: int = param(128, ge=1)
    threshold: float = param(0.5, gt=0, lt=1)
    hard_fraction: float | str | None = param(None, doc='None, "auto" or a number in [0, 1]')
    unlearn_model: str = param("original", choices=UNLEARN_MODELS)
    epochs: int = param(5, ge=0, space=integers(1, 10))
    lr: float = param(0.01, gt=0, space=log_uniform(1e-5, 1e-1))
    momentum: float = param(0.9, ge=0, lt=1)
    weight_decay: float = param(5e-4, ge=0)
    batch_size: int = param(64, ge=1)
    noise_std: float = param(0.05, ge=0, space=log_uniform(1e-3, 0.3))

    def __post_init__(self):  # per-field constraints live in the field metadata (checked by Method)
        if self.feature_set is not None:  # a named set stands for its features
            if tuple(self.features) not in (FEATURES, FEATURE_SETS[self.feature_set]):
                raise ValueError(f"feature_set: {self.feature_set!r} names the features "
                                 f"{FEATURE_SETS[self.feature_set]}, got features={tuple(self.features)!r} too; "
                                 "give one of the two")
            object.__setattr__(self, "features", FEATURE_SETS[self.feature_set])
        hf = self.hard_fraction
        if hf is not None and hf != "auto":
            if isinstance(hf, bool) or not isinstance(hf, (int, float)) or not 0 <= hf <= 1:
                raise ValueError(f'hard_fraction: expected None, "auto" or a number in [0, 1], got {hf!r}')
            object.__setattr__(self, "hard_fraction", float(hf))
        # Recipes (TOML) give lists; store tuples so the dataclass stays hashable.
        for name in ("features", "hidden"):
            value = getattr(self, name)
            if isinstance(value, str) or not hasattr(value, "__iter__"):
                raise TypeError(f"{name}: expected a sequence, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError(f"features: expected distinct names among {FEATURES}, at least one, got {self.features!r}")
        if not self.hidden:
            raise ValueError(f"hidden: expected at least one hidden layer width, got {self.hidden!r}")
        if self.curriculum_epochs < 1 and "cf" in self.features:
            raise ValueError(f"curriculum_epochs: expected at least 1 when 'cf' is a feature, got {self.curriculum_epochs}")


# --- the generalisation labels and features ---------------------------------------------------------

def generalisation_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n,) bool: True (easy) where ``model`` classifies the sample correctly, False (hard) elsewhere.

    In the twin problem ``model`` is M_o (which never saw D_twin) playing the gold model. The labels
    come from its predictions, never from the data alone.
    """
    return _generalisation_labels(model, TensorSource(x, y, name="x"))


def _generalisation_labels(model: nn.Module, source: BatchSource, amp: Precision | None = None) -> torch.Tensor:
    logits, labels = _infer(model, source, predict, amp)
    return logits.argmax(1) == labels


def _infer(model: nn.Module, source: BatchSource, fn, amp: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``fn(model, source)``: ``training.predict`` or ``extract_features``, float32 on the CPU, one
    in-order pass in eval mode under ``amp``; (n,) int64 labels of ``source`` on the CPU)."""
    return fn(model, source, precision=amp if amp is not None else "fp32"), source.all_labels()


def _concat(sources: list[BatchSource], name: str) -> BatchSource:
    """The sources one after the other (``concat_sources``), streamed; sources read through a
    user's ``collate_fn`` cannot be mixed item by item, so those are read into memory (warned)."""
    custom = [s.name for s in sources if isinstance(s, LoaderSource) and s.collate_fn is not None]
    if not custom:
        return concat_sources(sources, name=name)
    warnings.warn(f"{custom[0]}: TMU trains on the concatenation of its sets, which cannot be streamed through a "
                  "custom collate_fn: they are read into memory (pass the Dataset, or a DataLoader with the default "
                  "collate, to stream them)", stacklevel=4)
    parts = [s.tensors() for s in sources]
    return TensorSource(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), name=name,
                        transform=sources[0].transform, memory_format=sources[0].memory_format)


def distance_feature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, others_x: torch.Tensor,
                     others_y: torch.Tensor, *, k: int = 5) -> torch.Tensor:
    """DF: (n,) mean Euclidean distance from each sample's L2-normalised penultimate features to those
    of its ``k`` nearest same-class training samples (fewer when the class has fewer).

    The queries are training samples of ``model`` themselves: the bank is the queries plus
    ``others``, and no query is its own neighbour (``kneighbors``'s ``exclude_index``).

    Args:
        x, y: (n, C, H, W) query images in [0, 1] and their (n,) labels.
        others_x, others_y: (m, C, H, W) the model's other training images and their labels.
    Returns:
        (n,) float32 distances in the unit-sphere feature space (0 to 2).
    """
    others = TensorSource(others_x, others_y, name="others_x") if len(others_y) else None
    return _distance_feature(model, TensorSource(x, y, name="x"), others, k=k)[0]


def _distance_feature(model: nn.Module, queries: BatchSource, others: BatchSource | None, *, k: int,
                      amp: Precision | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``distance_feature`` over sources (``others`` None: no other training samples); also returns
    the queries' labels."""
    zq, yq_t = _infer(model, queries, extract_features, amp)
    q = F.normalize(zq, dim=1).numpy()
    if others is not None:
        zo, yo_t = _infer(model, others, extract_features, amp)
        o, yo = F.normalize(zo, dim=1).numpy(), yo_t.numpy()
    else:
        o, yo = q[:0], np.zeros(0, dtype=np.int64)
    yq = yq_t.numpy()
    out = np.zeros(len(yq), dtype=np.float64)
    for c in np.unique(yq):
        qi, oi = np.flatnonzero(yq == c), np.flatnonzero(yo == c)
        bank = np.ascontiguousarray(np.concatenate([q[qi], o[oi]]))  # query j is bank row j
        if len(bank) < 2:
            raise ValueError(f"others_y: expected another training sample of class {int(c)} to measure distances "
                             "to, got none")
        dist, _ = _metrics.kneighbors(np.ascontiguousarray(q[qi]), bank, min(k, len(bank) - 1), metric="l2",
                                      exclude_index=np.arange(len(qi), dtype=np.int64))
        # kneighbors gives squared Euclidean distances.
        out[qi] = np.sqrt(np.maximum(np.asarray(dist, dtype=np.float64), 0.0)).mean(axis=1)
    return torch.from_numpy(out).float(), yq_t


def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float, steps: int,
               step_size: float, amp: Precision | None = None) -> torch.Tensor:
    """Untargeted L-infinity PGD (no random start) maximising the cross-entropy with the true label;
    the result stays within ``epsilon`` of ``x`` and in [0, 1] (pixel units). ``model`` in eval mode;
    its forward passes run under ``amp``'s autocast (None: float32)."""
    amp = amp if amp is not None else Precision("fp32", x.device)
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with amp.autocast():
            loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step_size * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0.0, 1.0)
    return x_adv.detach()


def adversarial_feature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epsilon: float = 4 / 255,
                        steps: int = 5, step_size: float | None = None, batch_size: int = 512) -> torch.Tensor:
    """AF: (n,) cross-entropy H(p_clean, p_adv) = -sum_c p_clean(c) log p_adv(c) between the clean
    prediction and the prediction after a ``steps``-step PGD attack of radius ``epsilon`` (pixel
    units, step ``epsilon / 3`` by default)."""
    return _adversarial_feature(model, TensorSource(x, y, name="x"), epsilon=epsilon, steps=steps,
                                step_size=step_size, batch_size=batch_size)[0]


def _adversarial_feature(model: nn.Module, source: BatchSource, *, epsilon: float, steps: int,
                         step_size: float | None, batch_size: int = 512, amp: Precision | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """``adversarial_feature`` over a source read in order; also returns its labels."""
    step_size = epsilon / 3 if step_size is None else step_size
    device = next(model.parameters()).device
    amp = amp if amp is not None else Precision("fp32", device)
    was_training = model.training
    model.eval()
    out, labels = [], []
    for b in source.batches(batch_size, device=device):
        with torch.enable_grad():
            x_adv = pgd_attack(model, b.x, b.y, epsilon=epsilon, steps=steps, step_size=step_size, amp=amp)
        with torch.no_grad(), amp.autocast():
            p_clean = F.softmax(model(b.x), dim=1)
            out.append(-(p_clean * F.log_softmax(model(x_adv), dim=1)).sum(1).float().cpu())
        labels.append(b.y.cpu())
    model.train(was_training)
    return torch.cat(out), torch.cat(labels)


def curriculum_feature(curriculum_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CF: (n,) per-sample cross-entropy under a model trained from scratch for only a few epochs."""
    return _curriculum_feature(curriculum_model, TensorSource(x, y, name="x"))[0]


def _curriculum_feature(curriculum_model: nn.Module, source: BatchSource, amp: Precision | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = _infer(curriculum_model, source, predict, amp)
    return F.cross_entropy(logits, labels, reduction="none"), labels


def robust_minmax(features: torch.Tensor, iqr_factor: float = 1.5) -> torch.Tensor:
    """(n, d) -> (n, d): each column clipped to [Q1 - f*IQR, Q3 + f*IQR], then min-max scaled to
    [0, 1] (a constant column becomes 0)."""
    if features.dim() != 2 or len(features) == 0:
        raise ValueError(f"features: expected a non-empty (n, d) matrix, got shape {tuple(features.shape)}")
    f = features.double()
    q1, q3 = torch.quantile(f, 0.25, dim=0), torch.quantile(f, 0.75, dim=0)
    iqr = q3 - q1
    f = torch.max(torch.min(f, q3 + iqr_factor * iqr), q1 - iqr_factor * iqr)
    lo, hi = f.min(0).values, f.max(0).values
    return ((f - lo) / (hi - lo).clamp_min(1e-12)).float()


def classwise_standardise(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, d): each column z-scored within each class of ``labels`` (mean 0, population sd
    1 per class), so that what is left is where a sample stands within its class. A class with one
    sample, or a column constant within a class, gives 0 there."""
    if features.dim() != 2 or len(features) != len(labels):
        raise ValueError(f"features: expected an (n, d) matrix with one row per label, got {tuple(features.shape)} "
                         f"for {len(labels)} labels")
    f = features.double()
    out = torch.zeros_like(f)
    for c in torch.unique(labels):
        rows = labels == c
        block = f[rows]
        sd = block.std(0, unbiased=False)
        out[rows] = torch.where(sd > 1e-12, (block - block.mean(0)) / sd.clamp_min(1e-12), torch.zeros_like(block))
    return out.float()


def least_easy(p_easy: torch.Tensor, k: int) -> torch.Tensor:
    """(n,) bool mask of the ``k`` samples with the lowest P(easy) (ties: the earlier position first)."""
    if not 0 <= k <= len(p_easy):
        raise ValueError(f"k: expected a count in [0, {len(p_easy)}], got {k}")
    order = np.argsort(p_easy.detach().cpu().double().numpy(), kind="stable")
    mask = torch.zeros(len(p_easy), dtype=torch.bool)
    mask[torch.from_numpy(order[:k].copy())] = True
    return mask


def select_hard(p_easy: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5,
                hard_fraction: float | str | None = None, twin_labels: torch.Tensor | None = None,
                twin_classes: torch.Tensor | None = None) -> torch.Tensor:
    """The predicted-hard forget samples, D_f^h, as an (n,) bool mask.

    ``hard_fraction`` None: P(easy) < ``threshold``. A number f: the round(f * n) samples with the
    lowest P(easy). "auto": per class c of ``labels``, the round(err_c * n_c) class-c samples with the
    lowest P(easy), where err_c is the share of False among ``twin_labels`` (M_o's correctness on
    D_twin) of twin samples of class c (``twin_classes``), or over all of D_twin for a class it lacks.
    """
    if hard_fraction is None:
        return p_easy < threshold
    if hard_fraction != "auto":
        return least_easy(p_easy, int(round(float(hard_fraction) * len(p_easy))))
    if twin_labels is None or twin_classes is None:
        raise ValueError('twin_labels: hard_fraction="auto" needs the twin labels and their classes, got None')
    overall = 1.0 - float(twin_labels.float().mean())
    hard = torch.zeros(len(p_easy), dtype=torch.bool)
    for c in torch.unique(labels):
        rows = torch.nonzero(labels == c).flatten()
        in_twin = twin_classes == c
        err = 1.0 - float(twin_labels[in_twin].float().mean()) if bool(in_twin.any()) else overall
        hard[rows[least_easy(p_easy[rows], int(round(err * len(rows))))]] = True
    return hard


# --- the generalisation-label predictor --------------------------------------------------------------

class GeneralisationPredictor(nn.Module):
    """MLP in_features -> 32 -> 16 -> 1 (ReLU); ``forward`` gives the logit of P(easy)."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (32, 16)):
        super().__init__()
        layers, width = [], in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)

    @torch.no_grad()
    def predict_proba(self, f: torch.Tensor) -> torch.Tensor:
        """(n, d) scaled features -> (n,) P(easy)."""
        return torch.sigmoid(self(f))


def fit_predictor(features: torch.Tensor, labels: torch.Tensor, *, hidden: tuple[int, ...] = (32, 16),
                  lr: float = 0.01, epochs: int = 200, batch_size: int = 128,
                  generator: torch.Generator | None = None, log=None) -> GeneralisationPredictor:
    """Trains the MLP on (n, d) scaled features and (n,) generalisation labels (1 easy, 0 hard) with
    BCE and Adam; ``log(epoch, loss)`` is called after each epoch. Initialisation follows torch's
    global seed."""
    if features.dim() != 2 or len(features) != len(labels):
        raise ValueError(f"features: expected an (n, d) matrix with one row per label, got {tuple(features.shape)} "
                         f"for {len(labels)} labels")
    net = GeneralisationPredictor(features.shape[1], hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    target = labels.float()
    for epoch in range(epochs):
        total, n = 0.0, 0
        for idx in iterate_batches(len(target), batch_size, shuffle=True, generator=generator):
            loss = F.binary_cross_entropy_with_logits(net(features[idx]), target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(idx), n + len(idx)
        if log is not None:
            log(epoch + 1, total / n)
    return net.eval()


# --- the method ---------------------------------------------------------------------------------------

class _Clock:
    """Wall seconds between laps (CUDA work synchronised first, so a lap counts its kernels)."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.t = time.perf_counter()

    def lap(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        out, self.t = now - self.t, now
        return out


def _fresh_copy(model: nn.Module) -> nn.Module:
    """The same architecture with re-initialised parameters (input statistics kept)."""
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        if m is fresh:
            continue
        reset = getattr(m, "reset_parameters", None)
        if reset is not None:
            reset()
    return fresh


#: offset of the curriculum model's seed from the call's (its own stream: see ``TMU._curriculum``)
_CURRICULUM_SEED = 4_241


def _curriculum_key(fresh: nn.Module, twin_train: BatchSource, ctx: Context, p: TMUParams) -> str | None:
    """The cache key of a curriculum model: everything that determines it (the data's content, the
    re-initialised model's class and state, the curriculum settings, precision, device type, seed and
    torch version); None for data it cannot key (streamed, or with a transform)."""
    if not isinstance(twin_train, TensorSource) or twin_train.transform is not None:
        return None
    state = fresh.state_dict()
    return cache_key(kind="tmu-curriculum", data=tensors_digest(twin_train.x, twin_train.y),
                     model=f"{type(fresh).__module__}.{type(fresh).__qualname__}",
                     init=tensors_digest(*state.values()), names=list(state),
                     epochs=p.curriculum_epochs, lr=p.curriculum_lr, batch_size=p.curriculum_batch_size,
                     momentum=p.momentum, weight_decay=p.weight_decay, seed=int(ctx.seed),
                     precision=ctx.amp.precision, device=ctx.device.type, torch=torch.__version__)


@register
class TMU(Method[TMUParams]):
    """TMU, twin machine unlearning (Ji et al., Towards Aligned Data Removal via Twin Machine
    Unlearning, arXiv 2408.11433 / 2501.08615).

    Inputs (``unlearn``): ``forget`` D_f and ``retain`` D_r, images (n, C, H, W) in [0, 1] pixel
    units with (n,) labels; ``heldout`` D_twin, unseen samples of the same shape (the runner passes
    part of the test split and keeps it out of evaluation). Steps:

    1. Twin model M_t: a copy of M_o fine-tuned on D_r + D_f + D_twin until its accuracy on D_twin
       matches M_o's on D_f (``twin_match``; at most ``twin_epochs``). Twin labels
       g(x) = 1 if M_o predicts D_twin sample x correctly else 0 (computed from M_o's predictions).
    2. Features, with M_t on D_twin and with M_o on D_f (the query set's own model):
       DF = mean Euclidean distance, in the unit-normalised penultimate space, to the ``k`` nearest
       same-class samples of that model's training data (D_r + D_f + D_twin for M_t, D_r + D_f
       for M_o), a sample never being its own neighbour;
       AF = H(p(x), p(x_adv)), x_adv from ``pgd_steps``-step L-inf PGD of radius ``pgd_epsilon``;
       CF = cross-entropy under one curriculum model trained from scratch for ``curriculum_epochs``
       on D_r + D_f + D_twin (so both query sets were seen by it equally).
       Each feature is clipped to the Tukey fences and min-max scaled, per set; with
       ``feature_scaling="class"`` (the default for a D_twin of several classes, i.e. random
       forgetting) it is first z-scored within each class of the set.
    3. The MLP (``hidden``) trained on (features, g) of D_twin predicts P(easy) on D_f;
       D_f^h = {P(easy) < threshold}, or (``hard_fraction``) the share of D_f with the lowest P(easy),
       "auto" matching M_o's error rate on D_twin class by class; D_f^e the rest.
    4. M_o (``unlearn_model="original"``; or M_t, as the released code does, with "twin") is
       fine-tuned ``epochs`` with SGD on D_r (true labels) + D_f^e (true labels, input +
       N(0, noise_std^2) clamped to [0, 1], drawn afresh at each visit) + D_f^h (random wrong labels,
       drawn once); ``stop="val-match"`` may end it early (``unlearnkit.methods._stop``).

    Class-partial forgetting (the paper's setting, ``class-C-P`` in the bench): the runner's
    ``heldout`` is then class C's unseen images only (``UnlearningSplit.heldout_classes``), so D_twin,
    the twin labels and the predictor are class C's. Cost: the phase ``cost`` event (and
    ``last_details["seconds"]``) gives the wall seconds of the twin, the curriculum model, the
    features, the predictor and the unlearning fine-tune, and (``_samples``, ``last_details["samples"]``)
    how many training samples each phase sent through a backward pass, a cost measure free of the
    machine's load.

    The paper's exact form of the noise-perturbed fine-tuning was not retrievable: additive
    Gaussian input noise on D_f^e is our documented choice. ``last_details`` keeps, after each call,
    the twin labels and classes, the scaled features of both sets, P(easy) of D_f, the hard masks of
    D_f and (in-sample) of D_twin, the twin's stopping record and each phase's seconds, for
    inspection (the method itself never evaluates).
    """

    name = "tmu"
    paper = "Ji et al., Towards Aligned Data Removal via Twin Machine Unlearning, arXiv 2408.11433 (2024)"
    Params = TMUParams
    needs_heldout = True
    #: the paper's settings: random-sample forgetting and 10% of one class (class_partial: its
    #: generalisation labels assume the forget set's classes stay in the retain set); the runner warns
    #: on other scenarios
    targets = ("random", "class_partial")

    def __init__(self, params=None, **hparams):
        super().__init__(params, **hparams)
        self.last_details: dict = {}

    def _unlearn(self, model, data, ctx):
        p = self.params
        held = data.heldout
        if _item_shape(held) != _item_shape(data.forget):
            raise ValueError(f"heldout: expected images of the forget set's shape {_item_shape(data.forget)}, "
                             f"got {_item_shape(held)}")
        if len(held) < 2:
            raise ValueError(f"heldout: expected at least 2 unseen samples for the twin problem, got {len(held)}")
        # D_r + D_f (M_o's training set) and D_r + D_f + D_twin (M_t's), positions in that order
        train = _concat([data.retain, data.forget], "train")
        twin_train = _concat([data.retain, data.forget, held], "twin_train")

        seconds: dict[str, float] = {}
        clock = _Clock(ctx.device)

        # 1. the twin problem: M_o plays gold, D_twin plays the forget set.
        twin_labels = _generalisation_labels(model, held, ctx.amp)
        if twin_labels.all() or not twin_labels.any():
            warnings.warn(f"heldout: the original model classifies {'all' if twin_labels.all() else 'none'} of the "
                          f"{len(held)} twin samples correctly, so the predictor sees one generalisation label only "
                          "and cannot tell easy from hard; give a larger held-out set", stacklevel=3)
        twin = self._twin(model, twin_train, data, ctx)
        seconds["twin"] = clock.lap()

        curriculum, curriculum_cached = None, False
        if "cf" in p.features:
            curriculum, curriculum_cached = self._curriculum(model, twin_train, ctx)
        loaded = clock.lap()
        # a loaded model books the cold call's cost of the phase (the load's own: curriculum_loaded)
        seconds["curriculum"] = self.last_cached_seconds if curriculum_cached else loaded

        # 2. features, per set with that set's model.
        raw_twin, y_twin = self._features(twin, held, train, curriculum, ctx)
        raw_forget, y_forget = self._features(model, data.forget, data.retain, curriculum, ctx)
        scaling = p.feature_scaling
        if scaling == "auto":
            scaling = "class" if len(torch.unique(y_twin)) > 1 else "set"
        f_twin, f_forget = raw_twin, raw_forget
        if scaling == "class":
            f_twin, f_forget = classwise_standardise(raw_twin, y_twin), classwise_standardise(raw_forget, y_forget)
        f_twin, f_forget = robust_minmax(f_twin, p.iqr_factor), robust_minmax(f_forget, p.iqr_factor)
        for step, (name, raw) in enumerate((("twin", raw_twin), ("forget", raw_forget)), 1):
            ctx.log("features", step, 2, **{f"{f}_{name}": float(raw[:, j].mean()) for j, f in enumerate(p.features)})
        seconds["features"] = clock.lap()

        # 3. the generalisation-label predictor.
        predictor = fit_predictor(f_twin, twin_labels, hidden=p.hidden, lr=p.predictor_lr,
                                  epochs=p.predictor_epochs, batch_size=p.predictor_batch_size,
                                  generator=ctx.generator,
                                  log=lambda e, loss: ctx.log("predictor", e, p.predictor_epochs, bce=loss))
        p_easy = predictor.predict_proba(f_forget)
        hard = select_hard(p_easy, y_forget, threshold=p.threshold, hard_fraction=p.hard_fraction,
                           twin_labels=twin_labels, twin_classes=y_twin)
        # the predictor's own split of D_twin (in-sample), read the same way as D_f's
        twin_hard = select_hard(predictor.predict_proba(f_twin), y_twin, threshold=p.threshold,
                                hard_fraction=p.hard_fraction, twin_labels=twin_labels, twin_classes=y_twin)
        twin_acc_easy = float((~twin_hard[twin_labels]).float().mean()) if bool(twin_labels.any()) else float("nan")
        twin_acc_hard = float(twin_hard[~twin_labels].float().mean()) if bool((~twin_labels).any()) else float("nan")
        ctx.log("split", 1, 1, twin_easy=float(twin_labels.float().mean()),
                twin_train_acc=float((~twin_hard == twin_labels).float().mean()), twin_acc_easy=twin_acc_easy,
                twin_acc_hard=twin_acc_hard, forget_hard=int(hard.sum()), forget_hard_fraction=float(hard.float().mean()))
        seconds["predictor"] = clock.lap()

        # 4. selective, noise-perturbed fine-tuning of M_o (or of M_t: unlearn_model="twin").
        if p.unlearn_model == "twin":
            model.load_state_dict(twin.state_dict())
        self._finetune(model, data, hard, ctx, y_forget=y_forget, train=train)
        seconds["unlearn"] = clock.lap()
        seconds["total"] = sum(seconds.values())
        if curriculum_cached:
            seconds["curriculum_loaded"] = loaded
        # training samples through a backward pass, per phase (load-free cost; PGD: one per sample and step)
        samples = {"twin": self.twin_check["samples"],
                   "curriculum": p.curriculum_epochs * len(twin_train) if curriculum is not None else 0,
                   "features": p.pgd_steps * (len(held) + len(data.forget)) if "af" in p.features else 0,
                   "unlearn": self._unlearn_samples}
        samples["total"] = sum(samples.values())
        ctx.log("cost", 1, 1, **{f"{k}_s": v for k, v in seconds.items()},
                **{f"{k}_samples": v for k, v in samples.items()}, curriculum_cached=int(curriculum_cached))
        self.last_details = {"twin_labels": twin_labels, "twin_classes": y_twin, "twin_features": f_twin,
                             "forget_features": f_forget, "forget_p_easy": p_easy, "forget_hard": hard,
                             "twin_hard": twin_hard, "features": p.features, "feature_scaling": scaling,
                             "twin_check": self.twin_check, "seconds": seconds, "samples": samples,
                             "curriculum_cached": curriculum_cached}
        return model

    def _curriculum(self, model: nn.Module, twin_train: BatchSource, ctx: Context) -> tuple[nn.Module, bool]:
        """(the curriculum model, whether it came from the cache): ``model``'s architecture
        re-initialised and trained from scratch on D_r + D_f + D_twin, its initialisation and batch
        order seeded from the call's seed only, so a cached model is the one this call would train."""
        p = self.params
        seed = int(ctx.seed) + _CURRICULUM_SEED
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = _fresh_copy(model)

        def train(m: nn.Module) -> nn.Module:
            with torch.random.fork_rng(devices=[]), ctx.own_generator(seed):
                torch.manual_seed(seed)  # a user's model may draw (dropout)
                run_epochs(m, twin_train, epochs=p.curriculum_epochs, batch_size=p.curriculum_batch_size,
                           optimizer=sgd(m, p.curriculum_lr, p.momentum, p.weight_decay), ctx=ctx,
                           phase="curriculum")
            return m

        key = _curriculum_key(fresh, twin_train, ctx, p) if p.cache_curriculum else None
        if key is None:
            return train(fresh).eval(), False
        fresh, meta = cached_train(fresh, train, cache_dir=ctx.cache_dir, key=key, name="tmu-curriculum")
        if meta["cached"]:
            self.last_cached_seconds = float(meta["seconds"])
        return fresh, bool(meta["cached"])

    def _twin(self, model, twin_train: BatchSource, data, ctx) -> nn.Module:
        """M_t: M_o fine-tuned on D_r + D_f + D_twin (``twin_train``) until (``twin_match``) it
        memorises D_twin as M_o memorises D_f, checked after each epoch or, with
        ``twin_check_every``, every that many steps. Logs phase ``twin_check`` per check
        (twin_acc_twin: M_t on D_twin; orig_acc_forget: M_o on D_f, the target; its step is the
        epoch, or the step count with ``twin_check_every``) and warns when the target is not reached."""
        p = self.params

        def _acc(m, source):
            logits, labels = _infer(m, source, predict, ctx.amp)
            return float((logits.argmax(1) == labels).float().mean())

        def _reached(acc):
            return p.twin_match and acc >= target - p.twin_tolerance

        target = _acc(model, data.forget)
        twin = copy.deepcopy(model)
        opt = sgd(twin, p.twin_lr, p.momentum, p.weight_decay)
        acc = _acc(twin, data.heldout)
        n_h = len(data.heldout)
        n_train = len(twin_train) - n_h  # D_r + D_f come first in twin_train, D_twin last
        n_epoch = len(twin_train) if p.twin_others is None else n_h + min(n_train, round(p.twin_others * n_h))
        per_epoch = -(-n_epoch // p.twin_batch_size)
        every = p.twin_check_every
        total = p.twin_epochs if every is None else p.twin_epochs * per_epoch
        ctx.log("twin_check", 0, total, twin_acc_twin=acc, orig_acc_forget=target)
        epoch = steps = samples = 0
        while epoch < p.twin_epochs and not _reached(acc):
            if every is None and p.twin_others is None:
                run_epochs(twin, twin_train, epochs=1, batch_size=p.twin_batch_size, optimizer=opt, ctx=ctx,
                           phase="twin")
                steps += per_epoch
                samples += len(twin_train)
                acc = _acc(twin, data.heldout)
                ctx.log("twin_check", epoch + 1, total, twin_acc_twin=acc, orig_acc_forget=target)
            else:
                source = twin_train
                if p.twin_others is not None:  # this epoch: D_twin and a fresh draw of the other samples
                    others = torch.randperm(n_train, generator=ctx.generator)[:n_epoch - n_h]
                    source = twin_train.subset(torch.cat([torch.arange(n_train, n_train + n_h), others]))
                twin.train()
                for i, b in enumerate(ctx.batches(source, p.twin_batch_size, shuffle=True), 1):
                    with ctx.amp.autocast():
                        loss = F.cross_entropy(twin(b.x), b.y)
                    ctx.amp.step(opt, loss)
                    steps += 1
                    samples += len(b.y)
                    ctx.log("twin", i, per_epoch, loss=loss.detach())
                    if (every is not None and steps % every == 0) or i == per_epoch:
                        acc = _acc(twin, data.heldout)
                        ctx.log("twin_check", steps if every is not None else epoch + 1, total, twin_acc_twin=acc,
                                orig_acc_forget=target)
                        twin.train()
                        if _reached(acc):
                            break
            epoch += 1
        if acc < target - max(p.twin_tolerance, 0.05):
            warnings.warn(f"twin_epochs: after {epoch} epochs the twin model classifies {acc:.1%} of D_twin, while the "
                          f"original classifies {target:.1%} of the forget set: the twin has not memorised its twin "
                          "set as the original did, so its generalisation labels mislead; fine-tune it longer",
                          stacklevel=4)
        self.twin_check = {"epochs": epoch if every is None else steps / per_epoch, "steps": steps,
                           "samples": samples, "twin_acc_twin": acc, "orig_acc_forget": target}
        twin.eval()
        return twin

    def _features(self, model, queries: BatchSource, others: BatchSource, curriculum, ctx
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """((n, len(features)) raw features of ``queries`` under ``model``, whose other training
        samples are ``others``; (n,) labels of ``queries``)."""
        p = self.params
        cols, labels = [], None
        for f in p.features:
            if f == "df":
                col, labels = _distance_feature(model, queries, others, k=p.k, amp=ctx.amp)
            elif f == "af":
                col, labels = _adversarial_feature(model, queries, epsilon=p.pgd_epsilon, steps=p.pgd_steps,
                                                   step_size=p.pgd_step_size, amp=ctx.amp)
            else:
                col, labels = _curriculum_feature(curriculum, queries, ctx.amp)
            cols.append(col)
        assert labels is not None, "TMUParams.features is never empty"
        return torch.stack(cols, dim=1), labels

    def _finetune(self, model, data, hard: torch.Tensor, ctx: Context, *, y_forget: torch.Tensor | None = None,
                  train: BatchSource | None = None) -> None:
        """Step 4 over ``train`` = D_r + D_f (positions: retain first); ``y_forget``: D_f's labels
        (read from ``data.forget`` when not given)."""
        p = self.params
        n_r = len(data.retain)
        self._unlearn_samples = 0
        if train is None:
            train = _concat([data.retain, data.forget], "train")
        y_forget = (y_forget if y_forget is not None else data.forget.all_labels()).clone()
        y_forget[hard] = random_wrong_labels(y_forget[hard], data.num_classes, ctx.generator)
        noisy = torch.cat([torch.zeros(n_r, dtype=torch.bool), ~hard])
        opt = sgd(model, p.lr, p.momentum, p.weight_decay)
        model.train()
        total = p.epochs * -(-len(train) // p.batch_size)
        step = 0
        for _ in range(p.epochs):
            for b in ctx.batches(train, p.batch_size):
                xb, yb = b.x, b.y
                in_forget = b.idx >= n_r
                if bool(in_forget.any()):  # D_f^h gets its wrong labels (D_f^e its own, unchanged)
                    yb = yb.clone()
                    yb[in_forget.to(yb.device)] = y_forget[b.idx[in_forget] - n_r].to(yb.device)
                nb = noisy[b.idx]
                if p.noise_std > 0 and bool(nb.any()):
                    nb = nb.to(xb.device)
                    xb = xb.clone()
                    noise = torch.randn(xb[nb].shape, generator=ctx.generator) * p.noise_std  # drawn on the CPU
                    xb[nb] = (xb[nb] + noise.to(xb.device)).clamp(0.0, 1.0)
                with ctx.amp.autocast():
                    loss = F.cross_entropy(model(xb), yb)
                ctx.amp.step(opt, loss)
                step += 1
                self._unlearn_samples += len(yb)
                ctx.log("unlearn", step, total, loss=loss.detach())
                if ctx.stop_check(model):
                    model.eval()
                    return
        model.eval()


__all__ = ["TMU", "TMUParams", "FEATURE_SETS", "RELEASED_THRESHOLD", "GeneralisationPredictor", "adversarial_feature",
           "classwise_standardise", "curriculum_feature", "distance_feature", "fit_predictor", "generalisation_labels",
           "least_easy", "pgd_attack", "robust_minmax", "select_hard"]
