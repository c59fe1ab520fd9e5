"""Class-damage building blocks (prunelab.training.damage) against plain-Python loops on a small fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prunelab.training import damage

C = 4


@pytest.fixture
def fixture():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, 200)
    dense = np.where(rng.random(200) < 0.85, labels, rng.integers(0, C, 200))
    pred = np.where(rng.random(200) < 0.75, labels, rng.integers(0, C, 200))
    logits = rng.normal(size=(200, C)) + 2.0 * np.eye(C)[pred]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, dense, pred, probs


def _acc(pred, labels, c):
    idx = [i for i in range(len(labels)) if labels[i] == c]
    return sum(pred[i] == c for i in idx) / len(idx)


def test_flip_rate_counts_changed_labels_per_true_class(fixture):
    labels, dense, pred, _ = fixture
    overall, per_class = damage.flip_rate(dense, pred, labels, C)
    assert overall == pytest.approx(sum(d != p for d, p in zip(dense, pred, strict=True)) / len(labels))
    for c in range(C):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        assert per_class[c] == pytest.approx(sum(dense[i] != pred[i] for i in idx) / len(idx))
    same, per = damage.flip_rate(dense, dense, labels, C)
    assert same == 0 and not per.any()


def test_accuracy_gaps_and_their_spread(fixture):
    labels, dense, pred, _ = fixture
    out = damage.accuracy_gaps(dense, pred, labels, C)
    gaps = [_acc(dense, labels, c) - _acc(pred, labels, c) for c in range(C)]
    mean = sum(gaps) / C
    assert out["gap"] == pytest.approx(gaps) and out["mean"] == pytest.approx(mean)
    assert out["std"] == pytest.approx(math.sqrt(sum((g - mean) ** 2 for g in gaps) / C))
    centred = sorted(g - mean for g in gaps)
    assert out["quantiles"][0.0] == pytest.approx(centred[0]) and out["quantiles"][1.0] == pytest.approx(centred[-1])
    assert out["quantiles"][0.5] == pytest.approx((centred[1] + centred[2]) / 2)
    assert out["worst_class"] == max(range(C), key=lambda c: gaps[c])


def _rates(p, labels, c):
    fn = sum(labels[i] == c and p[i] != c for i in range(len(labels)))
    fp = sum(labels[i] != c and p[i] == c for i in range(len(labels)))
    pos = sum(labels == c)
    return fn / pos, fp / (len(labels) - pos)


def test_delta_error_rates_are_one_vs_rest(fixture):
    labels, dense, pred, _ = fixture
    out = damage.delta_error_rates(dense, pred, labels, C)
    for c in range(C):
        (fnr_d, fpr_d), (fnr, fpr) = _rates(dense, labels, c), _rates(pred, labels, c)
        assert out["delta_fnr"][c] == pytest.approx(fnr - fnr_d) and out["delta_fpr"][c] == pytest.approx(fpr - fpr_d)


def test_recall_minus_accuracy(fixture):
    labels, _, pred, _ = fixture
    acc = sum(p == y for p, y in zip(pred, labels, strict=True)) / len(labels)
    assert damage.recall_minus_accuracy(pred, labels, C) == pytest.approx(
        [_acc(pred, labels, c) - acc for c in range(C)]
    )


def test_expected_calibration_error_matches_guo_et_al(fixture):
    labels, _, _, probs = fixture
    bins, n, total = 15, len(labels), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i in range(n) if lo < probs[i].max() <= hi]
        if idx:
            acc = sum(probs[i].argmax() == labels[i] for i in idx) / len(idx)
            conf = sum(probs[i].max() for i in idx) / len(idx)
            total += len(idx) / n * abs(acc - conf)
    assert damage.expected_calibration_error(probs, labels) == pytest.approx(total)
    perfect = np.eye(C)[labels]
    assert damage.expected_calibration_error(perfect, labels) == 0.0


def test_a_class_without_test_examples_is_nan_not_zero():
    labels, pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    assert np.isnan(damage.per_class_accuracy(pred, labels, 3)[2])
    assert np.isnan(damage.flip_rate(labels, pred, labels, 3)[1][2])
    with pytest.raises(ValueError, match="same shape"):
        damage.flip_rate(labels, pred[:3], labels, 3)
