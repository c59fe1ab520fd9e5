"""Per-class metrics equal scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from prunelab.training.metrics import classification_metrics, safe_name, worst_class


def random_predictions(n: int, c: int, seed: int, skew: float = 2.0):
    gen = np.random.default_rng(seed)
    labels = gen.integers(0, c, n)
    logits = gen.normal(size=(n, c))
    logits[np.arange(n), labels] += skew * gen.random(n)  # informative but imperfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return probs.astype(np.float32), labels


@pytest.mark.parametrize("c,seed", [(3, 0), (10, 1), (5, 2)])
def test_per_class_metrics_match_sklearn(c, seed):
    probs, labels = random_predictions(400, c, seed)
    names = [f"class {i}/x" for i in range(c)]
    m = classification_metrics(torch.tensor(probs), torch.tensor(labels), names, "test")
    preds = probs.argmax(1)
    cm = skm.confusion_matrix(labels, preds, labels=range(c))
    recall = skm.recall_score(labels, preds, average=None, labels=range(c), zero_division=0)
    precision = skm.precision_score(labels, preds, average=None, labels=range(c), zero_division=0)
    f1 = skm.f1_score(labels, preds, average=None, labels=range(c), zero_division=0)
    for i, name in enumerate(names):
        k = safe_name(name)
        assert "/" not in k and " " not in k
        y = (labels == i).astype(int)
        tn, fp, fn, tp = skm.confusion_matrix(y, (preds == i).astype(int)).ravel()
        assert m[f"test/recall/{k}"] == pytest.approx(recall[i], abs=1e-6)
        assert m[f"test/precision/{k}"] == pytest.approx(precision[i], abs=1e-6)
        assert m[f"test/f1/{k}"] == pytest.approx(f1[i], abs=1e-6)
        assert m[f"test/specificity/{k}"] == pytest.approx(tn / (tn + fp), abs=1e-6)
        assert (m[f"test/fn/{k}"], m[f"test/fp/{k}"], m[f"test/tp/{k}"], m[f"test/tn/{k}"]) == (
            fn,
            fp,
            tp,
            tn,
        )
        assert m[f"test/support/{k}"] == cm[i].sum()
        assert m[f"test/auroc/{k}"] == pytest.approx(skm.roc_auc_score(y, probs[:, i]), abs=1e-5)
    assert m["test/acc"] == pytest.approx(skm.accuracy_score(labels, preds), abs=1e-6)
    assert m["test/recall_macro"] == pytest.approx(recall.mean(), abs=1e-6)
    ovr = skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=range(c))
    assert m["test/auroc_macro"] == pytest.approx(ovr, abs=1e-5)


def test_binary_fnr_fpr_and_positive_auroc():
    probs, labels = random_predictions(300, 2, 7, skew=1.0)
    m = classification_metrics(torch.tensor(probs), torch.tensor(labels), ["neg", "pos"], "val", positive_class=1)
    tn, fp, fn, tp = skm.confusion_matrix(labels, probs.argmax(1)).ravel()
    assert m["val/fnr"] == pytest.approx(fn / (fn + tp))
    assert m["val/fpr"] == pytest.approx(fp / (fp + tn))
    assert m["val/auroc_pos"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]), abs=1e-5)


def test_absent_class_has_undefined_auroc_and_is_not_the_worst():
    probs, labels = random_predictions(200, 3, 3)
    labels[labels == 2] = 0  # class 2 never occurs
    m = classification_metrics(torch.tensor(probs), torch.tensor(labels), ["a", "b", "c"], "test")
    assert np.isnan(m["test/auroc/c"]) and m["test/support/c"] == 0
    name, recall = worst_class(m, ["a", "b", "c"])
    assert name in ("a", "b") and recall == min(m["test/recall/a"], m["test/recall/b"])


@pytest.mark.parametrize("decimals", [1, 2])
def test_auroc_with_tied_scores_matches_sklearn_exactly(decimals):
    """Rounded scores make long runs of ties: each run is one threshold, as in scikit-learn's ROC curve."""
    probs, labels = random_predictions(500, 4, 11)
    probs = np.round(probs, decimals)
    m = classification_metrics(torch.tensor(probs), torch.tensor(labels), list("abcd"), "val")
    for i, k in enumerate("abcd"):
        assert m[f"val/auroc/{k}"] == pytest.approx(skm.roc_auc_score(labels == i, probs[:, i]), abs=1e-12)


def test_fast_metrics_equal_torchmetrics_on_the_same_predictions():
    """The bincount confusion matrix and the one-sort AUROC give torchmetrics' figures (which they replaced)."""
    from torchmetrics.functional.classification import multiclass_auroc, multiclass_confusion_matrix

    from prunelab.training.metrics import auroc_ovr, confusion_matrix

    probs, labels = random_predictions(1000, 7, 5)
    p, y = torch.tensor(probs), torch.tensor(labels)
    assert torch.equal(confusion_matrix(p.argmax(1), y, 7), multiclass_confusion_matrix(p, y, num_classes=7))
    theirs = multiclass_auroc(p, y, num_classes=7, average=None, thresholds=None).double()
    assert torch.allclose(auroc_ovr(p, y), theirs, atol=1e-6)


def test_one_class_present_leaves_every_auroc_undefined():
    probs, _ = random_predictions(50, 3, 4)
    m = classification_metrics(torch.tensor(probs), torch.zeros(50, dtype=torch.long), ["a", "b", "c"], "test")
    assert all(np.isnan(m[f"test/auroc/{k}"]) for k in "abc") and np.isnan(m["test/auroc_macro"])
    assert m["test/support/a"] == 50 and m["test/acc"] == pytest.approx((probs.argmax(1) == 0).mean())
