"""Class damage of a compressed model against its dense model, from test predictions (issue 29, first part).

Pure NumPy on label vectors and probabilities: the building blocks that the per-round records will use. Each is
defined here as read in its source; where a paper's own definition has not been checked yet, the function computes
the per-class vector the issue names and says so.

- :func:`flip_rate`: the share of test examples whose predicted label differs between the dense and the
  compressed model, overall and per true class (Hooker et al. 2020, "Characterising bias in compressed models":
  compression-identified exemplars are the examples whose label flips).
- :func:`accuracy_gaps`: gap_c = acc_dense(c) - acc(c) per class, with the mean gap, its spread and the
  quantiles of gap_c - mean (Hashemizadeh, Ramirez et al. 2023, "Balancing Act", arXiv 2310.20673).
- :func:`delta_error_rates`: per-class one-vs-rest FNR and FPR of the compressed model minus the dense model's
  (the per-class vectors behind Blakeney et al. 2021's CEV and SDE, whose exact formulas are not implemented
  here yet: unverified).
- :func:`recall_minus_accuracy`: recall_c - overall accuracy per class (the quantity Good et al. 2022's recall
  distortion compares before and after pruning; their summary statistic is not implemented here yet).
- :func:`expected_calibration_error`: equal-width confidence bins, sum over bins of |B|/n * |acc(B) - conf(B)|
  (the usual definition, attributed to Guo et al. 2017, "On calibration of modern neural networks"; written from
  that common form, not re-read in the paper in this session: the bin count (15) and the (lo, hi] edges are this
  module's choice, to be checked against the paper with the rest of issue 29).
"""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, *preds: np.ndarray) -> None:
    if any(p.shape != labels.shape for p in preds):
        raise ValueError("predictions and labels must have the same shape")


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class (its examples predicted correctly); NaN for a class without test examples."""
    _check(labels, pred)
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    hits = np.bincount(labels[pred == labels], minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def flip_rate(dense: np.ndarray, pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, np.ndarray]:
    """(overall share of flipped labels, share per true class; NaN for a class without test examples)."""
    _check(labels, dense, pred)
    flipped = dense != pred
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    flips = np.bincount(labels[flipped], minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, flips / np.maximum(counts, 1), np.nan)
    return float(flipped.mean()) if len(labels) else float("nan"), per_class


QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def accuracy_gaps(dense: np.ndarray, pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """gap_c = acc_dense(c) - acc(c); its mean, population standard deviation, the quantiles of gap_c - mean
    (:data:`QUANTILES`) and the class with the largest gap (classes without test examples left out)."""
    gap = per_class_accuracy(dense, labels, num_classes) - per_class_accuracy(pred, labels, num_classes)
    seen = ~np.isnan(gap)
    mean = float(gap[seen].mean())
    centred = gap[seen] - mean
    return {
        "gap": gap,
        "mean": mean,
        "std": float(gap[seen].std()),
        "quantiles": {q: float(np.quantile(centred, q)) for q in QUANTILES},
        "worst_class": int(np.flatnonzero(seen)[np.argmax(gap[seen])]),
    }


def _error_rates(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest FNR_c = FN/(TP+FN) and FPR_c = FP/(FP+TN) per class (NaN where undefined)."""
    fnr, fpr = np.full(num_classes, np.nan), np.full(num_classes, np.nan)
    for c in range(num_classes):
        pos, hit = labels == c, pred == c
        if pos.any():
            fnr[c] = float((pos & ~hit).sum() / pos.sum())
        if (~pos).any():
            fpr[c] = float((~pos & hit).sum() / (~pos).sum())
    return fnr, fpr


def delta_error_rates(dense: np.ndarray, pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Per class: FNR and FPR of the compressed model minus those of the dense model."""
    _check(labels, dense, pred)
    fnr_d, fpr_d = _error_rates(dense, labels, num_classes)
    fnr, fpr = _error_rates(pred, labels, num_classes)
    return {"delta_fnr": fnr - fnr_d, "delta_fpr": fpr - fpr_d}


def recall_minus_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """recall_c - overall accuracy, per class."""
    return per_class_accuracy(pred, labels, num_classes) - float((pred == labels).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over ``bins`` equal-width bins of the top-class probability, each bin (lo, hi]."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)
