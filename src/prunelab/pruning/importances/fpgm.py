"""FPGM: filter pruning via geometric median (He et al., CVPR 2019, "Filter Pruning via Geometric Median for Deep
Convolutional Neural Networks Acceleration").

A unit whose weight vector lies near the geometric median of its layer's units is the one the others can best
replace, so the score of unit i is its summed Euclidean distance to the layer's other alive units,
``sum_j ||w_i - w_j||_2`` (the paper's approximation of the geometric median); the lowest-scored go first. A
residual group's units are the producers' weights side by side. Torch-Pruning ships the same importance as
``FPGMImportance``; this is prunelab's own implementation from the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def fpgm(model: nn.Module, group, p: float = 2.0) -> Tensor:
    w = group.flat().float()
    alive = group.alive
    dist = torch.cdist(w[alive].unsqueeze(0), w.unsqueeze(0), p=p).squeeze(0)  # (alive, units)
    return dist.sum(0)  # dead units' scores are ignored by the selection
