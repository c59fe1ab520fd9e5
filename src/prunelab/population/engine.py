"""Populations: K members of one architecture trained at once, with stacked parameters (``torch.func``).

Hooker et al.'s protocol needs populations (many seeds per sparsity level) of a small model. Training them one by
one pays the per-step framework cost K times; here the K members' parameters, masks and optimizer state are stacked
along a leading dimension and one ``vmap``-ed step trains all of them (``torch.func.stack_module_state`` and
``functional_call``, as in PyTorch's model-ensembling tutorial). Each member keeps its own seed, initialisation,
data order (its own :class:`~prunelab.data.loader.IndexBatchSampler` permutation), loss and masks; the optimizer is
element-wise (SGD, Adam, AdamW), so the stacked update equals K separate updates. Members may carry prunelab's mask
parametrizations: ``functional_call`` applies ``original * mask`` per member, so a pruned entry has zero gradient
exactly as in a single run.

Limits (checked, with a one-line error): no BatchNorm in training mode (its running statistics are updated in
place), no dropout-free guarantee of identical random streams (dropout draws differ from a single run's), and
optimizers with cross-parameter coupling (gradient clipping by a global norm, LBFGS) are not supported.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, fx, nn
from torch.func import functional_call, stack_module_state, vmap

from prunelab.data.loader import IndexBatchSampler
from prunelab.errors import PrunelabError
from prunelab.pruning import masks

ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
# parameter-free modules that act entry by entry: applied to the stacked (K, B, ...) tensor directly
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)


class Population:
    """K members with stacked state; ``sync_to_members()`` writes the stacked state back into K ordinary modules.

    The forward pass interprets the members' ``torch.fx`` graph on stacked tensors (K, B, ...): a Linear layer is
    one ``baddbmm`` over the K members' effective weights (``original * mask``), which is bitwise the same
    arithmetic as ``F.linear`` (addmm) per member, forward and backward; every other node runs under
    ``torch.func.vmap`` (a conv becomes a grouped conv: equal up to floating-point rounding, not bitwise).
    """

    def __init__(self, members: Sequence[nn.Module]):
        if not members:
            raise PrunelabError("population.size", "a population needs at least one member", "use size >= 1")
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in members[0].modules()):
            raise PrunelabError(
                "model",
                "population training does not support BatchNorm (in-place running statistics)",
                "train BatchNorm models one run per seed",
            )
        self._members = list(members)
        self.size = len(self._members)
        self.params, self.buffers = stack_module_state(self._members)
        self.base = copy.deepcopy(self._members[0]).to("meta")
        self.modules = dict(self.base.named_modules())
        self.graph = _Tracer().trace(self.base)

    # -- stacked tensors --------------------------------------------------------------------------------------
    def _tensor(self, module: str, attr: str) -> Tensor | None:
        """The stacked tensor a member's forward would use for ``module.attr`` (masks applied), or None."""
        key = f"{module}.{attr}" if module else attr
        if key in self.params:
            return self.params[key]
        if key in self.buffers:
            return self.buffers[key]
        orig = self.params.get(masks.original_key(key))
        if orig is None:
            return None
        out = orig
        i = 0
        while masks.mask_key(key, i) in self.buffers:  # prunelab's Mask parametrizations, in order
            out = out * self.buffers[masks.mask_key(key, i)]
            i += 1
        return out

    def _state_of(self, module: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        cut = len(module) + 1 if module else 0
        params = {k[cut:]: v for k, v in self.params.items() if not module or k.startswith(module + ".")}
        buffers = {k[cut:]: v for k, v in self.buffers.items() if not module or k.startswith(module + ".")}
        return params, buffers

    # -- forward ------------------------------------------------------------------------------------------------
    def __call__(self, xs: Tensor) -> Tensor:
        """Logits (K, B, C) for inputs (K, B, ...): member k sees ``xs[k]``."""
        env: dict[fx.Node, object] = {}

        def value(a):
            return fx.node.map_arg(a, lambda n: env[n])

        for node in self.graph.nodes:
            if node.op == "placeholder":
                env[node] = xs
            elif node.op == "output":
                return value(node.args[0])
            elif node.op == "get_attr":
                mod, _, attr = str(node.target).rpartition(".")
                tensor = self._tensor(mod, attr)
                if tensor is None:
                    raise RuntimeError(f"population: no stacked tensor for {node.target}")
                env[node] = _Stacked(tensor)
            elif node.op == "call_module":
                env[node] = self._call_module(node, value(node.args), value(node.kwargs))
            else:  # call_function / call_method
                fn = node.target if node.op == "call_function" else _method(node.target)
                env[node] = _vmapped(fn, value(node.args), value(node.kwargs))
        raise RuntimeError("graph without output")

    def _call_module(self, node: fx.Node, args, kwargs):
        target = str(node.target)
        module = self.modules[target]
        if isinstance(module, nn.Linear) and not kwargs and len(args) == 1 and _is_stacked(args[0]):
            x = args[0]
            if x.dim() == 3:
                return _StackedLinear.apply(x, self._tensor(target, "weight"), self._tensor(target, "bias"))
        if not kwargs and len(args) == 1 and _is_stacked(args[0]) and not isinstance(args[0], _Stacked):
            if isinstance(module, ELEMENTWISE_MODULES):  # no parameters, one value per entry: as is, no vmap
                return module(args[0])
            if isinstance(module, nn.Flatten):  # the member dims shift by one
                start, end = (d + 1 if d >= 0 else d for d in (module.start_dim, module.end_dim))
                return args[0].flatten(start, end)
        params, buffers = self._state_of(target)
        sub = self.modules[target]

        def call(p, b, *a, **kw):
            return functional_call(sub, (p, b), a, kw)

        return _vmapped(call, (params, buffers, *args), kwargs, always_batched=2)

    @torch.no_grad()
    def sync_to_members(self) -> list[nn.Module]:
        """Copy the stacked parameters and buffers into the K member modules and return them."""
        for k, member in enumerate(self._members):
            for name, p in member.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in member.named_buffers():
                b.copy_(self.buffers[name][k])
        return self._members

    @torch.no_grad()
    def sync_from_members(self) -> None:
        """Copy the members' parameters and buffers (e.g. masks installed by a pruning step) into the stack."""
        for k, member in enumerate(self._members):
            for name, p in member.named_parameters():
                self.params[name][k].copy_(p)
            for name, b in member.named_buffers():
                self.buffers[name][k].copy_(b)

    def update_masks(self, prune: Callable[[int, nn.Module], object], optimizer: torch.optim.Optimizer | None = None):
        """Run ``prune(k, member)`` on every member (with its current weights), then take the members' new masks
        into the stack and zero the optimizer state (momentum, Adam moments) of newly pruned entries, as
        ``prunelab.pruning.masks.mask_optimizer_state`` does for a single run."""
        for k, member in enumerate(self.sync_to_members()):
            prune(k, member)
        self.sync_from_members()
        if optimizer is None:
            return
        with torch.no_grad():
            for name, param in self.params.items():
                key = masks.mask_key_of_original(name)
                if key is None:
                    continue
                masks.mask_param_state(optimizer, param, self.buffers[key])


class _StackedLinear(torch.autograd.Function):
    """K Linear layers at once, with exactly the calls ``F.linear`` makes per member, forward and backward.

    Forward is ``addmm(b, x, wᵀ)`` per member; backward is what PyTorch's addmm backward computes for a row-major
    input and a transposed weight (``grad @ w``, ``(gradᵀ @ x)``, ``grad.sum(0)``). A batched ``bmm`` is *not*
    bitwise the same as ``mm`` for every shape (it differs in the last bits for a 100 -> 10 layer), so the
    members' products are separate BLAS calls into one output; the saving is everything around them (one autograd
    node, one optimizer call and one Python step for all K members).
    """

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        out = x.new_empty(x.shape[0], x.shape[1], w.shape[1])
        for k in range(x.shape[0]):
            if b is None:
                torch.mm(x[k], w[k].t(), out=out[k])
            else:
                torch.addmm(b[k], x[k], w[k].t(), out=out[k])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        grad = grad.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x)
            for k in range(x.shape[0]):
                torch.mm(grad[k], w[k], out=gx[k])
        if ctx.needs_input_grad[1]:
            gw = torch.stack([grad[k].t().mm(x[k]) for k in range(x.shape[0])])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = torch.stack([grad[k].sum(0) for k in range(x.shape[0])])
        return gx, gw, gb


class _Stacked:
    """A stacked tensor read by ``get_attr`` (batched along dim 0 under vmap)."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) or super().is_leaf_module(m, qualname)


def _method(name: str):
    return lambda self, *a, **kw: getattr(self, name)(*a, **kw)


def _is_stacked(a) -> bool:
    return isinstance(a, (Tensor, _Stacked))


def _vmapped(fn, args, kwargs, always_batched: int = 0):
    """``fn`` applied per member: tensors (and the first ``always_batched`` args, dicts of stacked tensors) are
    batched along dim 0, everything else is passed as is."""
    args = tuple(a.tensor if isinstance(a, _Stacked) else a for a in args)
    in_dims = tuple(0 if (i < always_batched or isinstance(a, Tensor)) else None for i, a in enumerate(args))
    tensor_kwargs = {k: v for k, v in kwargs.items() if isinstance(v, Tensor)}
    plain_kwargs = {k: v for k, v in kwargs.items() if k not in tensor_kwargs}

    def one(*a_and_kw):
        a, kw = a_and_kw[: len(args)], a_and_kw[len(args)]
        return fn(*a, **kw, **plain_kwargs)

    return vmap(one, in_dims=(*in_dims, 0), randomness="different")(*args, tensor_kwargs)


def member_batches(n: int, batch_size: int, seeds: Sequence[int], epoch: int) -> list[Tensor]:
    """Index tensors (K, B) per step: member k's batches are exactly those of a single run with seed ``seeds[k]``."""
    per = []
    for s in seeds:
        sampler = IndexBatchSampler(n, batch_size, shuffle=True, seed=s)
        sampler.set_epoch(epoch)
        per.append(list(sampler))
    return [torch.stack([p[i] for p in per]) for i in range(len(per[0]))]


def train_epoch(
    pop: Population,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Tensor],
    x: Tensor,
    y: Tensor,
    batch_size: int,
    seeds: Sequence[int],
    epoch: int,
    on_step: Callable[[int], None] | None = None,
    step: int = 0,
    per_member_loss: bool = False,
) -> tuple[int, Tensor, Tensor]:
    """One epoch for every member: ``on_step(step)`` before each step (mask updates), then forward, per-member loss
    (``loss_fn(logits, targets)``, or ``loss_fn(k, logits, targets)`` with ``per_member_loss``), one backward and
    one optimizer step. Returns the next global step and the members' summed training losses and correct
    predictions (K,) over the epoch."""
    if not isinstance(optimizer, ELEMENTWISE_OPTIMIZERS):
        raise PrunelabError(
            "optimizer",
            f"{type(optimizer).__name__} is not element-wise",
            "use SGD, Adam or AdamW for population training",
        )
    total = torch.zeros(pop.size, dtype=torch.float64)
    correct = torch.zeros(pop.size, dtype=torch.long)
    for idx in member_batches(len(y), batch_size, seeds, epoch):
        if on_step is not None:
            on_step(step)
        logits = pop(x[idx])
        targets = y[idx]
        if per_member_loss:
            losses = torch.stack([loss_fn(k, logits[k], targets[k]) for k in range(pop.size)])
        else:
            losses = torch.stack([loss_fn(logits[k], targets[k]) for k in range(pop.size)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        with torch.no_grad():
            total += losses.detach().double() * idx.shape[1]
            correct += (logits.argmax(2) == targets).sum(1)
        step += 1
    return step, total, correct
