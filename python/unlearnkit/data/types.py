"""Layer: data. The in-memory dataset type every loader returns (kept apart from the loaders so
that ``datasets`` and ``formats`` both import it and neither imports the other's module)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset with an official (or seeded) train/test split.

    Attributes:
        name: dataset name, e.g. ``"digits"``.
        x_train: (n_train, C, H, W) float32 in [0, 1].
        y_train: (n_train,) int64 in [0, num_classes).
        x_test: (n_test, C, H, W) float32 in [0, 1].
        y_test: (n_test,) int64.
        num_classes: number of classes.
        mean, std: per-channel statistics of x_train, used by the model's input normalisation.
        classes: class names.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    fine_train: torch.Tensor | None = None
    fine_test: torch.Tensor | None = None
    fine_classes: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A short content hash of the data (part of every checkpoint's cache key)."""
        import hashlib

        h = hashlib.sha256(self.name.encode())
        for t in (self.x_train, self.y_train, self.x_test, self.y_test, self.fine_train):
            if t is not None:
                h.update(t.numpy().tobytes())
        return h.hexdigest()[:16]


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _make(name, x_train, y_train, x_test, y_test, classes) -> ImageDataset:
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    x_test = torch.as_tensor(x_test, dtype=torch.float32)
    mean, std = _stats(x_train)
    return ImageDataset(name, x_train, torch.as_tensor(y_train, dtype=torch.int64), x_test,
                        torch.as_tensor(y_test, dtype=torch.int64), len(classes), mean, std, tuple(classes))
