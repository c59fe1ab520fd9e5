"""Losses against hand-computed values on tiny batches."""

from __future__ import annotations

import math

import pytest
import torch

from prunelab.errors import PrunelabError
from prunelab.training.losses import ClassDependentLoss, class_balanced_weights, pairwise_squared_hinge


def test_class_balanced_weights_by_hand():
    beta, counts = 0.99, [100, 10]
    raw = [(1 - beta) / (1 - beta**100), (1 - beta) / (1 - beta**10)]  # 0.0158..., 0.1095...
    expected = [r * 2 / sum(raw) for r in raw]
    assert class_balanced_weights(counts, beta).tolist() == pytest.approx(expected, rel=1e-6)
    assert class_balanced_weights(counts, 0.0).tolist() == pytest.approx([1.0, 1.0])  # beta 0: no re-weighting


def test_pairwise_squared_hinge_by_hand():
    # binary logits: s = z1 - z0; positives s = 2.0 and 0.5, negatives s = 0.0 and 1.0
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.5], [0.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([1, 1, 0, 0])
    pairs = [(2.0, 0.0), (2.0, 1.0), (0.5, 0.0), (0.5, 1.0)]
    expected = sum(max(0.0, 1 - (p - n)) ** 2 for p, n in pairs) / 4  # (0 + 0 + 0.25 + 2.25) / 4
    assert pairwise_squared_hinge(logits, targets, 1).item() == pytest.approx(expected)
    assert pairwise_squared_hinge(logits[:2], targets[:2], 1).item() == 0.0  # no negatives: no pairs


def test_weighted_ce_plus_ranking_by_hand_and_gamma_by_round():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    targets = torch.tensor([0, 1, 1])
    loss = ClassDependentLoss(gamma_by_round=[1.0, 5.0], lam=2.0)
    loss.configure(torch.tensor([10, 2]), positive_class=1)
    ce = [math.log(1 + math.e**-1), math.log(1 + math.e**-1), math.log(2)]
    rank = pairwise_squared_hinge(logits, targets, 1).item()
    assert loss(logits, targets).item() == pytest.approx(sum(ce) / 3 + 2.0 * rank, rel=1e-6)
    loss.set_round(1)
    assert loss(logits, targets).item() == pytest.approx((ce[0] + 5 * ce[1] + 5 * ce[2]) / 3 + 2.0 * rank, rel=1e-6)


def test_explicit_and_balanced_weights_and_errors():
    logits, targets = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([2])
    ce = torch.nn.functional.cross_entropy(logits, targets).item()
    loss = ClassDependentLoss(weights=[1.0, 1.0, 3.0])
    loss.configure(torch.tensor([5, 5, 5]), None)
    assert loss(logits, targets).item() == pytest.approx(3 * ce)
    with pytest.raises(PrunelabError, match=r"loss\.weights"):
        ClassDependentLoss(weights=[1.0, 2.0]).configure(torch.tensor([1, 1, 1]), None)
    with pytest.raises(PrunelabError, match="positive class"):
        ClassDependentLoss(lam=1.0).configure(torch.tensor([3, 3]), None)
