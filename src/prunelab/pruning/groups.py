"""Filter groups for structured pruning, found by tracing the model with ``torch.fx``.

A Conv2d's filter c is *structurally prunable* when the conv's output reaches only other convs, through
channel-preserving operations (BatchNorm, ReLU, pooling, dropout). Its group is then: the filter (weight[c]), its
bias, every BatchNorm on the way (weight[c], bias[c]), and input channel c of every consumer conv. Masking the whole
group makes a pruned filter emit exactly 0 and removes exactly the multiply-accumulates a compacted model drops.

Convs whose output reaches anything else (a residual addition, a flatten, a linear layer, the output) are not
prunable: this excludes the last conv of plain stacks (Jordao et al.'s code excludes it too) and, in ResNets,
leaves only the inner conv of each block prunable (as their reference did).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn
from torch.nn import functional

_PASS_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout,
                 nn.Dropout2d, nn.Identity)  # fmt: skip
_PASS_FUNCTIONS = {
    functional.relu,
    functional.max_pool2d,
    functional.avg_pool2d,
    functional.dropout,
    functional.relu6,
    functional.leaky_relu,
}
_PASS_METHODS = {"relu", "relu_"}


@dataclass
class FilterGroup:
    conv: str  # module name of the conv whose filters are pruned
    out_channels: int
    batchnorms: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)  # convs reading these channels


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Conv2d, nn.Linear, *_PASS_MODULES)) or super().is_leaf_module(m, qualname)


def _passes(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def _follow(node: fx.Node, modules: dict[str, nn.Module], group: FilterGroup) -> bool:
    """Walk the users of ``node``; True if every path ends in a conv (recorded as consumers)."""
    if not node.users:
        return False
    for user in node.users:
        mod = modules.get(str(user.target)) if user.op == "call_module" else None
        if isinstance(mod, nn.Conv2d) and mod.groups == 1 and user.args[0] is node:
            group.consumers.append(str(user.target))
        elif _passes(user, modules):
            if isinstance(mod, nn.BatchNorm2d):
                group.batchnorms.append(str(user.target))
            if not _follow(user, modules, group):
                return False
        else:
            return False
    return True


def filter_groups(model: nn.Module) -> list[FilterGroup]:
    """The structurally prunable conv filters of ``model``, in module order."""
    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    groups = []
    for node in graph.nodes:
        mod = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(mod, nn.Conv2d) or mod.groups != 1:
            continue
        group = FilterGroup(str(node.target), mod.out_channels)
        if _follow(node, modules, group) and group.consumers:
            groups.append(group)
    return groups
