"""Wide ResNets for 32x32 inputs (Zagoruyko & Komodakis 2016): WRN-d-k, pre-activation basic blocks, widths
16k/32k/64k, 1x1 projection shortcuts where the shape changes. WRN-28-10 has 36.5M parameters."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional


class WideBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.shortcut = None if (stride == 1 and c_in == c_out) else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = functional.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(functional.relu(self.bn2(out))))
        return out + skip


class WideResNet(nn.Module):
    def __init__(
        self, input_shape: Sequence[int], num_classes: int, depth: int = 28, widen: int = 10, dropout: float = 0.0
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth {depth}: must be 6n+4 (16, 22, 28, 40)")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, 1, 1, bias=False)
        blocks, c = [], widths[0]
        for stage in range(3):
            for i in range(n):
                blocks.append(WideBlock(c, widths[stage + 1], 2 if (stage > 0 and i == 0) else 1, dropout))
                c = widths[stage + 1]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = functional.relu(self.bn(self.blocks(self.conv1(x))))
        return self.classifier(functional.adaptive_avg_pool2d(out, 1).flatten(1))
