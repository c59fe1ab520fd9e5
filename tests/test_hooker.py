"""Welch counts and PIE sets on hand-built prediction arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from prunelab.analysis.hooker import class_impact, modal_labels, per_class_recall, pie_accuracy, pies


def test_modal_labels_tie_goes_to_the_largest_label():
    preds = np.array([[0, 1, 2, 2], [1, 1, 2, 0], [1, 0, 0, 1], [0, 0, 1, 1]])
    # example 0: 0,1,1,0 -> tie {0,1} -> 1; example 1: 1,1,0,0 -> tie -> 1; example 2: 2,2,0,1 -> 2;
    # example 3: 2,0,1,1 -> 1
    assert modal_labels(preds, 3).tolist() == [1, 1, 2, 1]


def test_pies_and_subset_accuracy():
    labels = np.array([0, 1, 2, 0, 1])
    dense = np.array([[0, 1, 2, 0, 1], [0, 1, 2, 0, 2], [0, 1, 1, 0, 1]])  # modes: 0 1 2 0 1
    pruned = np.array([[0, 2, 2, 1, 1], [0, 2, 1, 1, 1], [1, 2, 2, 0, 1]])  # modes: 0 2 2 1 1
    pie = pies(dense, pruned, 3)
    assert pie.tolist() == [False, True, False, True, False]
    acc = pie_accuracy(pruned, labels, pie)
    assert acc["pie_count"] == 2 and acc["acc_pie"] == pytest.approx(1 / 6)  # 1 right of 6 predictions
    assert acc["acc_non_pie"] == pytest.approx(7 / 9)


def test_class_impact_counts_a_damaged_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)

    def population(n, damage):
        out = []
        for _ in range(n):
            p = labels.copy()
            for c in range(4):  # each model errs on ~10% of every class, class 3 much more when damaged
                idx = np.nonzero(labels == c)[0]
                wrong = rng.choice(idx, size=5 + (damage if c == 3 else 0), replace=False)
                p[wrong] = (c + 1) % 4
            out.append(p)
        return np.array(out)

    dense, pruned = population(8, 0), population(8, 20)
    impact = class_impact(dense, pruned, labels, 4)
    assert impact.impacted[3] and impact.shift[3] < 0
    # the statistic is scipy's Welch test on mean-shifted recall, by hand:
    d = per_class_recall(dense, labels, 4)[:, 3] - (dense == labels).mean(1).mean()
    c = per_class_recall(pruned, labels, 4)[:, 3] - (pruned == labels).mean(1).mean()
    assert impact.t[3] == pytest.approx(stats.ttest_ind(c, d, equal_var=False).statistic)
    same = class_impact(dense, dense.copy(), labels, 4)
    assert same.count == 0


def test_welch_equals_scipys_ttest_ind():
    import warnings

    from scipy import stats

    from prunelab.analysis.hooker import welch

    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.normal(0, 1, (rng.integers(2, 9), 6)), rng.normal(0.3, 2, (rng.integers(2, 9), 6))
        a[:, 3] = b[:, 3] = 0.5  # constant in both: NaN
        a[:, 4] = np.nan  # a class absent from the labels
        a[:, 5], b[:, 5] = 0.9, 0.5  # constant in both, different means: t infinite, p 0
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            t, p = stats.ttest_ind(a, b, axis=0, equal_var=False)
        mine = welch(a, b)
        assert np.allclose(p, mine[1], equal_nan=True)
        huge = np.abs(np.nan_to_num(t)) > 1e6  # scipy rounds some constant columns to a huge finite t, welch to inf
        assert np.allclose(t[~huge], mine[0][~huge], equal_nan=True) and np.isinf(mine[0][huge]).all()
