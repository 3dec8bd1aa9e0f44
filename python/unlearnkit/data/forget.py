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

FORGET_KINDS = ("random", "class", "subclass", "backdoor")


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


@dataclass(frozen=True)
class UnlearningSplit:
    """A dataset with its forget set: the unit every method and metric works on.

    Attributes:
        data: the dataset (train and test tensors).
        forget_idx: (n_forget,) sorted int64 indices into the training set.
        retain_idx: (n_retain,) sorted int64 indices, the complement of ``forget_idx``.
        description: e.g. ``"random-10"`` or ``"class-3"``.
        seed: the seed that chose the forget set.
        test_idx: indices of the test split used for evaluation (the rest may be held out, e.g. TMU's D_twin).
        trigger: the backdoor trigger when the forget set is poisoned samples (backdoor scenario).
    """

    data: ImageDataset
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    description: str
    seed: int
    test_idx: np.ndarray = field(default=None)  # type: ignore[assignment]
    trigger: "Trigger | None" = None

    def __post_init__(self):
        n = len(self.data.y_train)
        for name in ("forget_idx", "retain_idx"):
            idx = np.asarray(getattr(self, name))
            if idx.dtype.kind not in "iu":
                raise TypeError(f"{name}: expected integer indices into the training set, got dtype {idx.dtype}")
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"{name}: expected indices of training samples in [0, {n}), got values from "
                                 f"{idx.min()} to {idx.max()} (a forget set must be part of the training set)")
            if np.unique(idx).size != idx.size:
                raise ValueError(f"{name}: expected each training index once, got duplicates")
        if len(self.forget_idx) == 0:
            raise ValueError("forget_idx: expected at least one sample to forget, got none")
        if np.intersect1d(self.forget_idx, self.retain_idx).size:
            raise ValueError("forget_idx: expected indices disjoint from retain_idx, got an overlap")
        if len(self.forget_idx) + len(self.retain_idx) != n:
            raise ValueError(f"retain_idx: expected the complement of forget_idx in {n} training samples, "
                             f"got {len(self.forget_idx)} + {len(self.retain_idx)}")
        if self.test_idx is None:
            object.__setattr__(self, "test_idx", np.arange(len(self.data.y_test), dtype=np.int64))

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
    def heldout_idx(self) -> np.ndarray:
        """Test indices *not* used for evaluation (held out for methods that need unseen data)."""
        return np.setdiff1d(np.arange(len(self.data.y_test)), self.test_idx).astype(np.int64)

    @property
    def heldout(self) -> TensorDataset:
        i = torch.from_numpy(self.heldout_idx)
        return TensorDataset(self.data.x_test[i], self.data.y_test[i])

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.data.fingerprint().encode())
        h.update(self.forget_idx.tobytes())
        h.update(self.test_idx.tobytes())
        return h.hexdigest()[:16]


def make_split(data: ImageDataset, *, forget: str = "random", fraction: float = 0.1,
               forget_class: int | None = None, seed: int = 0, heldout_fraction: float = 0.0,
               backdoor_target: int = 0) -> UnlearningSplit:
    """Chooses a forget set of ``data``'s training samples.

    Args:
        forget: ``"random"`` (a ``fraction`` of the training set, uniformly), ``"class"`` (every
            sample of ``forget_class``), ``"subclass"`` (every sample of fine class ``forget_class``
            in a dataset relabelled to super-classes by :func:`group_classes`) or ``"backdoor"``
            (``fraction`` of the non-target images poisoned with a trigger and relabelled to
            ``backdoor_target``; the forget set is the poisoned samples).
        seed: fixes the random selection (and the held-out part of the test split).
        heldout_fraction: share of the test split kept out of evaluation, for methods that need
            unseen data of their own (TMU's D_twin); see ``UnlearningSplit.heldout_idx``.
    """
    trigger = None
    if forget == "random":
        forget_idx = select_random(len(data.y_train), fraction, seed=seed)
        desc = f"random-{fraction * 100:g}"
    elif forget in ("class", "subclass"):
        if forget_class is None:
            raise ValueError(f"forget_class: expected a class label when forget={forget!r}, got None")
        labels = data.y_train.numpy() if forget == "class" else _fine_labels(data, "train")
        forget_idx = select_class(labels, forget_class)
        desc = f"{forget}-{forget_class}"
    elif forget == "backdoor":
        data, forget_idx, trigger = poison(data, fraction=fraction, target=backdoor_target, seed=seed)
        desc = f"backdoor-{fraction * 100:g}"
    else:
        raise ValueError(f"forget: expected one of {FORGET_KINDS}, got {forget!r}")
    retain_idx = np.setdiff1d(np.arange(len(data.y_train)), forget_idx).astype(np.int64)
    test_idx = np.arange(len(data.y_test), dtype=np.int64)
    if heldout_fraction:
        check_fraction(heldout_fraction, "heldout_fraction")
        held = np.random.default_rng(seed + 1_000_003).random(len(test_idx)) < heldout_fraction
        test_idx = test_idx[~held]
    return UnlearningSplit(data, forget_idx, retain_idx, desc, seed, test_idx=test_idx, trigger=trigger)


def _fine_labels(data: ImageDataset, part: str) -> np.ndarray:
    fine = getattr(data, f"fine_{part}", None)
    if fine is None:
        raise ValueError(f"forget: 'subclass' needs a dataset grouped into super-classes (group_classes), "
                         f"got {data.name!r} without fine labels")
    return fine.numpy()
