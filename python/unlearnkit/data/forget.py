"""Forget-set selection and the split of a training set into forget and retain parts.

All selections are deterministic for a given seed and return sorted int64 indices into the
training set; the retain set is always the exact complement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .._validation import check_fraction
from .backdoor import Trigger, poison
from .datasets import ImageDataset

FORGET_KINDS = ("random", "class", "class_partial", "subclass", "backdoor")


def select_random(n_train: int, fraction: float, *, seed: int) -> np.ndarray:
    """A uniformly random ``fraction`` of the ``n_train`` training indices (at least one)."""
    fraction = check_fraction(fraction, "fraction")
    n_forget = max(1, int(round(fraction * n_train)))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_train, size=n_forget, replace=False)).astype(np.int64)


def select_class(labels: np.ndarray, forget_class: int) -> np.ndarray:
    """Every training index whose label is ``forget_class``."""
    labels = np.asarray(labels)
    if forget_class not in set(np.unique(labels).tolist()):
        raise ValueError(f"forget_class: expected one of the training labels {np.unique(labels).tolist()}, "
                         f"got {forget_class!r}")
    return np.flatnonzero(labels == forget_class).astype(np.int64)


def select_class_partial(labels: np.ndarray, forget_class: int, fraction: float, *, seed: int) -> np.ndarray:
    """A uniformly random ``fraction`` of the training indices whose label is ``forget_class`` (at
    least one; TMU's setting, "10% of one class"). The rest of the class stays in the retain set."""
    fraction = check_fraction(fraction, "fraction")
    members = select_class(labels, forget_class)
    n_forget = max(1, int(round(fraction * len(members))))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(members, size=n_forget, replace=False)).astype(np.int64)


def _check_indices(idx, name: str, n: int, part: str, hint: str = "") -> None:
    """Integer, in [0, n), each once: indices into the ``part`` ("training" or "test") split."""
    idx = np.asarray(idx)
    where = "the training set" if part == "training" else "the test split"
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer indices into {where}, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name}: expected indices of {part} samples in [0, {n}), got values from "
                         f"{idx.min()} to {idx.max()}{hint}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"{name}: expected each {part} index once, got duplicates")


@dataclass(frozen=True)
class UnlearningSplit:
    """A dataset with its forget set: the unit every method and metric works on.

    Attributes:
        data: the dataset (train and test tensors).
        forget_idx: (n_forget,) sorted int64 indices into the training set.
        retain_idx: (n_retain,) sorted int64 indices, the complement of ``forget_idx``.
        description: e.g. ``"random-10"`` or ``"class-3"``.
        seed: the seed that chose the forget set.
        test_idx: sorted indices of the test split used for evaluation: disjoint from ``val_idx`` and
            from the held-out part (``heldout_idx``, e.g. TMU's D_twin). Never shown to a method.
        trigger: the backdoor trigger when the forget set is poisoned samples (backdoor scenario).
        val_idx: sorted indices of the test split that methods may monitor and select on (the
            runner passes ``val`` as their ``test=`` argument); never evaluated on. Empty if not given.
        heldout_classes: when set (class-partial forgetting), the held-out part a method may train on
            (``heldout``) holds only test samples of these classes (TMU's D_twin: the forgotten class's
            unseen images); the held-out samples of other classes are then used by nothing.
    """

    data: ImageDataset
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    description: str
    seed: int
    test_idx: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None: filled in __post_init__
    trigger: Trigger | None = None
    val_idx: np.ndarray = field(default=None)  # type: ignore[arg-type]  # None: filled in __post_init__
    heldout_classes: tuple | None = None

    def __post_init__(self):
        n = len(self.data.y_train)
        for name in ("forget_idx", "retain_idx"):
            _check_indices(getattr(self, name), name, n, "training", " (a forget set must be part of the training set)")
        if len(self.forget_idx) == 0:
            raise ValueError("forget_idx: expected at least one sample to forget, got none")
        if np.intersect1d(self.forget_idx, self.retain_idx).size:
            raise ValueError("forget_idx: expected indices disjoint from retain_idx, got an overlap")
        if len(self.forget_idx) + len(self.retain_idx) != n:
            raise ValueError(f"retain_idx: expected the complement of forget_idx in {n} training samples, "
                             f"got {len(self.forget_idx)} + {len(self.retain_idx)}")
        n_test = len(self.data.y_test)
        if self.val_idx is None:
            object.__setattr__(self, "val_idx", np.zeros(0, dtype=np.int64))
        if self.test_idx is None:
            object.__setattr__(self, "test_idx", np.setdiff1d(np.arange(n_test), self.val_idx).astype(np.int64))
        for name in ("test_idx", "val_idx"):
            _check_indices(getattr(self, name), name, n_test, "test")
        if len(self.test_idx) == 0:
            raise ValueError("test_idx: expected at least one test sample to evaluate on, got none")
        if np.intersect1d(self.test_idx, self.val_idx).size:
            raise ValueError("val_idx: expected indices disjoint from test_idx (validation data is never "
                             "evaluated on), got an overlap")

    # Tensors of each part. Indexing copies, so callers can't mutate the dataset through them.
    @property
    def forget(self) -> TensorDataset:
        i = torch.from_numpy(self.forget_idx)
        return TensorDataset(self.data.x_train[i], self.data.y_train[i])

    @property
    def retain(self) -> TensorDataset:
        i = torch.from_numpy(self.retain_idx)
        return TensorDataset(self.data.x_train[i], self.data.y_train[i])

    @property
    def train(self) -> TensorDataset:
        return TensorDataset(self.data.x_train, self.data.y_train)

    @property
    def test(self) -> TensorDataset:
        i = torch.from_numpy(self.test_idx)
        return TensorDataset(self.data.x_test[i], self.data.y_test[i])

    @property
    def val(self) -> TensorDataset:
        """The validation part of the test split: what a method may monitor and select on."""
        i = torch.from_numpy(self.val_idx)
        return TensorDataset(self.data.x_test[i], self.data.y_test[i])

    @property
    def heldout_idx(self) -> np.ndarray:
        """Test indices neither evaluated on nor in ``val``: unseen data a method may train on (TMU's D_twin)."""
        used = np.union1d(self.test_idx, self.val_idx)
        idx = np.setdiff1d(np.arange(len(self.data.y_test)), used).astype(np.int64)
        if self.heldout_classes is not None:
            idx = idx[np.isin(self.data.y_test.numpy()[idx], np.asarray(self.heldout_classes))]
        return idx

    @property
    def heldout(self) -> TensorDataset:
        i = torch.from_numpy(self.heldout_idx)
        return TensorDataset(self.data.x_test[i], self.data.y_test[i])

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.data.fingerprint().encode())
        h.update(self.forget_idx.tobytes())
        h.update(self.test_idx.tobytes())
        h.update(b"val")
        h.update(np.asarray(self.val_idx, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]


def make_split(data: ImageDataset, *, forget: str = "random", fraction: float = 0.1,
               forget_class: int | None = None, seed: int = 0, heldout_fraction: float = 0.0,
               backdoor_target: int = 0, val_fraction: float = 0.2) -> UnlearningSplit:
    """Chooses a forget set of ``data``'s training samples.

    Args:
        forget: ``"random"`` (a ``fraction`` of the training set, uniformly), ``"class"`` (every
            sample of ``forget_class``), ``"class_partial"`` (a random ``fraction`` of class
            ``forget_class``; the held-out part is then that class's unseen images), ``"subclass"``
            (every sample of fine class ``forget_class``
            in a dataset relabelled to super-classes by :func:`group_classes`) or ``"backdoor"``
            (``fraction`` of the non-target images poisoned with a trigger and relabelled to
            ``backdoor_target``; the forget set is the poisoned samples).
        seed: fixes the random selection, the validation part and the held-out part of the test split.
        heldout_fraction: share of the test split kept out of evaluation, for methods that need
            unseen data of their own (TMU's D_twin); see ``UnlearningSplit.heldout_idx``.
        val_fraction: share of the test split set aside as validation data (``UnlearningSplit.val``),
            what methods may monitor and select on; never evaluated on. The test split is cut by
            one seeded permutation into val, held-out and evaluated parts, so the three are disjoint.
    """
    trigger = None
    heldout_classes: tuple[int, ...] | None = None
    if forget == "random":
        forget_idx = select_random(len(data.y_train), fraction, seed=seed)
        desc = f"random-{fraction * 100:g}"
    elif forget in ("class", "subclass"):
        if forget_class is None:
            raise ValueError(f"forget_class: expected a class label when forget={forget!r}, got None")
        labels = data.y_train.numpy() if forget == "class" else _fine_labels(data, "train")
        forget_idx = select_class(labels, forget_class)
        desc = f"{forget}-{forget_class}"
    elif forget == "class_partial":
        if forget_class is None:
            raise ValueError("forget_class: expected a class label when forget='class_partial', got None")
        forget_idx = select_class_partial(data.y_train.numpy(), forget_class, fraction, seed=seed)
        heldout_classes = (int(forget_class),)
        desc = f"class-{forget_class}-{fraction * 100:g}"
    elif forget == "backdoor":
        data, forget_idx, trigger = poison(data, fraction=fraction, target=backdoor_target, seed=seed)
        desc = f"backdoor-{fraction * 100:g}"
    else:
        raise ValueError(f"forget: expected one of {FORGET_KINDS}, got {forget!r}")
    retain_idx = np.setdiff1d(np.arange(len(data.y_train)), forget_idx).astype(np.int64)
    val_idx, test_idx = _cut_test_split(len(data.y_test), val_fraction, heldout_fraction, seed)
    return UnlearningSplit(data, forget_idx, retain_idx, desc, seed, test_idx=test_idx, trigger=trigger,
                           val_idx=val_idx, heldout_classes=heldout_classes)


def _cut_test_split(n_test: int, val_fraction: float, heldout_fraction: float, seed: int):
    """(val_idx, test_idx): one seeded permutation of the test split; its first ``val_fraction``
    is val, the next ``heldout_fraction`` held out, the rest evaluated (each sorted)."""
    for name, f in (("val_fraction", val_fraction), ("heldout_fraction", heldout_fraction)):
        if f:
            check_fraction(f, name)
    n_val = int(round(val_fraction * n_test))
    n_held = int(round(heldout_fraction * n_test))
    if n_val + n_held >= n_test:
        raise ValueError(f"val_fraction: expected val_fraction + heldout_fraction < 1 (something left to evaluate "
                         f"on), got {val_fraction} + {heldout_fraction}")
    perm = np.random.default_rng(seed + 1_000_003).permutation(n_test)
    val_idx = np.sort(perm[:n_val]).astype(np.int64)
    test_idx = np.sort(perm[n_val + n_held:]).astype(np.int64)
    return val_idx, test_idx


def _fine_labels(data: ImageDataset, part: str) -> np.ndarray:
    fine = getattr(data, f"fine_{part}", None)
    if fine is None:
        raise ValueError(f"forget: 'subclass' needs a dataset grouped into super-classes (group_classes), "
                         f"got {data.name!r} without fine labels")
    return fine.numpy()
