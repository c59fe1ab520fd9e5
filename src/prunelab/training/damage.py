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
  that common form, not re-read in the paper: the bin count (15) and the (lo, hi] edges are this module's choice).
  Iofinova et al.'s code (IST-DASLab/pruned-vision-model-bias, ``bias_utils/runs.py``,
  ``compute_uncertainty_calibration``, read at commit 400e5a5) computes a per-attribute binary variant (10 bins of
  the positive probability against the positive rate); prunelab's single-label tasks use the top-label form.
- :func:`uncertain_share`: the share of test examples whose top-class probability is below ``below`` (0.9). The
  same code's ``compute_errors`` counts a sigmoid output as uncertain when ``abs(p - 0.5) < 0.4``; for a two-class
  softmax that is exactly "top-class probability < 0.9", and prunelab applies the top-class form to every task.

:func:`damage_fields` flattens all of them into a round's record under ``damage/...`` keys, and
:func:`tolerance_fields` adds the epsilon-tolerance verdicts (see docs/methods.md, "Class damage").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

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


def uncertain_share(probs: np.ndarray, below: float = 0.9) -> float:
    """Share of examples whose top-class probability is below ``below``."""
    return float((probs.max(axis=1) < below).mean()) if len(probs) else float("nan")


def key_name(name: Any) -> str:
    """A class name as it appears in metric keys (as :func:`prunelab.training.metrics.safe_name`)."""
    return re.sub(r"[^0-9A-Za-z_.+-]+", "_", str(name)).strip("_") or "class"


PER_CLASS_KEYS = ("flip", "gap", "dfnr", "dfpr", "recall_minus_acc")
QUANTILE_KEYS = {q: f"gap_excess_q{round(q * 100)}" for q in QUANTILES}


def damage_fields(
    ref_probs: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[Any],
    prefix: str = "damage",
    ece_bins: int = 15,
    uncertain_below: float = 0.9,
) -> dict[str, Any]:
    """The class damage of ``probs`` against the reference model's ``ref_probs`` on the same ``labels``, flat:

    - per class c (``<prefix>/<key>/<class>``): ``flip`` (share of c's examples whose label changed), ``gap``
      (acc_ref(c) - acc(c)), ``dfnr``/``dfpr`` (one-vs-rest FNR/FPR minus the reference's), ``recall_minus_acc``
      (recall_c - overall accuracy, of this model);
    - per model: ``flip``, ``gap_mean``, ``gap_std``, ``gap_max`` (the largest gap) and ``worst_class`` (its class),
      ``gap_excess_q0`` ... ``gap_excess_q100`` (quantiles of gap_c - gap_mean), ``ece`` and ``uncertain`` (of this
      model: calibration and uncertainty are properties of one model, shown beside the reference's).
    """
    labels = np.asarray(labels)
    if ref_probs.shape != probs.shape or len(labels) != len(probs):
        raise ValueError("the reference and the compared predictions cover different test sets")
    n = len(class_names)
    ref, pred = ref_probs.argmax(axis=1), probs.argmax(axis=1)
    flip, flip_c = flip_rate(ref, pred, labels, n)
    gaps = accuracy_gaps(ref, pred, labels, n)
    deltas = delta_error_rates(ref, pred, labels, n)
    per_class = {
        "flip": flip_c,
        "gap": gaps["gap"],
        "dfnr": deltas["delta_fnr"],
        "dfpr": deltas["delta_fpr"],
        "recall_minus_acc": recall_minus_accuracy(pred, labels, n),
    }
    names = [key_name(c) for c in class_names]
    out: dict[str, Any] = {
        f"{prefix}/flip": flip,
        f"{prefix}/gap_mean": gaps["mean"],
        f"{prefix}/gap_std": gaps["std"],
        f"{prefix}/gap_max": float(gaps["gap"][gaps["worst_class"]]),
        f"{prefix}/worst_class": str(class_names[gaps["worst_class"]]),
        **{f"{prefix}/{QUANTILE_KEYS[q]}": v for q, v in gaps["quantiles"].items()},
        f"{prefix}/ece": expected_calibration_error(probs, labels, ece_bins),
        f"{prefix}/uncertain": uncertain_share(probs, uncertain_below),
    }
    for key in PER_CLASS_KEYS:
        for name, value in zip(names, per_class[key], strict=True):
            out[f"{prefix}/{key}/{name}"] = float(value)
    return out


def tolerance_fields(fields: dict[str, Any], floor: dict[str, Any] | None, epsilon: float) -> dict[str, Any]:
    """The epsilon-tolerance verdicts of one model's :func:`damage_fields` (``damage/...``), beyond the dense-vs-dense
    ``floor`` (the same fields under ``floor/...``, or None without a floor):

    - ``passes_tolerance``: every class's gap is within epsilon of the mean gap, gap_c - gap_mean <= epsilon + the
      floor's largest excess (Hashemizadeh et al. 2023 bound the excess gap from above: a class that loses less
      than the average is not damaged);
    - ``passes_own``: every class within epsilon of its own dense value, gap_c <= epsilon + the floor's largest
      absolute class gap;
    - ``tolerance_margin``: how far the largest excess is below its bound (negative: it fails).
    """
    excess = float(fields["damage/gap_excess_q100"])
    floor_excess = max(0.0, float(floor["floor/gap_excess_q100"])) if floor else 0.0
    gaps = [v for k, v in fields.items() if k.startswith("damage/gap/") and not np.isnan(v)]
    floor_gaps = [abs(v) for k, v in (floor or {}).items() if k.startswith("floor/gap/") and not np.isnan(v)]
    floor_own = max(floor_gaps, default=0.0)
    bound = epsilon + floor_excess
    return {
        "damage/tolerance": float(epsilon),
        "damage/has_floor": floor is not None,
        "damage/passes_tolerance": bool(excess <= bound + 1e-12),
        "damage/passes_own": bool(max(gaps, default=0.0) <= epsilon + floor_own + 1e-12),
        "damage/tolerance_margin": bound - excess,
    }


def class_safe_sparsity(rows: Sequence[dict]) -> float | None:
    """The highest sparsity reached before the first round that fails the tolerance (every round up to it passes);
    None where the rounds carry no verdict (no dense round 0 to compare with)."""
    safe = None
    for row in rows:
        verdict = row.get("damage/passes_tolerance")
        if verdict is None:
            return safe
        if not verdict:
            break
        safe = float(row["sparsity"]) if safe is None else max(safe, float(row["sparsity"]))
    return safe
