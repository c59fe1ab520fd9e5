"""Random pruning: i.i.d. uniform scores, reproducible from the run seed and the round (a sanity baseline)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunelab.pruning.criteria import ScoringContext


class Random:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = False

    def __init__(self, scope: str = "global", seed_offset: int = 0):
        self.scope = scope
        self.seed_offset = seed_offset

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        ctx = context or ScoringContext()
        gen = torch.Generator().manual_seed((10_007 * ctx.seed + 101 * ctx.round + self.seed_offset) % 2**64)
        return {n: torch.rand(m.shape, generator=gen) for n, m in masks.items()}
