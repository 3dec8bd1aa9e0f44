"""The contract every model honours: ``features(x)`` (penultimate layer) and ``head(z)``.

Half of the methods and metrics work on features, so the split is part of the interface:
``model(x) == model.head(model.features(x))``. Inputs are images in the unnormalised [0, 1]
pixel range; each model normalises them itself with the dataset's mean and std (buffers saved
in the checkpoint), so pixel-unit step sizes (DLFD, TMU) mean what the papers say.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    """Base class: subclasses define ``body`` (normalised image -> features) and ``classifier``."""

    #: None only for a ``wrap`` view whose head does not tell its input width, or whose model has no conv layer
    feature_dim: int | None
    in_channels: int | None
    num_classes: int
    input_mean: torch.Tensor  # buffers: (1, C, 1, 1) per-channel statistics of the inputs
    input_std: torch.Tensor
    classifier: nn.Module  # set by subclasses: the head (features -> logits)

    def __init__(self, in_channels: int, num_classes: int, mean, std):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> (N, feature_dim) penultimate features."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected images of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.body((x - self.input_mean) / self.input_std)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) features -> (N, num_classes) logits."""
        return self.classifier(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
