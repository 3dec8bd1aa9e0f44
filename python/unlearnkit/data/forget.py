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
from .datasets import ImageDataset

FORGET_KINDS = ("random", "class")


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
    """

    data: ImageDataset
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    description: str
    seed: int
    test_idx: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        n = len(self.data.y_train)
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

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.data.fingerprint().encode())
        h.update(self.forget_idx.tobytes())
        return h.hexdigest()[:16]


def make_split(data: ImageDataset, *, forget: str = "random", fraction: float = 0.1,
               forget_class: int | None = None, seed: int = 0) -> UnlearningSplit:
    """Chooses a forget set of ``data``'s training samples.

    Args:
        forget: ``"random"`` (a ``fraction`` of the training set, uniformly) or ``"class"``
            (every sample of ``forget_class``).
        seed: fixes the random selection.
    """
    if forget == "random":
        forget_idx = select_random(len(data.y_train), fraction, seed=seed)
        desc = f"random-{fraction * 100:g}"
    elif forget == "class":
        if forget_class is None:
            raise ValueError("forget_class: expected a class label when forget='class', got None")
        forget_idx = select_class(data.y_train.numpy(), forget_class)
        desc = f"class-{forget_class}"
    else:
        raise ValueError(f"forget: expected one of {FORGET_KINDS}, got {forget!r}")
    retain_idx = np.setdiff1d(np.arange(len(data.y_train)), forget_idx).astype(np.int64)
    return UnlearningSplit(data, forget_idx, retain_idx, desc, seed)
