"""Any function ``fn(model, group) -> scores`` as a structured criterion: one Python file and one YAML.

The function gets the model and a :class:`GroupView` of one prunable group (its kind, its number of units, which
units are still alive, and the masked weights of every layer it spans) and returns one score per unit (higher =
more important; dead units' scores are ignored). prunelab does the rest: global or per-layer ranking, allocation
(``prune.normalize``, ``prune.ratios``, ``prune.max_layer_sparsity``), masks, compaction and export::

    # my_scores.py (importable: on PYTHONPATH, or a module of your package)
    def bn_gamma(model, group):
        return sum(bn.weight.detach().abs() for bn in group.norms())

    # conf/criterion/bn_gamma.yaml (or on the command line: criterion=group_score criterion.fn=my_scores.bn_gamma)
    defaults:
      - schema_group_score
    _target_: prunelab.pruning.criteria.group_score.GroupScore
    fn: my_scores.bn_gamma
    kinds: [conv, flatten]   # the group kinds it can score (default: all)

Torch-Pruning's importances take a ``torch_pruning`` dependency group (``imp(group) -> Tensor``) rather than a
model and a group; porting one means reading the layers from the view instead of from the dependency pairs
(``for name, w in group.weights()`` in place of ``for dep, idxs in group``). ``prunelab.pruning.importances``
holds two examples ported this way: FPGM (``criterion=fpgm``) and BN scale (``criterion=bn_scale``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ALL_KINDS, ScoringContext, required
from prunelab.pruning.criteria.filters import check_scope
from prunelab.pruning.kinds import check_kinds


@dataclass
class GroupView:
    """One prunable group as a score function sees it (read-only: change nothing through it)."""

    model: nn.Module
    key: str  # the group's name: its first producer
    kind: str  # conv | flatten | linear | residual (prunelab.pruning.groups)
    units: int  # filters / neurons / channels in the group
    alive: Tensor  # bool (units,): not pruned yet
    producers: list[str]  # layers whose output unit i is pruned together (a residual group has several)
    batchnorms: list[str]
    consumers: list[str]  # layers that read the units (their input columns go with them)

    def weights(self) -> list[tuple[str, Tensor]]:
        """Each producer's masked weight, detached, units first: (units, ...)."""
        return [(p, masking.effective(self.model, f"{p}.weight").detach()) for p in self.producers]

    def flat(self) -> Tensor:
        """The producers' weights side by side, one row per unit: (units, features)."""
        return torch.cat([w.flatten(1) for _, w in self.weights()], dim=1)

    def norms(self) -> list[nn.Module]:
        """The BatchNorm modules indexed by the units (empty where the group has none)."""
        return [self.model.get_submodule(n) for n in self.batchnorms]


class GroupScore:
    """A structured criterion from ``fn(model, group: GroupView, **options) -> Tensor (units,)``."""

    structured = True
    needs_data = False

    def __init__(
        self, fn: str, scope: str = "global", kinds: list[str] | None = None, options: dict[str, Any] | None = None
    ):
        module, _, attr = str(fn).rpartition(".")
        try:
            self.fn = getattr(importlib.import_module(module), attr)
            if not callable(self.fn):
                raise TypeError(f"{fn} is not callable")
        except Exception as exc:
            raise PrunelabError(
                "criterion.fn",
                f"cannot import the score function {fn!r} ({type(exc).__name__})",
                "give a dotted path to a function importable here, e.g. prunelab.pruning.importances.fpgm.fpgm",
            ) from exc
        self.name = fn
        self.scope = check_scope(scope)
        self.group_kinds = check_kinds(kinds) if kinds else ALL_KINDS
        self.options = dict(options or {})

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        out = {}
        for g in context.groups:
            alive = masks[f"{g.key}.weight"].flatten(1).any(1)
            view = GroupView(
                model, g.key, g.kind, g.out_channels, alive, list(g.producers), list(g.batchnorms), list(g.consumers)
            )
            try:
                scores = self.fn(model, view, **self.options)
            except PrunelabError:
                raise
            except Exception as exc:  # the user's function: one line naming it; the traceback is chained
                raise PrunelabError(
                    "criterion.fn",
                    f"{self.name} failed on {g.key}: {type(exc).__name__}: {exc}",
                    "fix the function: it is called as fn(model, group, **criterion.options)",
                ) from exc
            out[g.key] = self._checked(scores, g)
        return out

    def check_groups(self, model: nn.Module, groups: list) -> None:
        """Score every group once on the built model, so a function that cannot score one fails before training."""
        masks = masking.get_masks(model)
        self.scores(model, masks, context=ScoringContext(groups=groups))

    def _checked(self, scores: Any, group: Any) -> Tensor:
        if not isinstance(scores, Tensor) or tuple(scores.shape) != (group.out_channels,):
            shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            n = group.out_channels
            raise PrunelabError(
                "criterion.fn",
                f"{self.name} returned {shape} for {group.key}, not one score per unit ({n},)",
                "return a 1-D tensor, one score per unit",
            )
        scores = scores.detach().float()
        if not bool(torch.isfinite(scores).all()):
            raise PrunelabError(
                "criterion.fn",
                f"{self.name} returned non-finite scores for {group.key}",
                "return finite scores (higher = keep)",
            )
        return scores
