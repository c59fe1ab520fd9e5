"""Jordao et al. (docs/methods.md §2): PLS+VIP removes FLOPs without penalizing accuracy, and beats L1-norm
filter pruning at matched FLOPs and matched fine-tuning budget.

Input per seed (paired: the same seed gives every population the same dense model): the converged dense accuracy,
each criterion's accuracy after the same number of rounds, and each criterion's FLOPs share at that round. The
comparison with L1 is only made when the FLOPs shares match (within ``FLOPS_TOL`` for every seed); otherwise it
is undecided with the reason.
"""

from __future__ import annotations

import numpy as np

from prunelab.analysis.claims import Claim, Interval, Result, judge, mean_interval

FLOPS_TOL = 0.01
CLAIMS = [
    Claim(
        "J1",
        'PLS+VIP removes FLOPs "without penalizing accuracy" (1-point margin)',
        "abstract, methods §2",
        "accuracy of PLS+VIP (global ranking) after the last round - converged dense",
        "paired t over seeds",
        -0.01,
        "greater",
        3,
    ),
    Claim(
        "J2",
        "PLS+VIP is more accurate than L1-norm filter pruning at equal FLOPs and fine-tuning budget",
        "§5 comparison with other criteria, methods §2",
        "accuracy PLS+VIP - L1 (layer scope: same filters per layer, FLOPs; same round)",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
]


def evaluate(
    dense: np.ndarray, pls: np.ndarray, l1: np.ndarray, flops_pls: np.ndarray, flops_l1: np.ndarray
) -> list[Result]:
    """Both claims on arrays paired by seed (the same seeds in every array)."""
    return [no_drop(dense, pls), versus_l1(pls, l1, flops_pls, flops_l1)]


def no_drop(dense: np.ndarray, pls: np.ndarray) -> Result:
    """J1 on per-seed accuracies: the converged dense model and PLS+VIP after the last round."""
    return judge(CLAIMS[0], mean_interval(pls - dense, CLAIMS[0].threshold, CLAIMS[0].side))


def versus_l1(pls: np.ndarray, l1: np.ndarray, flops_pls: np.ndarray, flops_l1: np.ndarray) -> Result:
    """J2 on per-seed accuracies and FLOPs shares of both criteria at the same round."""
    gap = float(np.max(np.abs(np.asarray(flops_pls) - np.asarray(flops_l1)))) if len(flops_pls) else float("nan")
    if not gap <= FLOPS_TOL:
        iv = Interval(float("nan"), float("nan"), float("nan"), len(pls))
        return judge(CLAIMS[1], iv, [f"FLOPs shares differ by up to {gap:.3f}: not a matched comparison"])
    return judge(
        CLAIMS[1],
        mean_interval(pls - l1, CLAIMS[1].threshold, CLAIMS[1].side),
        [f"FLOPs shares equal within {gap:.4f} for every seed"],
    )
