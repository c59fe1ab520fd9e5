"""Rewinding: what the surviving weights restart from after pruning.

``none`` fine-tunes from the pruned trained weights; ``init`` restores the round-0 initial weights (lottery
ticket, Frankle & Carbin 2019); ``step`` restores the weights after ``step`` optimizer steps of round 0 (Frankle
et al. 2020, "Linear mode connectivity and the lottery ticket hypothesis"). Pruned entries stay exactly 0.
Snapshots cover every parameter and buffer (BatchNorm statistics included) except the masks themselves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking

KINDS = ("none", "init", "step")


class Rewind:
    def __init__(self, kind: str = "none", step: int = 0):
        if kind not in KINDS:
            raise PrunelabError("rewind.kind", f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
        if kind == "step" and int(step) < 1:
            raise PrunelabError("rewind.step", f"step {step} must be >= 1", "or use rewind=init")
        self.kind, self.step = kind, int(step)

    def snapshot_name(self) -> str | None:
        return {"none": None, "init": "init.pt", "step": f"step{self.step}.pt"}[self.kind]


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A copy of every parameter and buffer except masks."""
    skip = masking.mask_state_keys(model)
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items() if k not in skip}


def save_snapshot(model: nn.Module, path: Path) -> None:
    from prunelab.results import atomic_save_torch

    atomic_save_torch(snapshot(model), path)


def load_snapshot(path: Path) -> dict[str, Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise PrunelabError(
            "rewind",
            f"cannot read rewind snapshot {path} ({type(exc).__name__}: truncated or not a snapshot)",
            "delete that file: prunelab rewrites init.pt from the seed",
        ) from exc


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
