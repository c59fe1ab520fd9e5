"""Frankle & Carbin 2019 ("The lottery ticket hypothesis", ICLR; LeNet-300-100 on MNIST, Fig. 3-4): winning tickets
(masks from iterative magnitude pruning, survivors reset to their original initialisation) learn to a higher test
accuracy than the original network at 21.1% of its weights and still at 7.0%, and randomly reinitialised
subnetworks with the same masks do worse.

The reinit control is the paper's: ``rewind=reinit rewind.masks_from=<ticket runs>`` installs, at every round, the
ticket's own masks of that round (checked against their recorded checksums) and trains them from one fresh random
initialisation (seed + 1000003). ``prunelab reproduce lth`` runs the tickets first, then the controls.

Input per seed (paired: the reinit control of one seed trains that seed's ticket masks):
test accuracy of the dense network and of both variants at the rounds closest to 21% and 7% of weights left.
"""

from __future__ import annotations

import numpy as np

from prunelab.analysis.claims import Claim, Result, judge, mean_interval

LEVELS = (0.211, 0.070)  # weights remaining, as in the paper's figures
CLAIMS = [
    Claim(
        "L1",
        "a winning ticket at 21.1% of the weights reaches a higher test accuracy than the original network",
        "Fig. 3-4 (LeNet-300-100)",
        "accuracy ticket (21% of weights) - dense",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
    Claim(
        "L2",
        "... and still at 7.0% of the weights",
        "Fig. 3-4 (LeNet-300-100)",
        "accuracy ticket (7% of weights) - dense",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
    Claim(
        "L3",
        "the ticket beats random reinitialisation of its own masks at 21.1% of the weights",
        "Fig. 4 (random reinit)",
        "accuracy ticket - reinit (21% of weights)",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
    Claim(
        "L4",
        "... and at 7.0% of the weights",
        "Fig. 4 (random reinit)",
        "accuracy ticket - reinit (7% of weights)",
        "paired t over seeds",
        0.0,
        "greater",
        3,
    ),
]


def evaluate(dense: np.ndarray, ticket: dict[float, np.ndarray], reinit: dict[float, np.ndarray]) -> list[Result]:
    """Per-seed accuracies: ``ticket[level]`` and ``reinit[level]`` for each of :data:`LEVELS`."""
    out = []
    for claim, level in zip(CLAIMS[:2], LEVELS, strict=True):
        out.append(judge(claim, mean_interval(np.asarray(ticket[level]) - dense, claim.threshold, claim.side)))
    for claim, level in zip(CLAIMS[2:], LEVELS, strict=True):
        diff = np.asarray(ticket[level]) - np.asarray(reinit[level])
        out.append(judge(claim, mean_interval(diff, claim.threshold, claim.side)))
    return out
