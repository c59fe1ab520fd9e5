"""Gradient-based criteria (need a few training batches).

- ``TaylorFilter``: first-order Taylor importance of each filter (Molchanov et al. 2019, "Importance estimation for
  neural network pruning", CVPR): ``I_c = (sum over the filter's group of g * w)^2`` per mini-batch, averaged over
  ``num_batches``. The group is the filter's weights and bias and the following BatchNorm's weight and bias. The
  model is in eval mode while the gradients are taken (BatchNorm statistics are not disturbed).
- ``SNIP``: connection sensitivity at initialisation (Lee et al. 2019, "SNIP: single-shot network pruning based on
  connection sensitivity", ICLR): ``s = |g * w|`` summed over ``num_batches`` (the paper uses one batch). Use it with
  ``schedule=one_shot schedule.at_init=true`` to prune before any training.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning import distributed
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ALL_KINDS, ScoringContext, required


def _gradients(model: nn.Module, batches, num_batches: int):
    """Yield after each batch's backward pass (gradients on the masked tensors' storage)."""
    if batches is None:
        raise PrunelabError("criterion", "this criterion needs training batches", "run it through prunelab")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x, y in itertools.islice(batches, num_batches):
            model.zero_grad(set_to_none=True)
            functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
            yield
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _g_times_w(model: nn.Module, name: str) -> Tensor:
    param = masking.original(model, name) if name in masking.masked_names(model) else model.get_parameter(name)
    grad = param.grad if param.grad is not None else torch.zeros_like(param)
    return (grad * masking.effective(model, name) if name in masking.masked_names(model) else grad * param).detach()


class TaylorFilter:
    structured = True
    group_kinds = ALL_KINDS
    needs_data = True
    scope = "global"

    def __init__(self, num_batches: int = 10):
        self.num_batches = int(num_batches)

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        total = {g.key: torch.zeros(g.out_channels) for g in context.groups}
        n = 0
        for _ in _gradients(model, batches, self.num_batches):
            n += 1
            for g in context.groups:
                names = [
                    *(f"{p}.{a}" for p in g.producers for a in ("weight", "bias")),
                    *(f"{b}.{a}" for b in g.batchnorms for a in ("weight", "bias")),
                ]
                contrib = torch.zeros(g.out_channels)
                for name in names:
                    mod_name, _, attr = name.rpartition(".")
                    if getattr(model.get_submodule(mod_name), attr, None) is None:
                        continue
                    gw = _g_times_w(model, name).cpu()
                    contrib += gw.flatten(1).sum(1) if gw.dim() > 1 else gw
                total[g.key] += contrib.pow(2)
        n_all = float(distributed.all_sum(torch.tensor([float(n)])).item())  # DDP: batches of every rank
        return {k: distributed.all_sum(v) / max(n_all, 1.0) for k, v in total.items()}


class SNIP:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = True

    def __init__(self, num_batches: int = 1, scope: str = "global"):
        self.num_batches, self.scope = int(num_batches), scope

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        total = {n: torch.zeros_like(m, dtype=torch.float64) for n, m in masks.items()}
        for _ in _gradients(model, batches, self.num_batches):
            for n in masks:
                total[n] += _g_times_w(model, n).abs().double().to(total[n].device)
        return {n: distributed.all_sum(v).float() for n, v in total.items()}  # DDP: summed over every rank's batches
