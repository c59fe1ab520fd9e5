"""FairGRAPE (Lin, Kim, Joo, ECCV 2022) as a prunelab criterion (issue 30, item 2).

Read in the authors' code (Bernardo1998/FairGRAPE at 13f54a8, ``prune.py``: ``importance_by_class0``,
``fairness_grad``, ``greed_one_layer``):

- per-group importance of each weight, I_g(w) = sum over batches of (abs(w) * abs(dL_g/dw))^2, L_g the loss on
  group g's examples of the batch (here the groups are the classes);
- per layer, each group's target share p_g = sum_w I_g(w) / sum_g' sum_w I_g'(w), from the model being pruned
  (the code's "pre-pruning model at each layer", which may itself have been pruned before);
- greedy selection per layer: the selected shares start uniform; repeatedly the group furthest below its target
  (argmin of share - target) offers its next most important weight (in its own order); a weight not yet selected is
  kept and adds every group's importance to the selected totals.

prunelab keeps the greedy *order* as the score (the first weight kept scores highest), so that selecting the
top-scored weights of each layer (``scope: layer``) keeps exactly the greedy's first picks whatever the round's
budget. Deviation from the code, as the issue asks: no optimizer step while scoring (``importance_by_class0`` steps
Adam at lr 1e-4 after every group's backward, so the weights move while they are scored).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ScoringContext


def class_importance(model: nn.Module, names: list[str], batches, num_batches: int) -> dict[str, dict[int, Tensor]]:
    """{tensor: {class: I_c(w)}}: the sum over batches of (abs(w) * abs(dL_c/dw))^2, L_c the batch's class-c loss."""
    masked = set(masking.masked_names(model))
    tensors = {n: masking.original(model, n) if n in masked else model.get_parameter(n) for n in names}
    out: dict[str, dict[int, Tensor]] = {n: {} for n in names}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x, y in itertools.islice(batches, num_batches):
            x, y = x.to(device), y.to(device)
            for c in sorted(torch.unique(y).tolist()):
                keep = y == c
                model.zero_grad(set_to_none=True)
                functional.cross_entropy(model(x[keep]), y[keep]).backward()
                for n, t in tensors.items():
                    w = masking.effective(model, n) if n in masked else t
                    g = t.grad if t.grad is not None else torch.zeros_like(t)
                    value = (w.detach().abs() * g.detach().abs()).double().pow(2).cpu()
                    out[n][int(c)] = out[n].get(int(c), 0) + value
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return out


def greedy_order(importance: np.ndarray) -> np.ndarray:
    """The order in which FairGRAPE's greedy keeps the weights (columns) of one layer; ``importance``: (groups, n)."""
    groups, n = importance.shape
    totals = importance.sum(1)
    target = totals / totals.sum() if totals.sum() > 0 else np.full(groups, 1.0 / groups)
    orders = [np.argsort(-importance[g], kind="stable") for g in range(groups)]
    pointer = np.zeros(groups, dtype=np.int64)
    selected = np.zeros(groups)
    share = np.full(groups, 1.0 / groups)
    taken = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    k = 0
    while k < n:
        g = int(np.argmin(share - target))
        while pointer[g] < n and taken[orders[g][pointer[g]]]:
            pointer[g] += 1
        if pointer[g] >= n:  # this group has offered every weight: the others finish the order
            share[g] = np.inf
            continue
        w = int(orders[g][pointer[g]])
        pointer[g] += 1
        taken[w] = True
        order[k] = w
        k += 1
        selected += importance[:, w]
        total = selected.sum()
        finite = np.isfinite(share)
        share = np.where(finite, selected / total if total > 0 else share, np.inf)
    return order


class FairGRAPE:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = True
    scope = "layer"  # the greedy balances each layer's own budget

    def __init__(self, num_batches: int = 4):
        if int(num_batches) < 1:
            raise PrunelabError("criterion.num_batches", f"{num_batches} batches", "e.g. criterion.num_batches=4")
        self.num_batches = int(num_batches)

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        if batches is None:
            raise PrunelabError("criterion", "this criterion needs training batches", "run it through prunelab")
        names = list(masks)
        per = class_importance(model, names, batches, self.num_batches)
        out = {}
        for n in names:
            alive = (masks[n] > 0).flatten().cpu().numpy()
            classes = sorted(per[n])
            imp = np.stack([per[n][c].flatten().numpy() for c in classes]) if classes else np.zeros((1, alive.size))
            idx = np.flatnonzero(alive)
            score = np.full(alive.size, -1.0)
            order = greedy_order(imp[:, idx])
            score[idx[order]] = np.arange(len(order), 0, -1, dtype=np.float64)  # first kept: highest score
            out[n] = torch.from_numpy(score).float().view_as(masks[n]).to(masks[n].device)
        return out
