"""A small CNN for 8x8 and 28x28 grayscale images (digits, (Fashion-)MNIST), fast on a CPU."""

from __future__ import annotations

from torch import nn

from .base import FeatureClassifier


class SmallCNN(FeatureClassifier):
    """conv(c1)-ReLU-pool, conv(c2)-ReLU-pool, linear(feature_dim)-ReLU | linear(num_classes).

    Args:
        in_channels: image channels (1 for grayscale).
        num_classes: number of classes.
        image_size: height (= width) of the input, e.g. 8 or 28.
        mean, std: per-channel input statistics (see ``ImageDataset``).
        feature_dim: width of the penultimate layer (default 128).
        channels: (c1, c2), the widths of the two 3x3 conv layers (default (32, 64); (16, 32) is
            about 2x faster on a CPU at 28x28 and loses little accuracy on Fashion-MNIST).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, mean=(0.0,), std=(1.0,),
                 feature_dim: int = 128, channels: tuple[int, int] = (32, 64)):
        super().__init__(in_channels, num_classes, mean, std)
        self.feature_dim = feature_dim
        side = image_size // 2 // 2
        if side < 1:
            raise ValueError(f"image_size: expected at least 4 pixels, got {image_size}")
        c1, c2 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, num_classes)

    def body(self, x):
        return self.fc(self.conv(x))
