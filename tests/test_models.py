"""Models build from the data module's shape and have the published sizes."""

from __future__ import annotations

import pytest
import torch

from prunelab.models.convnets import ConvNet, LeNet5
from prunelab.models.mlp import MLP
from prunelab.models.resnet import ResNet
from prunelab.models.vgg import VGG


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "make,shape,expected",
    [
        (lambda s: MLP(s, 10, (300, 100)), (1, 28, 28), 266_610),  # LeNet-300-100
        (lambda s: ResNet(s, 10, 20), (3, 32, 32), 269_722),  # He et al. 2016: 0.27M
        (lambda s: ResNet(s, 10, 56), (3, 32, 32), 853_018),  # 0.85M
        (lambda s: ConvNet(s, 10, [64, 64, "M"], (256, 256)), (3, 32, 32), 4_301_642),  # Conv-2: 4.3M
        (
            lambda s: ConvNet(s, 10, [64, 64, "M", 128, 128, "M"], (256, 256)),
            (3, 32, 32),
            2_425_930,
        ),  # Conv-4: 2.4M
    ],
)
def test_published_parameter_counts(make, shape, expected):
    assert n_params(make(shape)) == expected


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize(
    "make",
    [
        lambda s: MLP(s, 4),
        lambda s: LeNet5(s, 4),
        lambda s: ConvNet(s, 4, [16, "M", 16, "M", 32, "M"], (32,)),
        lambda s: ConvNet(s, 4, [64, 64, "M", 128, 128, "M", 256, 256, "M"], (256, 256)),
    ],
)
def test_forward_shapes(make, shape):
    assert make(shape)(torch.randn(2, *shape)).shape == (2, 4)


@pytest.mark.parametrize("depth", [11, 16])
def test_vgg_forward(depth):
    assert VGG((3, 32, 32), 10, depth)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wide_resnet_sizes():
    from prunelab.models.wide_resnet import WideResNet

    assert abs(n_params(WideResNet((3, 32, 32), 10, 28, 10)) - 36.5e6) < 0.1e6  # Zagoruyko & Komodakis: 36.5M
    assert WideResNet((3, 32, 32), 10, 16, 4)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
