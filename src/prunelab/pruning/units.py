"""Structured pruning by *units* (a conv's filters, a Linear's neurons, a residual stream's channels: the members
of a :class:`~prunelab.pruning.groups.UnitGroup`): which units are alive, selecting units, expanding them to
masks, compaction.

The structured analogue of ``select``: ``select_units`` turns per-unit scores into the units to keep, as
Jordao et al.'s code does for filters: one global ranking, the number of units removed is the target share of all
prunable units (rounded to the nearest count), already-removed units stay removed, and no layer is ever emptied
(``prune.min_filters`` per layer, the config key's historic name). ``group_masks`` expands alive units to element
masks over each whole group (see ``prunelab.pruning.groups``). ``compact`` builds the physically smaller model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.groups import UnitGroup


def companion_names(groups: Sequence[UnitGroup], model: nn.Module) -> list[str]:
    """Bias and norm tensors that follow a group's units (masked as companions)."""
    names = []
    for g in groups:
        names += [f"{p}.bias" for p in g.producers if model.get_submodule(p).bias is not None]
        for bn in g.batchnorms:
            names += [f"{bn}.weight", f"{bn}.bias"]
    return names


def alive_units(model: nn.Module, groups: Sequence[UnitGroup]) -> dict[str, Tensor]:
    """Boolean (out_channels,) per group conv: a filter is alive if any of its weights is unmasked."""
    masks = masking.get_masks(model)
    return {g.key: masks[f"{g.key}.weight"].flatten(1).any(1) for g in groups}


def select_units(
    scores: Mapping[str, Tensor],
    alive: Mapping[str, Tensor],
    target: float,
    min_filters: int = 1,
    scope: str = "global",
    max_share: float | None = None,
) -> dict[str, Tensor]:
    """Alive filters after removing the lowest-scored ones until ``target`` of all filters are removed
    (``scope='global'``: one ranking over every layer) or ``target`` of each layer's filters (``'layer'``: every
    layer keeps the same share, so two criteria at the same target leave the same FLOPs). A global ranking never
    removes more than ``max_share`` of a layer (``prune.max_layer_sparsity``)."""
    if scope == "layer":
        return {n: select_units({n: scores[n]}, {n: alive[n]}, target, min_filters)[n] for n in alive}
    if scope != "global":
        raise PrunelabError("criterion.scope", f"unknown scope {scope!r}", "use global or layer")
    if not 0.0 <= target < 1.0:
        raise PrunelabError("schedule", f"target filter share {target} is outside [0, 1)", "use a rate in [0, 1)")
    names = list(alive)
    total = sum(len(alive[n]) for n in names)
    removed = sum(int((~alive[n]).sum()) for n in names)
    goal = round(target * total)
    if goal < removed:
        raise PrunelabError(
            "schedule",
            f"target {target:.4f} is below the {removed / total:.4f} already removed",
            "schedules must not decrease sparsity",
        )
    layer = torch.cat([torch.full((len(alive[n]),), i) for i, n in enumerate(names)])
    flat = torch.cat([scores[n].detach().double().cpu().flatten() for n in names])
    if torch.isnan(flat).any():
        raise PrunelabError("criterion", "filter scores contain NaN", "check the criterion's inputs")
    is_alive = torch.cat([alive[n].cpu() for n in names])
    left = torch.tensor([int(alive[n].sum()) for n in names])
    cap = 1.0 if max_share is None else max_share
    floor = torch.tensor([max(min_filters, math.ceil((1.0 - cap) * len(alive[n]) - 1e-9)) for n in names])
    for idx in torch.argsort(torch.where(is_alive, flat, float("inf")), stable=True).tolist():
        if removed >= goal or not is_alive[idx]:
            break
        if left[layer[idx]] <= floor[layer[idx]]:
            continue  # never empty a layer (nor take it beyond max_share)
        is_alive[idx] = False
        left[layer[idx]] -= 1
        removed += 1
    out, offset = {}, 0
    for n in names:
        out[n] = is_alive[offset : offset + len(alive[n])].to(alive[n].device)
        offset += len(alive[n])
    return out


def round_kept(
    kept: Mapping[str, Tensor], alive: Mapping[str, Tensor], scores: Mapping[str, Tensor], step: int
) -> dict[str, Tensor]:
    """``kept`` with each group's count of kept units rounded up to a multiple of ``step`` (``prune.round_to``):
    the highest-scored units this step would remove stay. A group never gets back units pruned in earlier steps,
    so one already below a multiple keeps what it has (its count is then the largest it can be)."""
    out = {}
    for name, keep in kept.items():
        want = min(int(alive[name].sum()), step * math.ceil(int(keep.sum()) / step))
        extra = want - int(keep.sum())
        keep = keep.clone()
        if extra > 0:
            candidates = alive[name] & ~keep
            order = torch.argsort(
                torch.where(candidates.cpu(), scores[name].detach().double().cpu(), -math.inf),
                descending=True,
                stable=True,
            )
            keep[order[:extra].to(keep.device)] = True
        out[name] = keep
    return out


def _columns(keep: Tensor, block: int) -> Tensor:
    """A consumer's input mask/index over ``block`` columns per unit (flatten: the channel's spatial block)."""
    return keep.repeat_interleave(block)


def group_masks(model: nn.Module, groups: Sequence[UnitGroup], alive: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Element masks for every tensor touched by the groups, combined with the current masks."""
    masks = masking.get_masks(model)
    for g in groups:
        keep = alive[g.key].to(masks[f"{g.key}.weight"].dtype)
        for p in g.producers:
            w = f"{p}.weight"
            masks[w] = masks[w] * keep.view(-1, *([1] * (masks[w].dim() - 1)))
        companions = [f"{p}.bias" for p in g.producers]
        companions += [f"{bn}.{a}" for bn in g.batchnorms for a in ("weight", "bias")]
        for name in companions:
            if name in masks:
                masks[name] = keep.clone()
        for c in g.consumers:
            cw = f"{c}.weight"
            cols = _columns(keep, g.blocks[c]) if c in g.blocks else keep
            masks[cw] = masks[cw] * cols.view(1, -1, *([1] * (masks[cw].dim() - 2)))
    return masks


def unit_stats(alive: Mapping[str, Tensor]) -> dict[str, float]:
    total = sum(len(a) for a in alive.values())
    kept = sum(int(a.sum()) for a in alive.values())
    return {"units": float(total), "units_kept": float(kept), "units_removed_share": 1 - kept / total}


# -- physical compaction ------------------------------------------------------------------------------------------
@torch.no_grad()
def _plain(module: nn.Module) -> nn.Module:
    """A plain (unparametrized) copy of a parametrized Conv2d, Linear or BatchNorm2d with masks folded in.

    ``parametrize.remove_parametrizations`` must not be used on a deep copy: the copy shares the dynamically
    created parametrized class with the original, and removal deletes the property from that shared class.
    """
    if isinstance(module, nn.Conv2d):
        return _slice_conv(module, torch.arange(module.out_channels), torch.arange(module.in_channels))
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _slice_bn(module, torch.arange(module.num_features))
    if isinstance(module, nn.Linear):
        return _slice_linear(module, torch.arange(module.out_features), torch.arange(module.in_features))
    raise TypeError(f"cannot fold masks of a {type(module).__name__}")


def bake(model: nn.Module) -> nn.Module:
    """A copy with masks folded into plain modules (no parametrizations left)."""
    out = copy.deepcopy(model)
    for name, module in list(out.named_modules()):
        if name and masking.has_masks(module):
            _set(out, name, _plain(module))
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def _slice_conv(conv: nn.Conv2d, out_idx: Tensor, in_idx: Tensor) -> nn.Conv2d:
    kernel, stride, padding, dilation = cast(Any, (conv.kernel_size, conv.stride, conv.padding, conv.dilation))
    new = nn.Conv2d(
        len(in_idx),
        len(out_idx),
        kernel,
        stride,
        padding,
        dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.weight.copy_(conv.weight[out_idx][:, in_idx])
    if conv.bias is not None and new.bias is not None:
        new.bias.copy_(conv.bias[out_idx])
    return new.to(conv.weight.device, conv.weight.dtype)


@torch.no_grad()
def _slice_linear(linear: nn.Linear, out_idx: Tensor, in_idx: Tensor) -> nn.Linear:
    new = nn.Linear(len(in_idx), len(out_idx), bias=linear.bias is not None)
    new.weight.copy_(linear.weight[out_idx][:, in_idx])
    if linear.bias is not None:
        new.bias.copy_(linear.bias[out_idx])
    return new.to(linear.weight.device, linear.weight.dtype)


@torch.no_grad()
def _slice_bn(bn: nn.BatchNorm1d | nn.BatchNorm2d, idx: Tensor) -> nn.Module:
    kind = nn.BatchNorm1d if isinstance(bn, nn.BatchNorm1d) else nn.BatchNorm2d  # not type(bn): parametrized class
    new = kind(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        if getattr(bn, attr) is not None:
            getattr(new, attr).copy_(getattr(bn, attr)[idx])
    if bn.num_batches_tracked is not None and new.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.to(bn.weight.device if bn.weight is not None else "cpu")


def compact(model: nn.Module, groups: Sequence[UnitGroup], kept: Mapping[str, Tensor] | None = None) -> nn.Module:
    """A physically smaller copy: removed filters, their BatchNorm channels and consumers' inputs are dropped.

    Gives the same outputs as the masked model (a pruned filter emits exactly 0, and its consumers' weights on that
    channel are masked), with fewer multiply-accumulates and a real CPU/GPU speedup. ``kept``: a boolean
    (out_channels,) per group key instead of reading the masks (a plain model rebuilt by prunelab.runs.compact).
    """
    alive = dict(kept) if kept is not None else alive_units(model, groups)
    keep_out: dict[str, Tensor] = {}
    keep_in: dict[str, Tensor] = {}
    for g in groups:
        idx = torch.nonzero(alive[g.key].cpu()).flatten()
        keep_out.update({p: idx for p in g.producers})
        for c in g.consumers:
            keep_in[c] = torch.nonzero(_columns(alive[g.key].cpu(), g.blocks[c])).flatten() if c in g.blocks else idx
    out = bake(model)
    for name in set(keep_out) | set(keep_in):
        layer = out.get_submodule(name)
        if isinstance(layer, nn.Conv2d):
            o = keep_out.get(name, torch.arange(layer.out_channels))
            i = keep_in.get(name, torch.arange(layer.in_channels))
            _set(out, name, _slice_conv(layer, o, i))
        else:
            linear = cast(nn.Linear, layer)
            o = keep_out.get(name, torch.arange(linear.out_features))
            i = keep_in.get(name, torch.arange(linear.in_features))
            _set(out, name, _slice_linear(linear, o, i))
    for g in groups:
        for bn in g.batchnorms:
            _set(out, bn, _slice_bn(cast(nn.BatchNorm2d, out.get_submodule(bn)), keep_out[g.key]))
    return out
