"""Matched budgets (``budget.target``, ``budget.value``; issue 29, item 6): prune to a cost, not to a rate.

Criteria are only comparable at the same cost (Blalock et al. 2020, "What is the state of neural network
pruning?"). A rate does not fix the cost: a global ranking spends its sparsity on cheap or expensive layers, and a
structured criterion that removes a filter also removes its consumers' inputs. With a budget, each pruning round
searches the sparsity target by bisection, with the round's own scores, until the model's cost is within
``tolerance`` of the round's goal; the final round's goal is ``value``:

- ``params``: unstructured criteria count non-zero parameters (masked entries removed) over all parameters;
  structured criteria count the parameters of the physically compacted model (removed filters, their BatchNorm
  channels and their consumers' input channels gone) over the dense model's;
- ``flops``: the same for multiply-accumulate FLOPs (:func:`prunelab.pruning.cost.count_flops`), of the masked
  model (unstructured: a theoretical count) or the compacted one (structured).

An iterative schedule's round r of R aims at ``value ** (r / R)`` (the geometric path its rate would take); a
one-shot schedule's single round aims at ``value``. Torch-Pruning's ``--target-flops`` search does the same for one
step. Schedules that prune inside a fit (gradual) or one layer at a time (progressive) are not supported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunelab.errors import PrunelabError

if TYPE_CHECKING:  # torch is imported by the functions that measure: the config check stays torch-free
    from torch import Tensor, nn

KEY = "budget"
TARGETS = ("params", "flops")


@dataclass(frozen=True)
class Budget:
    target: str
    value: float
    tolerance: float = 0.01

    @classmethod
    def from_config(cls, node: Any) -> Budget | None:
        """``budget: {target: params|flops, value: (0, 1), tolerance}``; None when ``target`` is null."""
        if not node or node.get("target") is None:
            if node and node.get("value") is not None:
                raise PrunelabError(f"{KEY}.target", "is not set but budget.value is", "add budget.target=params")
            return None
        target, value, tol = node.get("target"), node.get("value"), node.get("tolerance", 0.01)
        if target not in TARGETS:
            raise PrunelabError(f"{KEY}.target", f"{target!r} is not a cost", "use budget.target=params or flops")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise PrunelabError(
                f"{KEY}.value", f"{value!r} is not a share of the dense cost in (0, 1)", "e.g. budget.value=0.1"
            )
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise PrunelabError(f"{KEY}.tolerance", f"{tol!r} is not a share in (0, 1)", "e.g. 0.01")
        return cls(str(target), float(value), float(tol))

    def goal(self, round_: int, rounds: int) -> float:
        """The cost round ``round_`` of ``rounds`` pruning rounds aims at (a share of the dense cost)."""
        return float(self.value ** (round_ / rounds))


def cost(model: nn.Module, target: str, input_shape: Any, groups: list | None = None) -> float:
    """The model's cost as a share of the dense model's: masked (unstructured) or compacted (with ``groups``)."""
    from prunelab.pruning import masks as masking
    from prunelab.pruning.cost import count_flops

    flops = count_flops(model, input_shape)
    if groups:
        from prunelab.pruning.units import compact

        small = compact(model, groups)
        if target == "params":
            return sum(p.numel() for p in small.parameters()) / masking.count_parameters(model)["parameters"]
        return count_flops(small, input_shape)["flops"] / flops["flops_dense"]
    if target == "params":
        counts = masking.count_parameters(model)
        return counts["nonzero_parameters"] / counts["parameters"]
    return flops["flops_ratio"]


def search(
    model: nn.Module,
    propose: Callable[[float], Mapping[str, Tensor]],
    measure: Callable[[nn.Module], float],
    low: float,
    goal: float,
    tolerance: float,
    steps: int = 30,
) -> tuple[float, dict[str, Tensor], float]:
    """(sparsity target, masks, cost) whose cost is nearest ``goal``: bisection on the target in [low, 1) with the
    masks ``propose`` selects for each target installed on ``model`` and measured. Leaves ``model``'s masks as
    they were."""
    from prunelab.pruning import masks as masking

    before = masking.get_masks(model)
    best: tuple[float, dict[str, Tensor], float] | None = None
    lo, hi = low, 1.0 - 1e-6
    try:
        for _ in range(steps):
            mid = (lo + hi) / 2
            masking.set_masks(model, before, zero_weights=False)  # each proposal starts from the round's masks
            masks = dict(propose(mid))
            masking.set_masks(model, masks, zero_weights=False)  # a trial: the weights stay as they are
            achieved = measure(model)
            if best is None or abs(achieved - goal) < abs(best[2] - goal):
                best = (mid, masks, achieved)
            if abs(achieved - goal) <= tolerance / 4:
                break
            lo, hi = (mid, hi) if achieved > goal else (lo, mid)
    finally:
        masking.set_masks(model, before, zero_weights=False)
    assert best is not None
    return best


def check_reachable(model: nn.Module, budget: Budget, input_shape: Any, groups: list, min_filters: int) -> None:
    """Refuse, before any training, a value below the cheapest model the criterion can leave (every prunable weight
    pruned; structured: every group down to ``min_filters`` filters)."""
    import torch

    from prunelab.pruning import masks as masking

    probe = copy.deepcopy(model)
    masks = masking.get_masks(probe)
    if groups:
        from prunelab.pruning.units import alive_units, group_masks, select_units

        alive = alive_units(probe, groups)
        scores = {k: torch.ones_like(v, dtype=torch.float32) for k, v in alive.items()}
        kept = select_units(scores, alive, 1.0 - 1e-6, min_filters, scope="layer")
        masking.set_masks(probe, group_masks(probe, groups, kept), zero_weights=False)
    else:
        masking.set_masks(probe, {n: torch.zeros_like(m) for n, m in masks.items()}, zero_weights=False)
    floor = cost(probe, budget.target, input_shape, groups)
    if floor > budget.value + budget.tolerance:
        raise PrunelabError(
            f"{KEY}.value",
            f"no rate reaches {budget.target} {budget.value:g}: pruning everything the criterion may prune leaves "
            f"{floor:.4f} of the dense {budget.target}",
            f"use budget.value >= {floor:.3f}, or make more tensors prunable (prune.include / prune.exclude)",
        )
