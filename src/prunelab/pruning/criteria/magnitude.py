"""Magnitude pruning (Han et al. 2015; the lottery-ticket criterion of Frankle & Carbin 2019): score = |w|."""

from __future__ import annotations

from torch import Tensor, nn

from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ScoringContext


class Magnitude:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = False

    def __init__(self, scope: str = "global"):
        self.scope = scope

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        return {n: masking.effective(model, n).detach().abs() for n in masks}
