"""Per-class classification metrics, computed once per epoch from all predictions and flattened to scalars.

Lightning can only log scalars, and torchmetrics' ``ClasswiseWrapper`` inside ``log_dict`` is a known papercut
(torchmetrics #815, #2091, #2683). prunelab gathers the epoch's probabilities and labels and computes every
per-class figure from two primitives, in plain tensor ops:

- one confusion matrix (``bincount`` of ``true * C + predicted``): accuracy, recall, precision, specificity, F1,
  TP/FP/TN/FN and support;
- one sort of the (N, C) probability matrix along the examples (every class's column at once): one-vs-rest AUROC
  by the trapezoidal rule over distinct thresholds, with tied scores as one threshold — what scikit-learn's
  ``roc_auc_score`` and torchmetrics' ``multiclass_auroc(thresholds=None)`` compute.

The results are flattened to ``{stage}/{metric}/{class_name}`` and ``{stage}/{metric}_macro`` keys (the vocabulary
in the README). Tests compare every figure with scikit-learn's on saved predictions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor

PER_CLASS = ("recall", "precision", "specificity", "f1", "auroc", "tp", "fp", "tn", "fn", "support")


def safe_name(name: str) -> str:
    """A class name usable in a metric key (no slashes or spaces)."""
    return re.sub(r"[^0-9A-Za-z_.+-]+", "_", str(name)).strip("_") or "class"


def _div(num: Tensor, den: Tensor) -> Tensor:
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def confusion_matrix(preds: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """(C, C) counts, rows true class, columns predicted class, from predicted and true labels (N,)."""
    flat = targets.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def auroc_ovr(probs: Tensor, targets: Tensor) -> Tensor:
    """One-vs-rest AUROC of every class (C,), float64; NaN where a class has no positive or no negative example.

    The (N, C) scores are sorted once along the examples; in each column the cumulative true- and false-positive
    counts are read at the last example of every run of tied scores (the distinct thresholds), and the ROC curve
    through those points and (0, 0) is integrated by the trapezoidal rule."""
    n, c = probs.shape
    if n == 0:
        return torch.full((c,), float("nan"), dtype=torch.float64)
    values, order = torch.sort(probs, dim=0, descending=True, stable=True)
    positive = (targets.long()[order] == torch.arange(c, device=targets.device)).double()
    tps = positive.cumsum(0)
    fps = torch.arange(1, n + 1, device=probs.device, dtype=torch.float64).unsqueeze(1) - tps
    end = torch.ones_like(values, dtype=torch.bool)  # the last example of each run of equal scores
    end[:-1] = values[:-1] != values[1:]
    index = torch.arange(n, device=probs.device).unsqueeze(1).expand(n, c)
    marked = torch.where(end, index, torch.full_like(index, -1))
    prev = torch.cat([torch.full((1, c), -1, device=probs.device, dtype=torch.long), marked[:-1].cummax(0).values])
    has_prev = prev >= 0
    tp_prev = torch.where(has_prev, tps.gather(0, prev.clamp_min(0)), torch.zeros_like(tps))
    fp_prev = torch.where(has_prev, fps.gather(0, prev.clamp_min(0)), torch.zeros_like(fps))
    area = torch.where(end, (fps - fp_prev) * (tps + tp_prev), torch.zeros_like(tps)).sum(0) / 2
    n_pos = tps[-1]
    n_neg = n - n_pos
    auc = area / (n_pos * n_neg).clamp_min(1)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def per_class(probs: Tensor, targets: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Per-class tensors (length C) and the confusion matrix, from probabilities (N, C) and labels (N,)."""
    probs, targets = probs.float(), targets.long()
    cm = confusion_matrix(probs.argmax(1), targets, num_classes).double()  # rows: true, cols: pred
    tp = cm.diag()
    fn = cm.sum(1) - tp
    fp = cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    auc = auroc_ovr(probs, targets)
    recall, precision = _div(tp, tp + fn), _div(tp, tp + fp)
    return {
        "recall": recall,
        "precision": precision,
        "specificity": _div(tn, tn + fp),
        "f1": _div(2 * precision * recall, precision + recall),
        "auroc": auc,
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
    cm = pc["confusion"]
    out: dict[str, float] = {f"{stage}/acc": float(cm.trace() / cm.sum().clamp_min(1))}
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
