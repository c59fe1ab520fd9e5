"""Hooker et al.'s per-class impact and Pruning Identified Exemplars (PAPERS.md §3), on prediction arrays.

Populations are arrays over models: ``preds`` (n_models, n_examples) predicted labels, ``labels`` (n_examples,).

- Impacted classes: for class c, Welch's two-sided t-test (``scipy.stats.ttest_ind(equal_var=False)``) between
  the dense models' ``recall_c - mean top-1 of the dense population`` and the compressed models'
  ``recall_c - mean top-1 of that population`` ("mean-shifted class accuracy"); p <= alpha (0.05) means the
  class is disparately impacted.
- PIEs: an example whose modal predicted label over the compressed population differs from the modal label over
  the dense population. Ties among modes go to the **largest** class index (the authors' ``mode().max()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def per_class_recall(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(n_models, C) recall of each class for each model (NaN for a class absent from ``labels``)."""
    preds = np.atleast_2d(preds)
    out = np.full((len(preds), num_classes), np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[:, c] = (preds[:, mask] == c).mean(1)
    return out


def top1(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (np.atleast_2d(preds) == labels[None]).mean(1)


@dataclass
class ClassImpact:
    t: np.ndarray  # (C,) Welch t statistics
    p: np.ndarray  # (C,) two-sided p-values
    impacted: np.ndarray  # (C,) bool, p <= alpha
    shift: np.ndarray  # (C,) mean-shifted recall difference, compressed - dense

    @property
    def count(self) -> int:
        return int(self.impacted.sum())


def class_impact(dense: np.ndarray, compressed: np.ndarray, labels: np.ndarray, num_classes: int,
                 alpha: float = 0.05) -> ClassImpact:  # fmt: skip
    """Welch tests of mean-shifted per-class recall between two populations of predictions."""
    if len(dense) < 2 or len(compressed) < 2:
        raise ValueError("each population needs at least 2 models for a t-test")
    d = per_class_recall(dense, labels, num_classes) - top1(dense, labels).mean()
    c = per_class_recall(compressed, labels, num_classes) - top1(compressed, labels).mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        t, p = stats.ttest_ind(c, d, axis=0, equal_var=False)
    t, p = np.asarray(t, float), np.asarray(p, float)
    impacted = np.nan_to_num(p, nan=1.0) <= alpha
    return ClassImpact(t, p, impacted, np.nanmean(c, 0) - np.nanmean(d, 0))


def modal_labels(preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Per example, the most frequent predicted label over the models; ties go to the largest label."""
    preds = np.atleast_2d(preds)
    counts = np.zeros((preds.shape[1], num_classes), dtype=np.int64)
    for row in preds:
        counts[np.arange(preds.shape[1]), row] += 1
    # argmax returns the first maximum: search the reversed class axis to get the largest tied label
    return num_classes - 1 - np.argmax(counts[:, ::-1], axis=1)


def pies(dense: np.ndarray, compressed: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean (n_examples,): Pruning Identified Exemplars (modal labels of the two populations differ)."""
    return modal_labels(dense, num_classes) != modal_labels(compressed, num_classes)


def pie_accuracy(preds: np.ndarray, labels: np.ndarray, pie: np.ndarray) -> dict[str, float]:
    """Mean top-1 of a population on the PIE and non-PIE subsets."""
    out = {"pie_count": int(pie.sum()), "pie_share": float(pie.mean())}
    for name, subset in (("pie", pie), ("non_pie", ~pie)):
        out[f"acc_{name}"] = float(top1(np.atleast_2d(preds)[:, subset], labels[subset]).mean()) if subset.any() \
            else float("nan")  # fmt: skip
    return out
