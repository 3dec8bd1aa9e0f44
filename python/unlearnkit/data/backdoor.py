"""Backdoor scenario: a trigger patch planted on some training images relabelled to a target class.

The forget set is exactly the poisoned samples. A method that removes their influence should bring
the attack success rate (triggered test images classified as the target) down to the gold
model's, which never saw a trigger, while keeping clean accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .._validation import check_fraction
from .types import ImageDataset


@dataclass(frozen=True)
class Trigger:
    """A square patch of value ``value`` (pixel units, [0, 1]) of ``size`` pixels in the
    bottom-right corner; images carrying it are labelled ``target``."""

    size: int
    target: int
    value: float = 1.0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, H, W) -> a copy with the patch planted."""
        x = x.clone()
        x[..., -self.size:, -self.size:] = self.value
        return x


def poison(data: ImageDataset, *, fraction: float = 0.1, target: int = 0, patch: int | None = None,
           seed: int = 0) -> tuple[ImageDataset, np.ndarray, Trigger]:
    """Returns (poisoned dataset, poisoned training indices, trigger).

    ``fraction`` of the training images whose label is not ``target`` (chosen with ``seed``) get the
    trigger and the label ``target``. The patch is ~1/9 of the image side (3 px on 28x28, 2 px on 8x8)
    unless ``patch`` is given.
    """
    fraction = check_fraction(fraction, "fraction")
    if not 0 <= target < data.num_classes:
        raise ValueError(f"target: expected a class in [0, {data.num_classes}), got {target!r}")
    side = data.image_shape[-1]
    trigger = Trigger(size=patch or max(2, side // 9), target=target)
    candidates = np.flatnonzero(data.y_train.numpy() != target)
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(candidates))))
    idx = np.sort(rng.choice(candidates, size=n, replace=False)).astype(np.int64)
    x, y = data.x_train.clone(), data.y_train.clone()
    t = torch.from_numpy(idx)
    x[t] = trigger.apply(x[t])
    y[t] = target
    return replace(data, name=f"{data.name}+backdoor", x_train=x, y_train=y), idx, trigger
