"""Losses. Every loss is an ``nn.Module`` called as ``loss(logits, targets)``.

A loss may define ``set_round(round_)`` to change with the pruning round (class weights that change by round).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CrossEntropy(nn.Module):
    """Plain cross-entropy (optionally label-smoothed)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
