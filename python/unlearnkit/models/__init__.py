"""Models exposing ``features(x)`` and ``head(z)``; ``build_model`` makes one for a dataset."""

from __future__ import annotations

from .base import FeatureClassifier
from .cnn import SmallCNN
from .resnet import ResNet18

MODELS = {"small-cnn": SmallCNN, "resnet18": ResNet18}


def build_model(name: str, data, **kwargs) -> FeatureClassifier:
    """Builds model ``name`` (one of ``MODELS``) for ``data`` (an ``ImageDataset``): channels,
    classes, image size and input statistics are taken from it."""
    if name not in MODELS:
        raise ValueError(f"model: expected one of {sorted(MODELS)}, got {name!r}")
    c, h, _ = data.image_shape
    return MODELS[name](c, data.num_classes, h, mean=data.mean, std=data.std, **kwargs)


__all__ = ["FeatureClassifier", "MODELS", "ResNet18", "SmallCNN", "build_model"]
