"""PruningCallback: masks, criteria, select, schedules and rewinding for one round.

One fit = one round. Between rounds the runner calls :meth:`PruningCallback.prune_round` before the fit, in plain
sight (``prunelab.runner.round.run_round``: select masks -> rewind -> fit -> evaluate -> record): it scores the
weights the previous round kept, selects masks reaching the schedule's target, installs them and rewinds the
survivors. A round resumed from its last checkpoint is not pruned again (the checkpoint holds its masks and
weights). As a Lightning callback it does only what must happen inside a fit: in-fit (gradual) schedules prune on
their steps, progressive rounds freeze the later layers, round 0 saves the step-k rewind snapshot, and under DDP
every rank checks that it holds the same masks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import lightning.pytorch as pl
import torch
from torch import nn

from prunelab.pruning import distributed, units
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning.allocation import Allocation, layer_target, normalized
from prunelab.pruning.budget import Budget, cost, search
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.select import select

log = logging.getLogger(__name__)


class PruningCallback(pl.Callback):
    def __init__(
        self,
        criterion: Any,
        schedule: Any,
        rewind: rewinding.Rewind,
        round_: int,
        snapshots: rewinding.Snapshots,
        seed: int = 0,
        batches: Callable[[], Iterable[Any]] | None = None,
        groups: list | None = None,
        extra: dict | None = None,
        min_filters: int = 1,
        allocation: Allocation | None = None,
        budget: Budget | None = None,
        input_shape: Any = None,
    ):
        self.criterion, self.schedule, self.rewind = criterion, schedule, rewind
        self.round, self.snapshots, self.seed, self.batches = round_, snapshots, seed, batches
        self.groups, self.extra, self.min_filters = list(groups or []), dict(extra or {}), min_filters
        self.allocation = allocation or Allocation()
        self.budget, self.input_shape = budget, input_shape  # budget.target: search the rate that meets a cost
        self.last_prune: dict[str, float] = {}
        self._last_update_step = -1
        self._init_cache = None
        self.frozen: list[nn.Module] = []

    # -- between rounds ----------------------------------------------------------------------------------------
    @property
    def due(self) -> bool:
        """Whether this round prunes before its fit: every round after 0, and round 0 of a schedule that prunes at
        initialisation; in-fit schedules prune on their own steps instead."""
        return not (self.schedule.in_fit or (self.round == 0 and self.schedule.sparsity_at(0) == 0))

    def prune_round(self, model: nn.Module) -> dict[str, float]:
        """This round's masks, selected and installed, and the survivors rewound (nothing where not :attr:`due`)."""
        return self.prune(model) if self.due else {}

    # -- inside a fit -----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = cast(nn.Module, pl_module.model)
        distributed.check_identical(masking.get_masks(model))  # DDP: every rank holds the same masks
        layer = self.schedule.layer_at(self.round)
        if self.schedule.progressive and self.schedule.freeze and layer is not None:
            self.frozen = frozen_after(model, layer)
            for module in self.frozen:
                module.requires_grad_(False)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for module in self.frozen:  # frozen BatchNorms keep their running statistics
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        self._gradual_update(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for module in self.frozen:
            module.requires_grad_(True)
        self.frozen = []

    def _select_layer(self, score, alive):
        """Progressive schedules: the kernels of one layer to keep (by rate or by threshold)."""
        if self.schedule.threshold is None:
            return units.select_units({"l": score}, {"l": alive}, self.schedule.rate, self.min_filters)["l"]
        keep = alive & (score.to(alive.device) >= self.schedule.threshold)
        if int(keep.sum()) < self.min_filters:  # never empty a layer: keep the best-scored kernels
            best = torch.argsort(torch.where(alive, score.to(alive.device), -torch.inf), descending=True, stable=True)
            keep[best[: self.min_filters]] = True
        return keep

    # -- inside a fit (gradual schedules) -------------------------------------------------------------------------
    def _gradual_update(self, trainer, pl_module) -> None:
        step = trainer.global_step
        if not self.schedule.in_fit or not self.schedule.update_at(step):
            return
        if self._last_update_step == step:  # gradient accumulation: several batches share a step
            return
        self._last_update_step = step
        self.prune(pl_module.model, target=self.schedule.sparsity_at_step(step), rewind=False)
        for opt in trainer.optimizers:  # momentum / Adam moments of newly pruned entries must not revive them
            masking.mask_optimizer_state(opt, pl_module.model)

    def prune(self, model, target: float | None = None, rewind: bool = True) -> dict[str, float]:
        """Score, select, mask and rewind ``model`` for this round's target sparsity."""
        target = self.schedule.sparsity_at(self.round) if target is None else target
        current = masking.get_masks(model, primary_only=True)
        extra = dict(self.extra)
        if self.schedule.progressive:
            extra["layer"] = self.schedule.layer_at(self.round)
        if self.rewind.source is not None:  # rewind.masks_from: this round's masks are the source run's
            new = self.rewind.source(self.round)
        else:
            context = ScoringContext(
                round=self.round, seed=self.seed, initial_state=self._initial_state(), groups=self.groups, extra=extra
            )
            batches = self.batches() if (self.criterion.needs_data and self.batches) else None
            scores = self.criterion.scores(model, current, batches=batches, context=context)
            if self.budget is not None:
                target, new = self._meet_budget(model, scores, current, context)
            else:
                new = self.select_masks(model, scores, current, target, context)
        primary = {n: new[n] for n in current}  # the rewind may change the selection (shuffle: a random subnetwork)
        new = {**new, **self.rewind.after_selection(primary, self.seed, self.round)}
        masking.set_masks(model, new)
        distributed.check_identical(masking.get_masks(model))  # DDP: every rank holds the same masks
        if rewind:
            self._rewind(model)
        stats = masking.sparsity_stats(model)
        self.last_prune = {"target": target, "sparsity": stats["sparsity"]}
        log.debug("round %d: pruned to sparsity %.4f (target %.4f)", self.round, stats["sparsity"], target)
        return self.last_prune

    def _meet_budget(self, model, scores, current, context: ScoringContext) -> tuple[float, dict[str, torch.Tensor]]:
        """The target (weight or filter share) whose masks bring the model's cost nearest this round's goal."""
        assert self.budget is not None
        dense_round0 = self.schedule.sparsity_at(0) == 0
        k, rounds = (
            (self.round, self.schedule.num_rounds - 1) if dense_round0 else (self.round + 1, self.schedule.num_rounds)
        )
        goal = self.budget.goal(k, rounds)
        structured = self.criterion.structured
        groups = self.groups if structured else None
        if structured:
            alive = units.alive_units(model, self.groups)
            low = 1.0 - sum(int(a.sum()) for a in alive.values()) / sum(len(a) for a in alive.values())
        else:
            low = masking.sparsity_stats(model)["sparsity"]
        target, new, achieved = search(
            model,
            lambda s: self.select_masks(model, scores, current, s, context),
            lambda m: cost(m, self.budget.target, self.input_shape, groups),  # type: ignore[union-attr]
            low,
            goal,
            self.budget.tolerance,
        )
        log.info(
            "round %d: %s %.4f of dense (goal %.4f) at target %.4f",
            self.round,
            self.budget.target,
            achieved,
            goal,
            target,
        )
        return target, new

    def select_masks(self, model, scores, current, target: float, context: ScoringContext) -> dict[str, torch.Tensor]:
        """The one path from scores to masks: one layer's kernels (progressive schedules), whole filter groups
        (structured criteria) or single weights (unstructured criteria)."""
        if self.schedule.progressive:
            alive = units.alive_units(model, self.groups)
            layer = context.extra["layer"]
            alive[layer] = self._select_layer(scores[layer], alive[layer])
            return units.group_masks(model, self.groups, alive)
        if self.criterion.structured:
            alive = units.alive_units(model, self.groups)
            return units.group_masks(model, self.groups, self._allocate_filters(scores, alive, target))
        return self._allocate_weights(scores, current, target)

    def _allocate_filters(self, scores, alive, target: float) -> dict[str, torch.Tensor]:
        """Filters to keep: layers with their own rate (prune.ratios) alone, the rest by the criterion's scope."""
        alloc, out = self.allocation, dict(alive)
        own, rest = alloc.split(list(alive))
        for name, rate in own.items():
            share = layer_target(target, rate, self.schedule.step_share)
            out[name] = units.select_units({name: scores[name]}, {name: alive[name]}, share, self.min_filters)[name]
        if rest:
            part = {n: scores[n] for n in rest}
            if self.criterion.scope == "global":
                part = normalized(part, alive, alloc.normalize)
            kept = units.select_units(
                part,
                {n: alive[n] for n in rest},
                target,
                self.min_filters,
                scope=self.criterion.scope,
                max_share=alloc.max_layer_sparsity,
            )
            out.update(kept)
        if alloc.round_to is not None:
            out = units.round_kept(out, alive, scores, alloc.round_to)
        return out

    def _allocate_weights(self, scores, current, target: float) -> dict[str, torch.Tensor]:
        """Unstructured masks: tensors with their own rate (prune.ratios) alone, the rest by the criterion's scope."""
        alloc = self.allocation
        if alloc.default:
            return select(scores, current, target, scope=self.criterion.scope)
        own, rest = alloc.split(list(scores))
        out = dict(current)
        for name, rate in own.items():
            share = layer_target(target, rate, self.schedule.step_share)
            out[name] = select({name: scores[name]}, current, share, scope="layer")[name]
        if rest:
            part = {n: scores[n] for n in rest}
            alive = {n: current[n] > 0 for n in rest}
            global_ = self.criterion.scope == "global"
            cap = alloc.max_layer_sparsity if global_ else None
            new = select(
                normalized(part, alive, alloc.normalize) if global_ else part,
                current,
                target,
                scope=self.criterion.scope,
                max_share=cap,
            )
            out.update({n: new[n] for n in rest})
        return out

    def _initial_state(self):
        if self._init_cache is None and self.snapshots.exists("init.pt"):
            self._init_cache = self.snapshots.load("init.pt")  # read once per round, not per update
        return self._init_cache

    def _rewind(self, model) -> None:
        self.rewind.apply(model, self.snapshots)

    # -- round 0: the step-k rewind point ----------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.round != 0 or self.rewind.snapshot_step is None or trainer.global_step != self.rewind.snapshot_step:
            return
        name = str(self.rewind.snapshot_name())
        if not self.snapshots.exists(name):
            self.snapshots.save(name, rewinding.snapshot(pl_module.model))


def frozen_after(model: nn.Module, layer: str) -> list[nn.Module]:
    """Modules with weights after conv ``layer``'s successor conv (and that conv's BatchNorm), in module order:
    what a progressive round keeps frozen."""
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    names = [n for n, _ in mods]
    idx = names.index(layer)
    nxt = next((k for k in range(idx + 1, len(mods)) if isinstance(mods[k][1], nn.Conv2d)), idx)
    end = nxt + 1 if nxt + 1 < len(mods) and isinstance(mods[nxt + 1][1], nn.BatchNorm2d) else nxt
    return [m for _, m in mods[end + 1 :]]
