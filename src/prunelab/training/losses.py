"""Losses. Every loss is an ``nn.Module`` called as ``loss(logits, targets)``.

Optional hooks, called by the run: ``configure(class_counts, positive_class)`` once the data are known, and
``set_round(round_)`` at the start of each pruning round (class weights that change by round).

Class-dependent losses follow Entezari & Saukh 2020 (docs/methods.md §1), with these readings of the paper:
- Eq. 2, weighted cross-entropy ``-sum_c gamma_c y_c log p_c``: each example's cross-entropy is multiplied by its
  class weight and the batch *mean* is taken (no division by the sum of weights, unlike ``cross_entropy(weight=)``).
- Eq. 3, the squared-hinge ranking loss, is ill-posed as printed (a leading minus sign and "sorted outputs r").
  prunelab implements the pairwise squared hinge that Eq. 4's AUC bound is about (Steck 2007):
  ``lambda * mean over (positive i, negative j) pairs in the batch of max(0, 1 - (s_i - s_j))^2``, where
  ``s = z_pos - logsumexp(z_other)`` is the positive class's log-odds score. Batches without both kinds add 0.
- Class-balanced weights (Cui et al. 2019): ``w_c = (1 - beta) / (1 - beta^n_c)``, rescaled to sum to C.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError


class CrossEntropy(nn.Module):
    """Plain cross-entropy (optionally label-smoothed)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return functional.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)


def class_balanced_weights(counts: Sequence[int] | Tensor, beta: float) -> Tensor:
    """Cui et al. 2019: inverse effective number of samples, rescaled so the weights sum to the class count."""
    n = torch.as_tensor(counts, dtype=torch.float64)
    if not 0.0 <= beta < 1.0:
        raise PrunelabError("loss.beta", f"{beta} is outside [0, 1)", "e.g. 0.999 or 0.99997")
    w = (1.0 - beta) / (1.0 - torch.pow(beta, n.clamp(min=1)))
    return (w * len(n) / w.sum()).float()


def pairwise_squared_hinge(logits: Tensor, targets: Tensor, positive: int, margin: float = 1.0) -> Tensor:
    """Mean over (positive, negative) pairs of max(0, margin - (s_pos - s_neg))^2 on the positive log-odds."""
    others = torch.cat([logits[:, :positive], logits[:, positive + 1 :]], dim=1)
    score = logits[:, positive] - torch.logsumexp(others, dim=1)
    is_pos = targets == positive
    if not is_pos.any() or is_pos.all():
        return logits.sum() * 0.0
    diff = score[is_pos][:, None] - score[~is_pos][None, :]
    return functional.relu(margin - diff).pow(2).mean()


class ClassDependentLoss(nn.Module):
    """Class-weighted cross-entropy plus ``lam`` x the pairwise squared-hinge ranking loss.

    Class weights, first that applies: ``weights`` (explicit, one per class); ``beta`` (class-balanced from the
    training counts); ``gamma`` (weight of the positive class, others 1), which may change by round through
    ``gamma_by_round`` (round r uses entry min(r, len - 1): ``[1, 5]`` is Entezari & Saukh's "black" setting).
    """

    def __init__(
        self,
        weights: Sequence[float] | None = None,
        beta: float | None = None,
        gamma: float = 1.0,
        gamma_by_round: Sequence[float] | None = None,
        lam: float = 0.0,
        margin: float = 1.0,
    ):
        super().__init__()
        self.explicit, self.beta, self.gamma = weights, beta, float(gamma)
        self.gamma_by_round = list(gamma_by_round) if gamma_by_round else None
        self.lam, self.margin = float(lam), float(margin)
        self.positive: int | None = None
        self.class_weights: Tensor
        self.register_buffer("class_weights", torch.ones(0), persistent=False)
        self._counts: Tensor | None = None
        self.round = 0

    def configure(self, class_counts: Tensor, positive_class: int | None) -> None:
        self._counts, self.positive = torch.as_tensor(class_counts), positive_class
        c = len(self._counts)
        if self.explicit is not None and len(self.explicit) != c:
            raise PrunelabError("loss.weights", f"{len(self.explicit)} weights for {c} classes", f"give {c} weights")
        needs_positive = self.lam > 0 or (self.explicit is None and self.beta is None)
        if needs_positive and positive_class is None and (self.lam > 0 or self.gamma != 1 or self.gamma_by_round):
            raise PrunelabError(
                "loss",
                "gamma and the ranking loss need a positive class",
                "set data.positive_class or data.imbalance.positive_class",
            )
        self.set_round(self.round)

    def set_round(self, round_: int) -> None:
        self.round = round_
        if self._counts is None:
            return
        c = len(self._counts)
        if self.explicit is not None:
            w = torch.tensor(list(self.explicit), dtype=torch.float32)
        elif self.beta is not None:
            w = class_balanced_weights(self._counts, self.beta)
        else:
            w = torch.ones(c)
            if self.positive is not None:
                by_round = self.gamma_by_round
                w[self.positive] = by_round[min(round_, len(by_round) - 1)] if by_round else self.gamma
        self.class_weights = w.to(self.class_weights.device)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        ce = functional.cross_entropy(logits, targets, reduction="none")
        if self.class_weights.numel():
            ce = ce * self.class_weights.to(logits.device)[targets]
        loss = ce.mean()
        if self.lam > 0 and self.positive is not None:
            loss = loss + self.lam * pairwise_squared_hinge(logits, targets, self.positive, self.margin)
        return loss
