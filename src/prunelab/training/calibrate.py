"""Post-hoc threshold recalibration (``calibrate=thresholds``; issue 29, item 5): no training, validation only.

Iofinova, Peste and Alistarh (CVPR 2023, "Bias in pruned vision models") counter the bias of pruned models by
choosing, per attribute, the decision threshold on validation data so that the number of predicted positives equals
the number of true positives (their code: IST-DASLab/pruned-vision-model-bias, ``bias_utils/runs.py``,
``get_thresholds``, read at commit 400e5a5: the k-th largest validation logit, k = the number of positives, with
``output > threshold`` as the decision). prunelab applies the same rule to its single-label tasks:

- two classes: one threshold on the log-odds of the positive class, halfway between the k-th and (k+1)-th largest
  validation log-odds, so that exactly k validation examples are predicted positive when there are no ties (the
  reference code's ``>`` against the k-th value itself predicts k - 1);
- more classes (prunelab's extension, not in the paper): one offset per class subtracted from the log-probabilities
  before the argmax, found by damped fixed-point steps that move each class's predicted count on validation toward
  its true count (the offsets with the smallest total count mismatch are kept).

The offsets are fitted from validation predictions and labels alone (:func:`fit_offsets` takes nothing else) and
then applied to the test predictions; the recalibrated test metrics are recorded beside the raw ones as
``calibrated/test/...``. Per-class AUROC of a two-class task is unchanged (a monotone shift of the score); with more
classes the renormalised scores can move it slightly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-12


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None))


def fit_offsets(
    val_probs: np.ndarray, val_labels: np.ndarray, positive_class: int | None = None, iters: int = 400
) -> np.ndarray:
    """Per-class offsets b (length C) fitted on validation: the decision is argmax(log p - b)."""
    logp, labels = _log(val_probs), np.asarray(val_labels)
    n, c = logp.shape
    if c == 2:
        pos = 1 if positive_class is None else int(positive_class)
        score = logp[:, pos] - logp[:, 1 - pos]
        k = int((labels == pos).sum())
        ranked = np.sort(score)[::-1]
        if k == 0:
            t = float(ranked[0]) + 1.0
        elif k == n:
            t = float(ranked[-1]) - 1.0
        else:
            t = float(ranked[k - 1] + ranked[k]) / 2.0
        out = np.zeros(2)
        out[pos] = t
        return out
    target = np.bincount(labels, minlength=c).astype(np.float64)
    b = np.zeros(c)
    best, best_b = np.inf, b.copy()
    for it in range(iters):
        counts = np.bincount((logp - b).argmax(1), minlength=c).astype(np.float64)
        miss = float(np.abs(counts - target).sum())
        if miss < best:
            best, best_b = miss, b.copy()
        if miss == 0:
            break
        b = b + (0.5 / (1.0 + it / 50.0)) * (np.log(counts + 1.0) - np.log(target + 1.0))
        b -= b.mean()
    return best_b


def apply(probs: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Probabilities renormalised after the offsets: their argmax is the recalibrated decision."""
    z = _log(probs) - offsets
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def calibrated_fields(
    val: tuple[np.ndarray, np.ndarray],
    test_probs: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[Any],
    positive_class: int | None = None,
) -> dict[str, float]:
    """``calibrated/test/...`` metrics of the recalibrated test predictions, the fitted offsets
    (``calibrated/offset/<class>``) and the share of validation examples each class is predicted for afterwards."""
    import torch

    from prunelab.training.damage import key_name
    from prunelab.training.metrics import classification_metrics

    offsets = fit_offsets(val[0], val[1], positive_class)
    adjusted = apply(test_probs, offsets)
    metrics = classification_metrics(
        torch.from_numpy(adjusted).float(),
        torch.from_numpy(np.asarray(test_labels)),
        class_names,
        "test",
        positive_class,
    )
    out = {f"calibrated/{k}": v for k, v in metrics.items()}
    val_pred = apply(val[0], offsets).argmax(1)
    for i, name in enumerate(class_names):
        out[f"calibrated/offset/{key_name(name)}"] = float(offsets[i])
        out[f"calibrated/val_predicted_share/{key_name(name)}"] = float((val_pred == i).mean())
    return out
