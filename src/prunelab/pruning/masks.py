"""Masks as parametrizations with a persistent buffer: the only module that touches parametrizations.

Every prunable tensor ``<module path>.<attr>`` (by default the ``weight`` of each Conv and Linear layer) gets a
:class:`Mask` parametrization when the model is prepared, before any training, so the ``state_dict`` layout is
the same in every round and every Lightning checkpoint carries the masks
(``<module>.parametrizations.<attr>.0.mask``). The effective tensor is ``original * mask``: a pruned entry is
exactly zero after any optimizer step, whatever momentum, weight decay or Adam state does to ``original``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Mask(nn.Module):
    """Parametrization ``w -> w * mask``; the mask is a persistent float buffer (1 = kept, 0 = pruned)."""

    mask: Tensor

    def __init__(self, shape: Sequence[int], dtype: torch.dtype = torch.float32, primary: bool = True):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=dtype), persistent=True)
        self.primary = primary  # False: a companion of a filter group (bias, BatchNorm), not counted in sparsity

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def prunable_names(
    model: nn.Module,
    include: Sequence[str] = ("*.weight", "weight"),
    exclude: Sequence[str] = (),
    layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES,
) -> list[str]:
    """Names ``<module>.<attr>`` of the prunable tensors, in module order.

    A tensor is prunable when its module is one of ``layer_types`` and its name matches an ``include`` pattern
    and no ``exclude`` pattern (fnmatch syntax, e.g. ``classifier.*`` or ``*.bias``).
    """
    names = []
    for mod_name, module in model.named_modules():
        if not isinstance(module, layer_types):
            continue
        for attr in ("weight", "bias"):
            if getattr(module, attr, None) is None:
                continue
            full = f"{mod_name}.{attr}" if mod_name else attr
            if _matches(full, include) and not _matches(full, exclude):
                names.append(full)
    return names


def _split(name: str) -> tuple[str, str]:
    mod, _, attr = name.rpartition(".")
    return mod, attr


# -- the state_dict key layout of masked tensors (the only place that knows it) -----------------------------------
def parametrization_prefix(name: str) -> str:
    """``fc.weight`` -> ``fc.parametrizations.weight``: the state_dict prefix of a masked tensor."""
    mod, attr = _split(name)
    return f"{mod}.parametrizations.{attr}" if mod else f"parametrizations.{attr}"


def original_key(name: str) -> str:
    """``fc.weight`` -> ``fc.parametrizations.weight.original``: where a masked tensor's trainable values live."""
    return f"{parametrization_prefix(name)}.original"


def mask_key(name: str, index: int = 0) -> str:
    """``fc.weight`` -> ``fc.parametrizations.weight.0.mask``: the state_dict key of its ``index``-th mask."""
    return f"{parametrization_prefix(name)}.{index}.mask"


def mask_key_of_original(key: str) -> str | None:
    """``fc.parametrizations.weight.original`` -> ``fc.parametrizations.weight.0.mask`` (None for other keys)."""
    head, sep, tail = key.rpartition(".original")
    if not sep or tail or "parametrizations." not in head:
        return None
    return f"{head}.0.mask"


def name_of_original(key: str) -> str | None:
    """``fc.parametrizations.weight.original`` -> ``fc.weight`` (None for other keys)."""
    if mask_key_of_original(key) is None:
        return None
    mod, _, attr = key.removesuffix(".original").rpartition("parametrizations.")
    return f"{mod}{attr}"


def stored_key(key: str, own_keys: Iterable[str]) -> str:
    """A dense state_dict key (``fc.weight``) as a masked model stores it (``fc.parametrizations.weight.original``)
    when that model masks it; other keys are returned unchanged."""
    own = set(own_keys)
    if key in own:
        return key
    alt = original_key(key)
    return alt if alt in own else key


# Called as hook(module class, attribute) after a tensor is masked: prunelab.training.fastpaths installs its faster
# property getter here (the only code that needs private torch names lives in prunelab.training.internals)
MASKED_HOOKS: list[Callable[[type, str], None]] = []


def attach_masks(model: nn.Module, names: Sequence[str], primary: bool = True) -> None:
    """Register an all-ones :class:`Mask` on each named tensor (idempotent)."""
    for name in names:
        mod_name, attr = _split(name)
        module = model.get_submodule(mod_name)
        if parametrize.is_parametrized(module, attr):
            continue
        tensor = getattr(module, attr)
        parametrize.register_parametrization(module, attr, Mask(tensor.shape, tensor.dtype, primary), unsafe=True)
        for hook in MASKED_HOOKS:
            hook(type(module), attr)


def has_masks(module: nn.Module) -> bool:
    """Whether ``module`` itself carries masked (parametrized) tensors."""
    return parametrize.is_parametrized(module)


def masked_names(model: nn.Module) -> list[str]:
    """Names of the tensors that carry a :class:`Mask`, in module order."""
    out = []
    for mod_name, module in model.named_modules():
        plist = getattr(module, "parametrizations", None)
        if plist is None:
            continue
        for attr, chain in plist.items():
            if any(isinstance(p, Mask) for p in chain):
                out.append(f"{mod_name}.{attr}" if mod_name else attr)
    return out


def _chain(model: nn.Module, name: str) -> parametrize.ParametrizationList:
    """The parametrization chain of a masked tensor (holds ``original`` and the Mask modules)."""
    mod_name, attr = _split(name)
    plist = cast(nn.ModuleDict, model.get_submodule(mod_name).parametrizations)
    return cast(parametrize.ParametrizationList, plist[attr])


def _mask_module(model: nn.Module, name: str) -> Mask:
    return next(p for p in _chain(model, name) if isinstance(p, Mask))


def get_masks(model: nn.Module, primary_only: bool = False) -> dict[str, Tensor]:
    """The current masks keyed by tensor name (clones). ``primary_only`` leaves out filter-group companions."""
    out = {}
    for n in masked_names(model):
        m = _mask_module(model, n)
        if m.primary or not primary_only:
            out[n] = m.mask.detach().clone()
    return out


def original(model: nn.Module, name: str) -> nn.Parameter:
    """The trainable tensor underneath a masked name (``parametrizations.<attr>.original``)."""
    return cast(nn.Parameter, _chain(model, name).original)


def effective(model: nn.Module, name: str) -> Tensor:
    """The tensor the forward pass uses (``original * mask``)."""
    mod_name, attr = _split(name)
    return cast(Tensor, getattr(model.get_submodule(mod_name), attr))


@torch.no_grad()
def set_masks(model: nn.Module, masks: dict[str, Tensor], zero_weights: bool = True) -> None:
    """Install ``masks``; with ``zero_weights`` the pruned entries of the trainable tensor are zeroed too.

    Zeroing the storage keeps a pruned weight at exactly 0 under a fresh optimizer (its gradient is 0) and makes
    exported or unmasked copies honest.
    """
    for name, new in masks.items():
        buf = _mask_module(model, name).mask
        if new.shape != buf.shape:
            raise ValueError(f"mask for {name} has shape {tuple(new.shape)}, expected {tuple(buf.shape)}")
        buf.copy_(new.to(buf.dtype))
        if zero_weights:
            original(model, name).mul_(buf)


@torch.no_grad()
def apply_masks_to_weights(model: nn.Module) -> None:
    """Zero the trainable storage wherever the mask is 0 (e.g. after loading or rewinding weights)."""
    for name in masked_names(model):
        original(model, name).mul_(_mask_module(model, name).mask)


def mask_state_keys(model: nn.Module) -> set[str]:
    """``state_dict`` keys that hold masks (excluded when weights are rewound)."""
    return {k for k in model.state_dict() if k.endswith(".mask") and ".parametrizations." in k}


def sparsity_stats(model: nn.Module) -> dict[str, float]:
    """Overall and per-tensor sparsity of the prunable (primary) tensors (share of entries pruned)."""
    masks = get_masks(model, primary_only=True)
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    stats = {"sparsity": zeros / total if total else 0.0, "prunable": float(total), "pruned": float(zeros)}
    for name, m in masks.items():
        stats[f"sparsity/{name}"] = float((m == 0).sum()) / m.numel()
    return stats


def count_parameters(model: nn.Module) -> dict[str, int]:
    """All parameters and the non-zero ones, counting masked entries as removed."""
    masked = set(masked_names(model))
    total = nonzero = 0
    for mod_name, module in model.named_modules():
        for _, p in module.named_parameters(recurse=False):
            total += p.numel()
            nonzero += int((p != 0).sum())
        # parametrized tensors: count the effective tensor once (its 'original' lives in a ParametrizationList)
        for attr in getattr(module, "parametrizations", {}):
            full = f"{mod_name}.{attr}" if mod_name else attr
            if full in masked:
                nonzero -= int((original(model, full) != 0).sum())
                nonzero += int((effective(model, full) != 0).sum())
    return {"parameters": total, "nonzero_parameters": nonzero}


@torch.no_grad()
def mask_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Zero the optimizer state (momentum, Adam moments) of pruned entries.

    With it, a pruned entry's storage stays exactly 0 under SGD (momentum, weight decay), Adam and AdamW even when
    masks change inside a fit; without it only the effective tensor is guaranteed 0 (see ``Mask``).
    """
    for name in masked_names(model):
        mask_param_state(optimizer, original(model, name), _mask_module(model, name).mask)


@torch.no_grad()
def mask_param_state(optimizer: torch.optim.Optimizer, param: Tensor, mask: Tensor) -> None:
    """Zero ``param``'s optimizer state (momentum, Adam moments) where ``mask`` is 0 (also for stacked tensors)."""
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, Tensor) and value.shape == param.shape:
            value.mul_(mask)
