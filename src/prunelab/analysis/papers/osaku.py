"""Osaku et al. 2021 (docs/methods.md §4): progressive retraining (only the layers up to the next one, later
layers frozen) against retraining the whole model after each layer, at equal kernels removed.

Only the abstracts could be read: they claim better results than methods that retrain the whole model after
eliminating kernels. Paired by seed (both variants start from the same converged dense model).
"""

from __future__ import annotations

import numpy as np

from prunelab.analysis.claims import Claim, Result, judge, mean_interval

CLAIMS = [
    Claim(
        "O1",
        "progressive retraining gives better results than retraining the whole model after each layer",
        "abstract, methods §4",
        "accuracy progressive - whole-model (last round)",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
]


def evaluate(progressive: np.ndarray, whole: np.ndarray) -> list[Result]:
    """Per-seed accuracies of the two variants after the last round."""
    o1 = CLAIMS[0]
    return [judge(o1, mean_interval(np.asarray(progressive) - np.asarray(whole), o1.threshold, o1.side))]
