"""VGG-11/16 with BatchNorm for 32x32 inputs (Simonyan & Zisserman 2015; the CIFAR variant of Liu et al. 2019:
the 512-d feature vector goes to a single linear classifier)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 16):
        super().__init__()
        key = f"vgg{depth}"
        if key not in CONFIGS:
            raise ValueError(f"VGG depth {depth}: use one of 11, 16")
        layers: list[nn.Module] = []
        c = input_shape[0]
        for v in CONFIGS[key]:
            if not isinstance(v, int):  # "M": max pooling
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
