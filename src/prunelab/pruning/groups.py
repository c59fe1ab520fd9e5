"""Prunable groups of structured pruning, found by tracing the model with ``torch.fx``.

Every tensor in the traced graph carries a *channel space*: the output channels of the conv (or the output
features of the Linear) that produced it. Channel-preserving operations (BatchNorm, ReLU, pooling, dropout,
spatial slicing and padding) keep the space; an addition ties its operands' spaces into one (a residual stream);
``flatten`` keeps it, with each channel now a block of columns. Layers that read a space are its *consumers*.
Unit c of a space is structurally prunable when every path from it ends in consumers: masking the whole group
(producers' unit c, their biases, every norm's channel c, every consumer's input channel or columns c) makes unit
c emit exactly 0 and removes exactly the multiply-accumulates a compacted model drops.

Group kinds (``prune.group_kinds``; the default ``[conv]`` is what prunelab pruned before kinds existed):

- ``conv``: one conv's filters, read only by convs (Jordao et al.'s code prunes exactly these);
- ``flatten``: one conv's filters read by a Linear through ``flatten`` (or global pooling and ``flatten``): the
  consumer's input columns of that channel's spatial block;
- ``linear``: one hidden Linear's neurons (row, bias, BatchNorm1d), read by the next Linear's input column;
- ``residual``: channels tied through additions (residual streams with identity or 1x1 projection shortcuts): every
  producer of the stream is pruned at the same index, with every norm on it and every consumer's input channel.

A space is refused (with its reason, see :func:`refused`) when it reaches the model output, a channel
concatenation or a channel zero-padding (the parameter-free "option A" shortcut of CIFAR ResNets: compaction would
have to rewrite the pad into an index map), a grouped conv, or any operation not known to preserve channels.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional

from prunelab.pruning.kinds import KINDS, check_kinds

__all__ = ["KINDS", "UnitGroup", "check_kinds", "refused", "unit_groups"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)
_PASS_FUNCTIONS = {
    functional.relu,
    functional.max_pool2d,
    functional.avg_pool2d,
    functional.adaptive_avg_pool2d,
    functional.adaptive_max_pool2d,
    functional.dropout,
    functional.relu6,
    functional.leaky_relu,
    torch.relu,
}
_PASS_METHODS = {"relu", "relu_"}
_ADD = {operator.add, operator.iadd, torch.add}
_SCALAR_METHODS = {"size", "dim"}


@dataclass
class UnitGroup:
    """One prunable group: ``out_channels`` units, pruned at the same index in every producer."""

    key: str  # the group's name: its first producer (a conv, or a Linear for kind "linear")
    out_channels: int
    batchnorms: list[str] = field(default_factory=list)  # norms indexed by the unit (BatchNorm2d/1d)
    consumers: list[str] = field(default_factory=list)  # layers reading the units as input channels/columns
    producers: list[str] = field(default_factory=list)  # every layer whose output unit c is pruned (conv first)
    blocks: dict[str, int] = field(default_factory=dict)  # Linear consumers: input columns per unit
    kind: str = "conv"

    def __post_init__(self) -> None:
        if not self.producers:
            self.producers = [self.key]


@dataclass
class _Space:
    size: int
    spatial: bool  # a conv's (N, C, H, W) output; False: a Linear's (N, F)
    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: dict[str, int] = field(default_factory=dict)  # name -> input columns per unit (1 for convs)
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Val:
    space: int
    flat: bool = False  # a conv space after flatten: each channel is a block of columns


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        leaf = (nn.Conv2d, nn.Linear, nn.Flatten, *_NORMS, *_PASS_MODULES)
        return isinstance(m, leaf) or super().is_leaf_module(m, qualname)


class _Graph:
    """Channel spaces of a traced model, merged by additions (a union-find over space ids)."""

    def __init__(self, model: nn.Module):
        self.modules = dict(model.named_modules())
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.values: dict[fx.Node, _Val | None] = {}
        self.order: dict[str, int] = {}

    def new(self, size: int, spatial: bool, producer: str | None = None, refused: str | None = None) -> _Val:
        self.spaces.append(_Space(size, spatial, [producer] if producer else [], refused=[refused] if refused else []))
        self.parent.append(len(self.parent))
        return _Val(len(self.spaces) - 1)

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def space(self, val: _Val) -> _Space:
        return self.spaces[self.root(val.space)]

    def refuse(self, node: fx.Node, reason: str) -> None:
        for arg in node.all_input_nodes:
            val = self.values.get(arg)
            if val is not None:
                self.space(val).refused.append(reason)

    def union(self, a: _Val, b: _Val, node: fx.Node) -> _Val | None:
        ra, rb = self.root(a.space), self.root(b.space)
        sa, sb = self.spaces[ra], self.spaces[rb]
        if a.flat != b.flat or sa.size != sb.size or sa.spatial != sb.spatial:
            reason = "; ".join([*sa.refused[:1], *sb.refused[:1]]) or f"{node.name}: adds tensors of different layouts"
            self.refuse(node, reason)
            return self.new(-1, False, refused=reason)
        if ra != rb:
            self.parent[rb] = ra
            sa.producers += sb.producers
            sa.norms += sb.norms
            sa.consumers.update(sb.consumers)
            sa.refused += sb.refused
        return a


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.args if isinstance(a, fx.Node)]


def _is_flatten(node: fx.Node) -> bool:
    """``torch.flatten(x, 1)``, ``x.flatten(1)`` or ``x.view(x.size(0), -1)`` / ``reshape`` of the same form."""
    if node.target in (torch.flatten, "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return bool(start == 1 and end == -1)
    if node.op == "call_method" and node.target in ("view", "reshape"):
        shape: Any = node.args[1:] if len(node.args) != 2 else node.args[1]
        return bool(isinstance(shape, (tuple, list)) and len(shape) == 2 and shape[1] == -1)
    return False


def _channel_pad(node: fx.Node) -> bool | None:
    """For ``functional.pad``: True if it pads channels, False if only spatial dims, None if not a pad."""
    if node.target is not functional.pad:
        return None
    pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
    return not (isinstance(pad, (tuple, list)) and all(p == 0 for p in pad[4:]))


def _spatial_slice(node: fx.Node) -> bool:
    """``x[:, :, a:b:c, ...]``: channels untouched."""
    if node.target is not operator.getitem or len(node.args) < 2 or not isinstance(node.args[1], tuple):
        return False
    head = node.args[1][:2]
    return len(head) == 2 and all(isinstance(s, slice) and s == slice(None) for s in head)


def _module(g: _Graph, node: fx.Node, val: _Val | None) -> _Val | None:
    name, mod = str(node.target), g.modules[str(node.target)]
    g.order.setdefault(name, len(g.order))
    if isinstance(mod, (nn.Conv2d, nn.Linear)):
        _consume(g, node, name, mod, val)
        size = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
        return g.new(size, isinstance(mod, nn.Conv2d), producer=name)
    if val is None:
        return None
    if isinstance(mod, _NORMS) and not val.flat and mod.num_features == g.space(val).size:
        g.space(val).norms.append(name)
        return val
    if isinstance(mod, nn.Flatten) and mod.start_dim == 1 and mod.end_dim == -1:
        return _Val(val.space, flat=g.space(val).spatial)
    if isinstance(mod, _PASS_MODULES):
        return val
    g.refuse(node, f"{name}: {type(mod).__name__} is not known to preserve channels")
    return g.new(-1, False, refused=f"{name}: output of {type(mod).__name__}")


def _consume(g: _Graph, node: fx.Node, name: str, mod: nn.Module, val: _Val | None) -> None:
    if val is None:
        return
    space = g.space(val)
    if isinstance(mod, nn.Conv2d):
        if mod.groups != 1 or val.flat or not space.spatial:
            g.refuse(node, f"{name}: grouped conv" if mod.groups != 1 else f"{name}: conv on a flattened tensor")
        else:
            space.consumers[name] = 1
        return
    linear = mod if isinstance(mod, nn.Linear) else None
    if linear is None or (space.spatial and not val.flat) or space.size <= 0 or linear.in_features % space.size:
        g.refuse(node, f"{name}: reads the tensor in a layout prunelab does not map to channels")
    else:
        space.consumers[name] = linear.in_features // space.size


def _function(g: _Graph, node: fx.Node, vals: list[_Val | None]) -> _Val | None:
    target = node.target
    first = vals[0] if vals else None
    if node.op == "call_method" and target in _SCALAR_METHODS:
        return None
    if target in _ADD or (node.op == "call_method" and target in ("add", "add_")):
        tensors = [v for v in vals if v is not None]
        return g.union(tensors[0], tensors[1], node) if len(tensors) == 2 else first
    if first is not None and _is_flatten(node):
        return _Val(first.space, flat=g.space(first).spatial)
    pad = _channel_pad(node)
    if pad is not None:
        if pad:
            reason = f"{node.name}: channel zero-padding (an option-A shortcut)"
            g.refuse(node, reason)
            widths: Any = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
            known = first is not None and g.space(first).size > 0
            size = g.space(first).size + int(sum(widths[4:6])) if first is not None and known else -1
            return g.new(size, first is not None and g.space(first).spatial, refused=reason)
        return first
    passing = target in _PASS_FUNCTIONS or (node.op == "call_method" and target in _PASS_METHODS)
    if (passing or _spatial_slice(node)) and len([v for v in vals if v is not None]) <= 1:
        return first
    if not any(v is not None for v in vals):
        return None
    g.refuse(node, f"{node.name}: {getattr(target, '__name__', target)} is not known to preserve channels")
    return g.new(-1, False, refused=f"{node.name}: output of {getattr(target, '__name__', target)}")


def _trace(model: nn.Module) -> _Graph:
    g = _Graph(model)
    for node in _Tracer().trace(model).nodes:
        vals = [g.values.get(a) for a in _tensor_args(node)]
        if node.op == "placeholder":
            g.values[node] = g.new(-1, False, refused="model input")
        elif node.op == "output":
            g.refuse(node, "reaches the model output")
        elif node.op == "call_module":
            g.values[node] = _module(g, node, vals[0] if vals else None)
        elif node.op in ("call_function", "call_method"):
            g.values[node] = _function(g, node, vals)
        else:
            g.values[node] = None
    return g


def _kind(g: _Graph, space: _Space) -> str:
    if len(space.producers) > 1:
        return "residual"
    if isinstance(g.modules[space.producers[0]], nn.Linear):
        return "linear"
    return "flatten" if any(isinstance(g.modules[c], nn.Linear) for c in space.consumers) else "conv"


def _spaces(model: nn.Module) -> tuple[_Graph, list[_Space]]:
    g = _trace(model)
    roots = sorted({g.root(i) for i in range(len(g.spaces))})
    found = [g.spaces[r] for r in roots if g.spaces[r].producers]
    return g, sorted(found, key=lambda s: min(g.order[p] for p in s.producers))


def unit_groups(model: nn.Module, kinds: Any = ("conv",)) -> list[UnitGroup]:
    """The structurally prunable groups of ``model`` of the given kinds, ordered by their first producer."""
    wanted = check_kinds(kinds)
    g, spaces = _spaces(model)
    groups = []
    for s in spaces:
        if s.refused or not s.consumers or _kind(g, s) not in wanted:
            continue
        producers = sorted(s.producers, key=g.order.__getitem__)
        blocks = {c: b for c, b in s.consumers.items() if isinstance(g.modules[c], nn.Linear)}
        groups.append(UnitGroup(producers[0], s.size, list(s.norms), list(s.consumers), producers, blocks, _kind(g, s)))
    return groups


def refused(model: nn.Module) -> dict[str, str]:
    """Producers whose units cannot be pruned structurally, with the first reason (for reports and errors)."""
    _, spaces = _spaces(model)
    out = {}
    for s in spaces:
        reason = s.refused[0] if s.refused else "" if s.consumers else "no consumer"
        if reason:
            out.update({p: reason for p in s.producers})
    return out
