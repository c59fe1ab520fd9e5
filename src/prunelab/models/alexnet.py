"""AlexNet features with a small head (Entezari & Saukh 2020, their models/AlexNet3.py): torchvision's AlexNet
convolutions (ImageNet weights with ``pretrained=true``, downloaded by torchvision), global average pooling to
256 features, then FC 256-8-8-classes. 2,471,842 parameters for 2 classes, as the paper states."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class AlexNetSmallHead(nn.Module):
    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (8, 8), pretrained: bool = False
    ):
        super().__init__()
        from torchvision.models import AlexNet_Weights, alexnet

        base = alexnet(weights=AlexNet_Weights.IMAGENET1K_V1 if pretrained else None)
        self.features = nn.Sequential(*base.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        layers: list[nn.Module] = []
        width = 256
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.classifier = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
