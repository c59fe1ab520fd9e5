"""PLS + VIP filter importance (Jordao et al., "Pruning deep neural networks using partial least squares",
arXiv:1810.07610; docs/methods.md §2).

One feature per filter: the global max- (or average-) pooled *pre-activation* output of each Conv2d (the conv's own
output, before BatchNorm and ReLU, as in the authors' Keras code where activations are separate layers), for every
conv of the network, over ``num_samples`` training examples. PLS with ``n_components`` (2) on the scaled features
and one-hot labels; each filter's score is its VIP. The authors feed every conv's features into one PLS model and
then exclude the last conv from pruning; prunelab does the same (``layers: all``) and ranks only the structurally
prunable filters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning import distributed
from prunelab.pruning.criteria import ALL_KINDS, ScoringContext, record_outputs, required
from prunelab.pruning.criteria.filters import check_scope
from prunelab.pruning.pls import pls_vip


@torch.no_grad()
def pooled_features(model: nn.Module, batches, num_samples: int, pooling: str = "max", convs=None):
    """(features (N, F), labels (N,), column ranges per conv name) from conv outputs, pooled over space."""
    names = convs or [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    store: dict[str, list[Tensor]] = {n: [] for n in names}

    def pool(o: Tensor) -> Tensor:  # a Linear's (N, F) output is its own feature
        if o.dim() == 2:
            return o
        return o.amax((2, 3)) if pooling == "max" else o.mean((2, 3))

    labels = record_outputs(
        model, batches, num_samples, {n: (lambda o, n=n: store[n].append(pool(o).float().cpu())) for n in names}
    )
    feats = torch.cat([torch.cat(store[n])[:num_samples] for n in names], 1)
    ranges, start = {}, 0
    for n in names:
        width = store[n][0].shape[1]
        ranges[n] = (start, start + width)
        start += width
    return feats, labels, ranges


class PLSVIP:
    structured = True
    needs_data = True
    group_kinds = ALL_KINDS

    def __init__(
        self,
        num_samples: int = 2000,
        n_components: int = 2,
        pooling: str = "max",
        layers: str = "all",
        scope: str = "global",
    ):
        self.scope = check_scope(scope)
        if pooling not in ("max", "avg"):
            raise PrunelabError("criterion.pooling", f"unknown pooling {pooling!r}", "use max or avg")
        if layers not in ("all", "prunable"):
            raise PrunelabError("criterion.layers", f"unknown value {layers!r}", "use all or prunable")
        self.num_samples, self.n_components, self.pooling, self.layers = num_samples, n_components, pooling, layers

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        if batches is None:
            raise PrunelabError("criterion", "pls_vip needs training batches", "run it through prunelab")
        producers = [p for g in context.groups for p in g.producers]
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)] if self.layers == "all" else []
        names = convs + [p for p in producers if p not in convs]  # Linear producers after every conv
        x, y, ranges = pooled_features(model, batches, self.num_samples, self.pooling, names)
        x, y = (
            distributed.all_cat(x),
            distributed.all_cat(y),
        )  # DDP: one PLS model on every rank's samples, identical on each rank
        num_classes = int(context.extra.get("num_classes", int(y.max()) + 1))
        v = pls_vip(x, functional.one_hot(y, num_classes).double(), self.n_components).float()
        return {g.key: sum(v[ranges[p][0] : ranges[p][1]] for p in g.producers) for g in context.groups}
