"""Per-class classification metrics, computed once per epoch from all predictions and flattened to scalars.

Lightning can only log scalars, and torchmetrics' ``ClasswiseWrapper`` inside ``log_dict`` is a known papercut
(torchmetrics #815, #2091, #2683). prunelab gathers the epoch's probabilities and labels, computes every metric
with ``torchmetrics.functional`` on the full set (AUROC needs it anyway), and flattens to
``{stage}/{metric}/{class_name}`` and ``{stage}/{metric}_macro`` keys (the vocabulary in the README).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_confusion_matrix,
)

PER_CLASS = ("recall", "precision", "specificity", "f1", "auroc", "tp", "fp", "tn", "fn", "support")


def safe_name(name: str) -> str:
    """A class name usable in a metric key (no slashes or spaces)."""
    return re.sub(r"[^0-9A-Za-z_.+-]+", "_", str(name)).strip("_") or "class"


def _div(num: Tensor, den: Tensor) -> Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def per_class(probs: Tensor, targets: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Per-class tensors (length C) and the confusion matrix, from probabilities (N, C) and labels (N,)."""
    probs, targets = probs.float(), targets.long()
    cm = multiclass_confusion_matrix(probs, targets, num_classes=num_classes).double()  # rows: true, cols: pred
    tp = cm.diag()
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    present = (tp + fn) > 0
    auroc = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    if present.sum() >= 2:  # one-vs-rest AUROC is defined only for classes with positives and negatives
        auroc = multiclass_auroc(probs, targets, num_classes=num_classes, average=None, thresholds=None).double()
        auroc[~present | (tn + fp == 0)] = float("nan")
    recall, precision = _div(tp, tp + fn), _div(tp, tp + fp)
    return {
        "recall": recall,
        "precision": precision,
        "specificity": _div(tn, tn + fp),
        "f1": _div(2 * precision * recall, precision + recall),
        "auroc": auroc,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "support": tp + fn,
        "confusion": cm,
    }


def _macro(values: Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


def classification_metrics(
    probs: Tensor,
    targets: Tensor,
    class_names: Sequence[str],
    stage: str,
    positive_class: int | None = None,
) -> dict[str, float]:
    """Flat scalar metrics for one stage. With ``positive_class`` (binary tasks) adds FNR, FPR, positive AUROC."""
    c = len(class_names)
    pc = per_class(probs, targets, c)
    out: dict[str, float] = {f"{stage}/acc": float(multiclass_accuracy(probs, targets, c, average="micro"))}
    names = [safe_name(n) for n in class_names]
    for metric in PER_CLASS:
        for i, n in enumerate(names):
            out[f"{stage}/{metric}/{n}"] = float(pc[metric][i])
    for metric in ("recall", "precision", "specificity", "f1", "auroc"):
        out[f"{stage}/{metric}_macro"] = _macro(pc[metric])
    worst = int(torch.argmin(torch.where(pc["support"] > 0, pc["recall"], torch.inf)))
    out[f"{stage}/recall_worst"] = float(pc["recall"][worst])
    if positive_class is not None:
        p = positive_class
        out[f"{stage}/fnr"] = float(_div(pc["fn"][p], pc["fn"][p] + pc["tp"][p]))
        out[f"{stage}/fpr"] = float(_div(pc["fp"][p], pc["fp"][p] + pc["tn"][p]))
        out[f"{stage}/auroc_pos"] = float(pc["auroc"][p])
    return out


def worst_class(metrics: dict[str, float], class_names: Sequence[str], stage: str = "test") -> tuple[str, float]:
    """The class with the lowest recall among classes present in the stage's data, and that recall."""
    best: tuple[str, float] | None = None
    for n in class_names:
        key = safe_name(n)
        if metrics.get(f"{stage}/support/{key}", 1) <= 0:
            continue
        r = metrics[f"{stage}/recall/{key}"]
        if best is None or r < best[1]:
            best = (str(n), r)
    return best or ("-", float("nan"))
