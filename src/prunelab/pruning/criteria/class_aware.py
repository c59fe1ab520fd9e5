"""Class-conditional filter criteria (issue 30, item 2; started): scores computed on each class's examples apart.

- ``PerClassTaylor`` (``criterion=per_class_taylor``), ``PerClassSNIP`` (``per_class_snip``, unstructured) and
  ``PerClassActivation`` (``per_class_activation``, conv kernels): first-order Taylor filter importance (Molchanov
  et al. 2019), SNIP's abs(g * w) or activation energy, computed on each class's examples alone, each
  class's scores divided by their mean over all filters (so that every class speaks on one scale), then combined:
  ``reduce: max`` keeps what any class needs, ``mean`` averages the classes, ``weighted`` weighs class c by
  ``weights[c]`` (default: the inverse of its share of the scored examples, so a rare class counts as much as a
  frequent one). ``classes`` scores on those class indices only (CAP-style scoring on a subset,
  hpides/ClassAwarePruning). CAP scores from one batch; these score from ``num_batches`` and record how stable the
  combined ranking is: the Spearman correlation between the rankings from the first and the second half of the
  batches (``criterion/rank_stability`` in the round's record).
- ``ClassCount`` (``criterion=class_count``): Jiang et al., DATE 2024, "Class-aware pruning for efficient neural
  networks", as CLASS_AWARE.md records their code (``utils/vgg16_cifar10_score_utils.py``): per class c, the Taylor
  map abs(a * dL/da) of every filter's output, binarised ``> threshold`` (1e-50 there) per (filter, position) and
  averaged over c's examples; the maximum over positions is the filter's importance for c, and the sum over classes
  its score: how many classes need the filter. Filters that matter to few classes are removed first. (Their
  regularised training and iteration until nothing can be removed are not reproduced: prunelab's schedules decide
  how much is removed.)

Both score from ``num_batches`` training batches split by class; each class's examples are scored in their own
forward/backward passes (eval mode: BatchNorm statistics are not disturbed).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning.criteria import ALL_KINDS, ScoringContext, required
from prunelab.pruning.criteria.gradients import TaylorFilter

REDUCE = ("max", "mean", "weighted")


def class_batches(batches: Iterable[Any] | None, num_batches: int, classes: Sequence[int] | None) -> dict[int, list]:
    """``num_batches`` training batches split by class: {class: [(x_c, y_c), ...]} (only ``classes`` if given)."""
    if batches is None:
        raise PrunelabError("criterion", "this criterion needs training batches", "run it through prunelab")
    out: dict[int, list] = {}
    for x, y in itertools.islice(batches, num_batches):
        for c in sorted(torch.unique(y).tolist()):
            if classes is not None and c not in classes:
                continue
            keep = y == c
            out.setdefault(int(c), []).append((x[keep], y[keep]))
    return out


def check_classes(classes: Sequence[int] | None, n: int) -> list[int] | None:
    """``criterion.classes`` as class indices of the data (refused naming the key otherwise; before any training)."""
    if classes is None:
        return None
    bad = [c for c in classes if not isinstance(c, int) or not 0 <= c < n]
    if bad:
        raise PrunelabError(
            "criterion.classes", f"{bad[0]!r} is not a class index of this data (0..{n - 1})", "name class indices"
        )
    return list(classes)


def _check_classes(classes: Sequence[int] | None, context: ScoringContext) -> list[int] | None:
    return check_classes(classes, int(context.extra.get("num_classes", 0)))


def rank_stability(first: dict[str, Tensor], second: dict[str, Tensor]) -> float:
    """Spearman correlation between two score dicts over every scored unit (ties broken by position): how stable a
    ranking is across two disjoint halves of the scoring batches."""
    a = torch.cat([v.flatten().double() for v in first.values()])
    b = torch.cat([second[k].flatten().double() for k in first])
    if a.numel() < 2:
        return float("nan")
    ra = torch.argsort(torch.argsort(a, stable=True), stable=True).double()
    rb = torch.argsort(torch.argsort(b, stable=True), stable=True).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-30))


class _PerClass:
    """A data-driven criterion scored on each class's examples apart, each class normalised by its mean score, then
    combined (see the module docstring). After scoring, ``last_stats`` holds the Spearman correlation of the
    combined ranking computed from the first and the second half of the scoring batches (``rank_stability``)."""

    needs_data = True

    def __init__(
        self,
        num_batches: int = 10,
        reduce: str = "max",
        classes: list[int] | None = None,
        weights: list[float] | None = None,
    ):
        if reduce not in REDUCE:
            raise PrunelabError("criterion.reduce", f"{reduce!r} is not a reduction", f"use one of {list(REDUCE)}")
        if int(num_batches) < 1:
            raise PrunelabError("criterion.num_batches", f"{num_batches} batches", "e.g. criterion.num_batches=10")
        self.num_batches, self.reduce = int(num_batches), reduce
        self.classes = None if classes is None else [int(c) for c in classes]
        self.weights = None if weights is None else [float(w) for w in weights]
        self.last_stats: dict[str, float] = {}

    def base_scores(self, model: nn.Module, masks: dict[str, Tensor], part: list, context: ScoringContext) -> dict:
        raise NotImplementedError

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        if batches is None:
            raise PrunelabError("criterion", "this criterion needs training batches", "run it through prunelab")
        listed = list(itertools.islice(batches, self.num_batches))
        keep = _check_classes(self.classes, context)
        out = self._scored(model, masks, listed, keep, context)
        half = len(listed) // 2
        if half >= 1:  # the same scoring on two disjoint halves of the batches
            first = self._scored(model, masks, listed[:half], keep, context)
            second = self._scored(model, masks, listed[half:], keep, context)
            self.last_stats = {"rank_stability": rank_stability(first, second)}
        return out

    def _scored(self, model, masks, listed: list, keep: list[int] | None, context) -> dict[str, Tensor]:
        per = class_batches(iter(listed), len(listed), keep)
        if not per:
            raise PrunelabError("criterion.classes", "no training example of the scored classes", "name other ones")
        each: dict[int, dict[str, Tensor]] = {}
        counts: dict[int, int] = {}
        for c, part in per.items():
            raw = self.base_scores(model, masks, part, context)
            scale = torch.cat([v.flatten().double() for v in raw.values()]).mean().clamp_min(1e-30)
            each[c] = {k: (v.double() / scale).float() for k, v in raw.items()}
            counts[c] = sum(len(y) for _, y in part)
        return self._combine(each, counts)

    def _combine(self, each: dict[int, dict[str, Tensor]], counts: dict[int, int]) -> dict[str, Tensor]:
        keys = next(iter(each.values())).keys()
        stacked = {k: torch.stack([each[c][k] for c in each]) for k in keys}  # (classes, units)
        if self.reduce == "max":
            return {k: v.max(0).values for k, v in stacked.items()}
        if self.reduce == "mean":
            return {k: v.mean(0) for k, v in stacked.items()}
        if self.weights is not None:
            missing = [c for c in each if c >= len(self.weights)]
            if missing:
                raise PrunelabError("criterion.weights", f"no weight for class {missing[0]}", "give one per class")
            w = torch.tensor([self.weights[c] for c in each])
        else:  # inverse share of the scored examples: every class weighs the same in total
            total = sum(counts.values())
            w = torch.tensor([total / counts[c] for c in each], dtype=torch.float32)
        w = w / w.sum()
        shape = (-1,) + (1,) * (next(iter(stacked.values())).dim() - 1)
        return {k: (w.view(shape) * v).sum(0) for k, v in stacked.items()}


class PerClassTaylor(_PerClass):
    structured = True
    group_kinds = ALL_KINDS

    def __init__(self, num_batches: int = 10, reduce: str = "max", classes=None, weights=None, scope: str = "global"):
        super().__init__(num_batches, reduce, classes, weights)
        self.scope = scope

    def base_scores(self, model, masks, part, context):
        return TaylorFilter(num_batches=len(part)).scores(model, masks, iter(part), context)


class PerClassSNIP(_PerClass):
    """SNIP's abs(g * w) per class (unstructured)."""

    structured = False
    group_kinds: tuple[str, ...] = ()

    def __init__(self, num_batches: int = 10, reduce: str = "max", classes=None, weights=None, scope: str = "global"):
        super().__init__(num_batches, reduce, classes, weights)
        self.scope = scope

    def base_scores(self, model, masks, part, context):
        from prunelab.pruning.criteria.gradients import SNIP

        return SNIP(num_batches=len(part), scope=self.scope).scores(model, masks, iter(part), context)


class PerClassActivation(_PerClass):
    """Activation energy (mean squared post-BN, post-ReLU map) per class (structured, conv kernels)."""

    structured = True
    group_kinds = ("conv", "flatten")
    scope = "layer"

    def base_scores(self, model, masks, part, context):
        from prunelab.pruning.criteria.activations import ActivationEnergy

        n = sum(len(y) for _, y in part)
        return ActivationEnergy(num_samples=n).scores(model, masks, iter(part), context)


class ClassCount:
    structured = True
    group_kinds = ALL_KINDS
    needs_data = True
    scope = "global"

    def __init__(self, num_batches: int = 10, threshold: float = 1e-50, classes: list[int] | None = None):
        self.num_batches, self.threshold = int(num_batches), float(threshold)
        self.classes = None if classes is None else [int(c) for c in classes]

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        per = class_batches(batches, self.num_batches, _check_classes(self.classes, context))
        total = {g.key: torch.zeros(g.out_channels) for g in context.groups}
        for part in per.values():
            hits: dict[str, Tensor] = {}
            seen = 0
            for x, y in part:
                for key, hit in self._hits(model, context.groups, x, y).items():
                    hits[key] = hits.get(key, 0) + hit
                seen += len(y)
            for key, h in hits.items():
                total[key] += (h / max(seen, 1)).max(dim=1).values  # share of the class's examples, best position
        return total

    def _hits(self, model: nn.Module, groups: list, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Per group: (filters, positions) count of examples whose abs(a * dL/da) exceeds the threshold."""
        outputs: dict[str, Tensor] = {}
        grads: dict[str, Tensor] = {}

        def tap(key: str):
            def hook(module, inputs, out):
                outputs[key] = out
                out.register_hook(lambda g: grads.__setitem__(key, g))

            return hook

        taps = {(g.batchnorms[-1] if g.batchnorms else g.key): g.key for g in groups}
        handles = [model.get_submodule(name).register_forward_hook(tap(key)) for name, key in taps.items()]
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            model.zero_grad(set_to_none=True)
            functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
        finally:
            for h in handles:
                h.remove()
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        out = {}
        for key, a in outputs.items():
            g = grads.get(key, torch.zeros_like(a))
            strong = ((a.detach() * g).abs() > self.threshold).float().cpu()  # (N, C, ...)
            out[key] = strong.flatten(2).sum(0) if strong.dim() > 2 else strong.sum(0).unsqueeze(1)
        return out
