"""How a pruning target is spread over layers: a choice, not an accident of score scale.

- ``prune.normalize`` (``none`` | ``mean`` | ``max`` | ``l2``): before a *global* ranking, each layer's scores (each
  group's, for structured criteria) are divided by their mean, max or L2 norm over the units still alive, as
  Torch-Pruning's importance normalisers do. ``none`` ranks raw scores (a layer with large scores keeps everything).
- ``prune.ratios`` (``{fnmatch pattern: r}``): layers whose name matches are pruned on their own, at rate r per
  schedule step: at schedule target T the layer's sparsity is ``1 - (1 - r) ** m`` with
  ``m = ln(1 - T) / ln(1 - R)``, R the schedule's step (``schedule.rate`` of an iterative schedule, the final
  sparsity of a one-shot or gradual one). For an iterative schedule m is the round number, so r is the layer's
  per-round rate (Frankle & Carbin's 20% hidden / 10% output); for a one-shot schedule r is the layer's share.
  The other layers share the target T among themselves. The first matching pattern wins.
- ``prune.max_layer_sparsity``: no layer (group) is pruned beyond this share by a global ranking.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from prunelab.pruning.kinds import check_allocation


@dataclass
class Allocation:
    normalize: str = "none"
    ratios: dict[str, float] = field(default_factory=dict)
    max_layer_sparsity: float | None = None
    round_to: int | None = None  # structured: kept units per group rounded up to a multiple of this

    @classmethod
    def from_config(cls, prune: Any, structured: bool = False) -> Allocation:
        """``prune.normalize=auto`` is ``mean`` for structured criteria (scores of filters, neurons and channels are
        on different scales) and ``none`` for unstructured ones (one magnitude scale across layers)."""
        check_allocation(prune)
        cap, step = prune.get("max_layer_sparsity"), prune.get("round_to")
        ratios = {str(k): float(v) for k, v in dict(prune.get("ratios") or {}).items()}
        how = str(prune.get("normalize", "none"))
        how = ("mean" if structured else "none") if how == "auto" else how
        return cls(how, ratios, None if cap is None else float(cap), None if step is None else int(step))

    @property
    def default(self) -> bool:
        return (
            self.normalize == "none" and not self.ratios and self.max_layer_sparsity is None and self.round_to is None
        )

    def rate_of(self, name: str) -> float | None:
        """The per-step rate of the first pattern matching ``name`` (a tensor or group name)."""
        return next((r for p, r in self.ratios.items() if fnmatch.fnmatchcase(name, p)), None)

    def split(self, names: list[str]) -> tuple[dict[str, float], list[str]]:
        """(layers with their own rate, the others)."""
        own = {n: r for n in names if (r := self.rate_of(n)) is not None}
        return own, [n for n in names if n not in own]


def layer_target(target: float, rate: float, step: float) -> float:
    """A layer's sparsity at schedule target ``target`` when it is pruned at ``rate`` per schedule step ``step``."""
    if target <= 0.0 or rate <= 0.0:
        return 0.0
    if step <= 0.0:
        return rate
    steps = math.log1p(-target) / math.log1p(-step)
    return 1.0 - (1.0 - rate) ** steps


def normalized(scores: Mapping[str, Tensor], alive: Mapping[str, Tensor], how: str) -> dict[str, Tensor]:
    """Each layer's scores divided by their mean / max / L2 norm over the entries still alive (``none``: as is)."""
    if how == "none":
        return dict(scores)
    out = {}
    for name, s in scores.items():
        live = s.detach().double()[alive[name].to(s.device).bool()]
        if live.numel() == 0:
            out[name] = s
            continue
        stat = {"mean": live.mean(), "max": live.max(), "l2": live.norm()}[how]
        out[name] = s / stat.to(s.dtype) if float(stat) > 0 else s
    return out


def capped_lowest(flat: Tensor, ids: Tensor, allowed: Tensor, n_prune: int) -> Tensor:
    """Indices of the ``n_prune`` lowest entries of ``flat`` (already-pruned ones are -inf), taking at most
    ``allowed[t]`` entries from tensor ``t`` (``ids`` gives each entry's tensor)."""
    order = torch.argsort(flat, stable=True)
    owner = ids[order]
    rank = torch.empty_like(owner)
    for t in range(len(allowed)):
        here = owner == t
        rank[here] = torch.arange(int(here.sum()))
    eligible = order[rank < allowed[owner]]
    return eligible[:n_prune]
