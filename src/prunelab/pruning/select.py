"""Scores -> masks: the only path from a criterion's scores to new masks.

``select`` never knows which criterion produced the scores. It keeps every already-pruned entry pruned (its
score is forced to -inf), prunes the lowest-scored remaining entries until the target sparsity is reached, and
breaks ties deterministically by position (a stable sort). Higher score = more important = kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from prunelab.errors import PrunelabError
from prunelab.pruning.allocation import capped_lowest

SCOPES = ("global", "layer")


def _check(scores: Mapping[str, Tensor], masks: Mapping[str, Tensor], target: float) -> None:
    if not 0.0 <= target < 1.0:
        raise PrunelabError("schedule", f"target sparsity {target} is outside [0, 1)", "use a rate in [0, 1)")
    for name, s in scores.items():
        if name not in masks:
            raise KeyError(f"scores for {name!r}, which has no mask")
        if s.shape != masks[name].shape:
            raise ValueError(f"scores for {name} have shape {tuple(s.shape)}, mask {tuple(masks[name].shape)}")
        if torch.isnan(s).any():
            raise PrunelabError("criterion", f"scores for {name} contain NaN", "check the criterion's inputs")


def _prune_lowest(score: Tensor, mask: Tensor, n_prune: int) -> Tensor:
    """Flat mask with the ``n_prune`` lowest scores set to 0; pruned entries rank first (score -inf)."""
    flat = torch.where(mask.reshape(-1) > 0, score.reshape(-1).double(), float("-inf"))
    already = int((mask == 0).sum())
    n_prune = max(n_prune, already)  # never revive
    order = torch.argsort(flat, stable=True)
    new = torch.ones_like(flat, dtype=mask.dtype)
    new[order[:n_prune]] = 0
    return new


def select(
    scores: Mapping[str, Tensor],
    masks: Mapping[str, Tensor],
    target_sparsity: float,
    scope: str = "global",
    max_share: float | None = None,
) -> dict[str, Tensor]:
    """New masks reaching ``target_sparsity`` over the scored tensors.

    ``scope='global'`` ranks all scored entries together (the target is hit to within one element overall);
    ``scope='layer'`` prunes the same share of every tensor (each within one element). Tensors without scores keep
    their masks. A target below the current sparsity is an error (pruned weights are never revived). A global
    ranking never prunes more than ``max_share`` of a tensor (``prune.max_layer_sparsity``).
    """
    if scope not in SCOPES:
        raise PrunelabError("criterion.scope", f"unknown scope {scope!r}", f"use one of {', '.join(SCOPES)}")
    _check(scores, masks, target_sparsity)
    names = list(scores)
    groups = [[n] for n in names] if scope == "layer" else [names]
    for group in groups:
        total = sum(masks[n].numel() for n in group)
        pruned = sum(int((masks[n] == 0).sum()) for n in group)
        if pruned > math.ceil(target_sparsity * total - 1e-9):
            raise PrunelabError(
                "schedule",
                f"target sparsity {target_sparsity:.4f} is below the current {pruned / total:.4f}",
                "schedules must not decrease sparsity",
            )
    total = sum(masks[n].numel() for n in names)
    out = {n: m.clone() for n, m in masks.items()}
    if scope == "layer":
        for n in names:
            k = round(target_sparsity * masks[n].numel())
            out[n] = _prune_lowest(scores[n], masks[n], k).reshape(masks[n].shape)
        return out
    flat_scores = torch.cat([scores[n].reshape(-1).double().cpu() for n in names])
    flat_masks = torch.cat([masks[n].reshape(-1).cpu() for n in names])
    n_prune = round(target_sparsity * total)
    if max_share is None:
        new = _prune_lowest(flat_scores, flat_masks, n_prune)
    else:
        new = _capped(scores, masks, flat_scores, flat_masks, n_prune, max_share)
    offset = 0
    for n in names:
        size = masks[n].numel()
        out[n] = new[offset : offset + size].reshape(masks[n].shape).to(masks[n].device, masks[n].dtype)
        offset += size
    return out


def _capped(scores, masks, flat_scores, flat_masks, n_prune: int, max_share: float) -> Tensor:
    """The flat global selection with at most ``max_share`` of each tensor pruned (already-pruned entries stay)."""
    names = list(scores)
    ids = torch.cat([torch.full((masks[n].numel(),), i) for i, n in enumerate(names)])
    allowed = torch.tensor(
        [max(math.floor(max_share * masks[n].numel() + 1e-9), int((masks[n] == 0).sum())) for n in names]
    )
    flat = torch.where(flat_masks > 0, flat_scores, float("-inf"))
    new = torch.ones_like(flat_masks)
    new[capped_lowest(flat, ids, allowed, max(n_prune, int((flat_masks == 0).sum())))] = 0
    return new
