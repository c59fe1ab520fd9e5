"""Rewinding: what the surviving weights restart from after pruning.

``none`` fine-tunes from the pruned trained weights; ``init`` restores the round-0 initial weights (lottery
ticket, Frankle & Carbin 2019); ``step`` restores the weights after ``step`` optimizer steps of round 0 (Frankle
et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"). Pruned entries stay exactly 0.

Frankle & Carbin's two controls: ``reinit`` keeps the masks and restores a *fresh* random initialisation (the same
architecture initialised with seed ``seed + REINIT_SEED_OFFSET``, saved once as ``rewind/reinit.pt``); ``shuffle``
permutes each layer's mask at random (seeded by run seed and round: the same sparsity per layer, a random
subnetwork) and restores the round-0 initial weights. ``shuffle`` is for unstructured criteria.
With ``masks_from`` (:mod:`prunelab.runs.masks_from`) each round installs another run's masks of that round instead
of scoring its own weights: ``rewind=reinit rewind.masks_from=<ticket run>`` is the paper's reinit control, the
ticket's masks at every level trained from a fresh initialisation.
Snapshots cover every parameter and buffer (BatchNorm statistics included) except the masks themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking

KINDS = ("none", "init", "step", "reinit", "shuffle")
REINIT_SEED_OFFSET = 1_000_003  # the reinit control's initialisation seed: run seed + this


class Rewind:
    """``budget`` (step rewinding): ``continue`` trains each later round for round 0's remaining ``T - step`` steps
    with the LR schedule resumed at ``step`` (Frankle et al. 2020; OpenLTH); ``restart`` gives each round the full
    budget and a fresh schedule."""

    def __init__(
        self,
        kind: str = "none",
        step: int = 0,
        budget: str = "restart",
        masks_from: str | None = None,
        masks_sha1: str | None = None,
    ):
        if kind not in KINDS:
            raise PrunelabError("rewind.kind", f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
        if kind == "step" and int(step) < 1:
            raise PrunelabError("rewind.step", f"step {step} must be >= 1", "or use rewind=init")
        if budget not in ("continue", "restart"):
            raise PrunelabError("rewind.budget", f"unknown budget {budget!r}", "use continue or restart")
        if masks_from and kind not in ("init", "reinit"):
            raise PrunelabError(
                "rewind.masks_from",
                f"rewind={kind} does not train another run's masks",
                "use rewind=reinit (the control) or rewind=init with masks_from",
            )
        self.kind, self.step, self.budget = kind, int(step), budget
        self.masks_from, self.masks_sha1 = masks_from, masks_sha1
        # rewind.masks_from: round -> the source run's masks of that round (bound by the runner once it has
        # resolved and checked the source folder)
        self.source: Callable[[int], dict[str, Tensor]] | None = None

    # -- what this rewind does: every call site asks the object (a rewind of your own overrides these) ---------
    def snapshot_name(self) -> str | None:
        """The snapshot (in the run's :class:`Snapshots`) the survivors restart from after pruning; None: they
        keep their trained values."""
        names = {
            "none": None,
            "init": "init.pt",
            "step": f"step{self.step}.pt",
            "reinit": "reinit.pt",
            "shuffle": "init.pt",
        }
        return names[self.kind]

    @property
    def snapshot_step(self) -> int | None:
        """The optimizer step of round 0 whose weights are saved during its fit (``step<k>.pt``), if any."""
        return self.step if self.kind == "step" else None

    @property
    def fresh_init(self) -> bool:
        """Whether the run saves a fresh random initialisation (``reinit.pt``) before training."""
        return self.kind == "reinit"

    @property
    def continues_budget(self) -> bool:
        """Whether later rounds train what round 0 had left after the rewind step (``budget: continue``)."""
        return self.kind == "step" and self.budget == "continue"

    def after_selection(self, masks: dict[str, Tensor], seed: int, round_: int) -> dict[str, Tensor]:
        """The masks a round installs, given the ones selected (``shuffle``: each layer's permuted)."""
        return shuffled(masks, seed, round_) if self.kind == "shuffle" else masks

    def apply(self, model: nn.Module, snapshots: Snapshots) -> None:
        """Restart the survivors of a freshly pruned ``model`` (pruned entries stay 0)."""
        name = self.snapshot_name()
        if name is not None:
            restore(model, snapshots.load(name))

    def check(self, schedule: Any, criterion: Any = None) -> None:
        """Refuse the schedules and criteria this rewind cannot work with, on one line naming the key (without a
        criterion: the checks that need none, as the CLI makes them before any job)."""
        if self.snapshot_step is not None and getattr(schedule, "at_init", False):
            raise PrunelabError(
                "rewind",
                "rewind=step restores the weights after step k of round 0's training; "
                "schedule.at_init=true prunes before any training, so there are none",
                "use rewind=init (or none) with schedule.at_init=true",
            )
        if schedule.progressive and self.snapshot_name() is not None:
            raise PrunelabError(
                "rewind",
                f"rewind={self.kind} would reset the layers a progressive round freezes",
                "use rewind=none (progressive retraining continues from the trained weights)",
            )
        if self.kind in ("reinit", "shuffle") and schedule.in_fit:
            raise PrunelabError(
                "rewind",
                f"rewind={self.kind} acts between rounds; the {type(schedule).__name__} schedule prunes inside a fit",
                "use schedule=iterative or one_shot",
            )
        if self.kind == "shuffle" and criterion is not None and criterion.structured:
            raise PrunelabError(
                "rewind",
                "rewind=shuffle permutes single weights; the criterion prunes whole filters",
                "use rewind=reinit, or an unstructured criterion",
            )


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A copy of every parameter and buffer except masks."""
    skip = masking.mask_state_keys(model)
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items() if k not in skip}


class Snapshots(Protocol):
    """Where a run keeps its weight snapshots (``init.pt``, ``reinit.pt``, ``step<k>.pt``); the run folder's
    :class:`prunelab.runs.files.SnapshotFolder` is one. Pruning never reads or writes files itself."""

    def exists(self, name: str) -> bool: ...

    def load(self, name: str) -> dict[str, Tensor]: ...

    def save(self, name: str, state: dict[str, Tensor]) -> None: ...


@torch.no_grad()
def restore(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load ``state`` (no masks inside) and re-zero the pruned entries."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in masking.mask_state_keys(model)]
    if missing or unexpected:
        raise PrunelabError(
            "rewind",
            f"snapshot does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "delete the run folder or its rewind/ snapshots",
        )
    masking.apply_masks_to_weights(model)


def dense_state_as_masked(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """A plain model's state_dict (``fc.weight``) with the keys a masked ``model`` stores (``...original``)."""
    own = model.state_dict().keys()
    return {masking.stored_key(k, own): v.detach().clone().cpu() for k, v in state.items()}


@torch.no_grad()
def shuffled(masks: dict[str, Tensor], seed: int, round_: int) -> dict[str, Tensor]:
    """Each mask's entries permuted at random within its tensor (the same count kept per layer)."""
    gen = torch.Generator().manual_seed((REINIT_SEED_OFFSET * 7 + 10_007 * seed + round_) % 2**64)
    out = {}
    for name, m in masks.items():
        flat = m.reshape(-1)
        out[name] = flat[torch.randperm(flat.numel(), generator=gen).to(flat.device)].reshape(m.shape).clone()
    return out
