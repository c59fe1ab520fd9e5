"""Small convolutional nets: LeNet-5, Conv-2/4/6 (Frankle & Carbin 2019) and CNN-3 (Entezari & Saukh's repo).

Each net is a ``features`` stack and a ``classifier`` stack; the flattened width is found by a dry forward pass,
so any input size works (28x28 MNIST, 32x32 CIFAR, 8x8 digits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _flat_width(features: nn.Module, input_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).flatten(1).shape[1])


def _head(width: int, hidden: Sequence[int], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """3x3 convolutions (padding 1) with ReLU; 'M' in ``channels`` is a 2x2 max-pool (skipped below 2x2)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int | str] = (64, 64, "M"),
        hidden: Sequence[int] = (256, 256),
        batch_norm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = input_shape[0], min(input_shape[1:])
        for v in channels:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers.append(nn.Conv2d(c, int(v), 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(int(v)))
            layers.append(nn.ReLU())
            c = int(v)
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = _head(_flat_width(self.features, input_shape), hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998): conv5x5(6, pad 2) - pool - conv5x5(16) - pool - 120 - 84 - classes."""

    def __init__(self, input_shape: Sequence[int], num_classes: int):
        super().__init__()
        pool = nn.MaxPool2d(2) if min(input_shape[1:]) >= 16 else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=0 if min(input_shape[1:]) >= 16 else 2),
            nn.ReLU(),
            pool,
            nn.Flatten(),
        )
        self.classifier = _head(_flat_width(self.features, input_shape), (120, 84), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
