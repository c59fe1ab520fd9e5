"""Criteria score prunable tensors; they never write masks (see prunelab.pruning.select).

Each criterion is one file here plus one YAML in conf/criterion/. The contract::

    class Criterion(Protocol):
        structured: bool   # False: one score per weight
        needs_data: bool   # True: receives a few training batches
        group_kinds: tuple # structured: the group kinds it can score (prunelab.pruning.groups.KINDS); else ()
        def scores(self, model, masks, batches=None, context=None) -> dict[str, Tensor]: ...

``context`` carries run-level facts some criteria need (e.g. the round-0 initial weights, a seed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning.kinds import KINDS

ALL_KINDS = KINDS  # every group kind (prunelab.pruning.groups)


@dataclass
class ScoringContext:
    """What the run knows when a criterion is asked for scores."""

    round: int = 0
    seed: int = 0
    initial_state: dict[str, Tensor] | None = None  # round-0 initial state_dict (for magnitude increase)
    groups: list[Any] = field(default_factory=list)  # structurally prunable filter groups (structured criteria)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. num_classes


def required(context: ScoringContext | None) -> ScoringContext:
    """The context a criterion that needs run-level facts (groups, seed, round) was given."""
    if context is None:
        raise PrunelabError(
            "criterion",
            "this criterion needs a ScoringContext (groups, seed, round)",
            "call it through prunelab's PruningCallback or pass a ScoringContext",
        )
    return context


class Criterion(Protocol):
    structured: bool
    needs_data: bool
    scope: str  # "global" or "layer"
    group_kinds: tuple[str, ...]  # structured: the group kinds it can score; unstructured: ()

    def scores(
        self,
        model: nn.Module,
        masks: dict[str, Tensor],
        batches: Iterable[Any] | None = None,
        context: ScoringContext | None = None,
    ) -> dict[str, Tensor]: ...


@torch.no_grad()
def record_outputs(model: nn.Module, batches: Iterable[Any], num_samples: int, taps: dict[str, Any]) -> Tensor:
    """Run training batches through ``model`` in eval mode until ``num_samples`` examples have been seen, calling
    ``taps[name](output)`` on the output of each named module; returns the labels seen. Restores the mode."""
    hooks = [model.get_submodule(name).register_forward_hook(lambda m, i, o, f=fn: f(o)) for name, fn in taps.items()]
    labels, seen, was_training = [], 0, model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for x, y in batches:
            model(x.to(device))
            labels.append(y.cpu())
            seen += len(y)
            if seen >= num_samples:
                break
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return torch.cat(labels)[:num_samples]
