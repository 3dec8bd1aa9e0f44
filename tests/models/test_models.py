"""Layer: models (tests). The built-in models (``unlearnkit.models``): features and head compose to the
forward pass, the CIFAR ResNet-18 stem and size, normalisation with the dataset's statistics."""

import pytest
import torch

from unlearnkit.data import load_digits
from unlearnkit.models import ResNet18, SmallCNN, build_model


@pytest.mark.parametrize("size", [8, 28])
def test_small_cnn_features_and_head_compose(size):
    torch.manual_seed(0)
    m = SmallCNN(1, 10, size, mean=(0.5,), std=(0.25,)).eval()
    x = torch.rand(5, 1, size, size)
    z = m.features(x)
    assert z.shape == (5, m.feature_dim) == (5, 128)
    assert torch.allclose(m.head(z), m(x))
    assert m(x).shape == (5, 10)


def test_resnet18_cifar_stem():
    torch.manual_seed(0)
    m = ResNet18(3, 100, 32).eval()
    x = torch.rand(2, 3, 32, 32)
    assert m.features(x).shape == (2, 512)
    assert torch.allclose(m.head(m.features(x)), m(x))
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(11.2e6, rel=0.02)


def test_model_normalises_with_the_dataset_statistics():
    data = load_digits()
    m = build_model("small-cnn", data)
    assert torch.allclose(m.input_mean.flatten(), torch.tensor(data.mean))
    with pytest.raises(ValueError, match="x: expected images of shape"):
        m.features(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="model"):
        build_model("vgg", data)
