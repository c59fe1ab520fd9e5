"""Magnitude increase (Zhou et al. 2019, "Deconstructing lottery tickets"; the criterion of Entezari & Saukh 2020):
score = |w_trained| - |w_init|, where w_init is the round-0 initial value. Weights that grew least are pruned.

Entezari & Saukh prune the same share of every layer (``scope: layer``) and prune biases too: add ``*.bias`` to
``prune.include`` for that. The initial weights come from the run's ``rewind/init.pt`` snapshot.
"""

from __future__ import annotations

from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ScoringContext


class MagnitudeIncrease:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = False

    def __init__(self, scope: str = "layer"):
        self.scope = scope

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        init = context.initial_state if context else None
        if init is None:
            raise PrunelabError(
                "criterion",
                "magnitude_increase needs the round-0 initial weights",
                "run it through prunelab (it saves rewind/init.pt)",
            )
        out = {}
        for name in masks:
            w = masking.effective(model, name).detach()
            out[name] = w.abs() - init[masking.original_key(name)].to(w.device, w.dtype).abs()
        return out
