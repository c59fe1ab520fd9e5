"""Simple structured criteria: one score per filter of each prunable conv (see ``prunelab.pruning.groups``).

- ``L1Filter``: the L1 norm of each filter's weights (Li et al. 2017, "Pruning filters for efficient ConvNets");
  for a residual group, summed over the stream's producers.
- ``RandomFilter``: uniform random scores, reproducible from the seed and round (the structured sanity baseline).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ALL_KINDS, ScoringContext, required


def check_scope(scope: str) -> str:
    """``global``: one ranking over all prunable filters; ``layer``: the same share of every layer's filters."""
    if scope not in ("global", "layer"):
        raise PrunelabError("criterion.scope", f"unknown scope {scope!r}", "use global or layer")
    return scope


class L1Filter:
    structured = True
    needs_data = False
    group_kinds = ALL_KINDS

    def __init__(self, scope: str = "global"):
        self.scope = check_scope(scope)

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        return {
            g.key: sum(masking.effective(model, f"{p}.weight").detach().abs().flatten(1).sum(1) for p in g.producers)
            for g in context.groups
        }


class RandomFilter:
    structured = True
    needs_data = False
    group_kinds = ALL_KINDS
    scope = "global"

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        gen = torch.Generator().manual_seed((10_007 * context.seed + 101 * context.round + 7) % 2**64)
        return {g.key: torch.rand(g.out_channels, generator=gen) for g in context.groups}
