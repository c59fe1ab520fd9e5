"""Imbalance transforms of a (x, y) split: one-vs-rest with a target ratio, per-class keep fractions, long tail.

All are deterministic for a generator seed and keep the original order of the kept examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from prunelab.errors import PrunelabError


def _check_class(key: str, index: int, num_classes: int) -> int:
    if not isinstance(index, int) or not 0 <= index < num_classes:
        raise PrunelabError(
            key,
            f"class index {index} is out of range for {num_classes} classes",
            f"use an index in 0..{num_classes - 1}",
        )
    return index


def _subsample(idx: Tensor, keep: int, gen: torch.Generator) -> Tensor:
    keep = max(1, min(len(idx), int(keep)))
    chosen = torch.randperm(len(idx), generator=gen)[:keep]
    return idx[chosen.sort().values]


def keep_indices(y: Tensor, per_class_keep: Mapping[int, int], gen: torch.Generator) -> Tensor:
    """Indices keeping ``per_class_keep[c]`` random examples of class c (all of a class not listed)."""
    kept = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        kept.append(_subsample(idx, per_class_keep[c], gen) if c in per_class_keep else idx)
    return torch.cat(kept).sort().values


def one_vs_rest(y: Tensor, positive: int, num_classes: int) -> Tensor:
    """Relabel: 1 for ``positive``, 0 for every other class."""
    _check_class("data.imbalance.positive_class", positive, num_classes)
    return (y == positive).long()


def ratio_keep(y_binary: Tensor, neg_pos_ratio: float) -> dict[int, int]:
    """How many negatives (0) and positives (1) to keep so that negatives/positives = ``neg_pos_ratio``."""
    if neg_pos_ratio <= 0:
        raise PrunelabError("data.imbalance.neg_pos_ratio", f"{neg_pos_ratio} must be > 0", "e.g. 5.0 for 5:1")
    n_neg, n_pos = int((y_binary == 0).sum()), int((y_binary == 1).sum())
    if n_neg >= neg_pos_ratio * n_pos:
        return {0: round(neg_pos_ratio * n_pos), 1: n_pos}
    return {0: n_neg, 1: max(1, round(n_neg / neg_pos_ratio))}


def fraction_keep(y: Tensor, fractions: Mapping[int, float], num_classes: int) -> dict[int, int]:
    out = {}
    for c, f in fractions.items():
        c = _check_class("data.imbalance.keep_fraction", int(c), num_classes)
        if not 0.0 < float(f) <= 1.0:
            raise PrunelabError(f"data.imbalance.keep_fraction.{c}", f"{f} is outside (0, 1]", "use a share in (0, 1]")
        out[c] = round(float(f) * int((y == c).sum()))
    return out


def long_tail_keep(y: Tensor, num_classes: int, ratio: float, order: Sequence[int] | None = None) -> dict[int, int]:
    """Exponential profile (Cui et al. 2019): class at rank k keeps n_max * ratio^(-k/(C-1)) examples."""
    if ratio < 1:
        raise PrunelabError("data.imbalance.long_tail_ratio", f"{ratio} must be >= 1", "e.g. 10 or 100")
    counts = torch.bincount(y, minlength=num_classes)
    n_max = int(counts.min())  # every class can supply the head count
    order = list(order) if order is not None else list(range(num_classes))
    denom = max(1, num_classes - 1)
    return {c: max(1, round(n_max * ratio ** (-k / denom))) for k, c in enumerate(order)}
