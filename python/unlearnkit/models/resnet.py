"""ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), the models of the papers' GPU runs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import FeatureClassifier


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(FeatureClassifier):
    """ResNet-18 (He et al. 2016) with a CIFAR stem; features are the 512-d pooled activations."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, mean=(0.0, 0.0, 0.0),
                 std=(1.0, 1.0, 1.0), width: int = 64):
        super().__init__(in_channels, num_classes, mean, std)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.feature_dim = cin
        self.classifier = nn.Linear(cin, num_classes)

    def body(self, x):
        return torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1)
