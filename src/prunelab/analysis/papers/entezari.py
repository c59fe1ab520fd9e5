"""Entezari & Saukh 2020 (docs/methods.md §1): the Fig. 4 caption claims, each judged on its own, and the
false-negative claim as a pruning effect.

Input: per scenario (red, blue, black, green) and metric (auroc, acc, fnr, fpr) an array (seeds, levels); level 0
is the dense round. Scenarios share seeds (same initialisation and data order per seed), so comparisons are paired
by seed: each seed's value is the mean, over the pruned levels it is measured at, of the paired difference, and the
t interval runs over seeds.

A model has **collapsed** at a level when it predicts one class for (nearly) everything: FNR >= 0.99 with FPR <=
0.01, or the reverse. Its threshold-dependent figures (accuracy, FNR, FPR) then say nothing about the loss, so a
(seed, level) where any compared scenario collapsed is left out of those claims and counted in the notes. AUROC
does not depend on the threshold and keeps every level.
"""

from __future__ import annotations

import numpy as np

from prunelab.analysis.claims import Claim, Result, judge, mean_interval

SRC = "Fig. 4 caption / §IV, methods §1"
PAIRED = "paired t over seeds (mean over pruned levels per seed)"
CLAIMS = [
    Claim("E1", "black beats red in AUROC at pruned levels", SRC, "AUROC black - red", PAIRED, 0.0, "greater", 3),
    Claim("E2", "black beats red in accuracy at pruned levels", SRC, "accuracy black - red", PAIRED, 0.0, "greater", 3),
    Claim("E3", "black beats red in FNR (lower) at pruned levels", SRC, "FNR black - red", PAIRED, 0.0, "less", 3),
    Claim("E4", "black beats red in FPR (lower) at pruned levels", SRC, "FPR black - red", PAIRED, 0.0, "less", 3),
    Claim(
        "E5",
        "pruning raises FN less with the class-dependent loss (black) than with plain LT (red)",
        '"up to 35% lower FN", abstract',
        "FNR rise from own dense: red - black",
        PAIRED,
        0.0,
        "greater",
        3,
    ),
    Claim(
        "E6",
        "pruning raises FN less with strong class weighting (green) than with plain LT (red)",
        '"35% improvement" (green vs red), §IV',
        "FNR rise from own dense: red - green",
        PAIRED,
        0.0,
        "greater",
        3,
    ),
    Claim(
        "E7",
        "green has the lowest FNR",
        "Fig. 4c, methods §1",
        "FNR green - min(red, blue, black)",
        PAIRED,
        0.0,
        "less",
        3,
    ),
    Claim(
        "E8",
        "green has the highest FPR",
        "Fig. 4d, methods §1",
        "FPR green - max(red, blue, black)",
        PAIRED,
        0.0,
        "greater",
        3,
    ),
]
SCENARIOS = ("red", "blue", "black", "green")


def collapsed(fnr: np.ndarray, fpr: np.ndarray) -> np.ndarray:
    """(seeds, levels) bool: the model predicts one class for (nearly) every test example."""
    return ((fnr >= 0.99) & (fpr <= 0.01)) | ((fpr >= 0.99) & (fnr <= 0.01))


def per_seed(diff: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Each seed's mean paired difference over the pruned levels (columns 1:) not excluded; NaN if none is left."""
    d = np.where(excluded, np.nan, diff)[:, 1:]
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(d)).sum(1)
        return np.where(counts > 0, np.nansum(d, 1) / np.maximum(counts, 1), np.nan)


def evaluate(m: dict[str, dict[str, np.ndarray]]) -> list[Result]:
    """``m[scenario][metric]``: (seeds, levels) arrays, metric in auroc, acc, fnr, fpr."""
    down = {s: collapsed(m[s]["fnr"], m[s]["fpr"]) for s in SCENARIOS}
    none = np.zeros_like(down["red"])
    br, all4 = down["black"] | down["red"], down["red"] | down["blue"] | down["black"] | down["green"]
    rise = {s: m[s]["fnr"] - m[s]["fnr"][:, :1] for s in SCENARIOS}
    others = [m[s] for s in ("red", "blue", "black")]
    plan = [
        (m["black"]["auroc"] - m["red"]["auroc"], none),
        (m["black"]["acc"] - m["red"]["acc"], br),
        (m["black"]["fnr"] - m["red"]["fnr"], br),
        (m["black"]["fpr"] - m["red"]["fpr"], br),
        (rise["red"] - rise["black"], br | down["black"][:, :1] | down["red"][:, :1]),
        (rise["red"] - rise["green"], down["green"] | down["red"] | down["green"][:, :1] | down["red"][:, :1]),
        (m["green"]["fnr"] - np.min([o["fnr"] for o in others], 0), all4),
        (m["green"]["fpr"] - np.max([o["fpr"] for o in others], 0), all4),
    ]
    out = []
    for claim, (diff, excluded) in zip(CLAIMS, plan):
        pruned = excluded[:, 1:]
        notes = (
            [
                f"{int(pruned.sum())} of {pruned.size} (seed, pruned level) pairs left out: a compared model "
                "collapsed to one class"
            ]
            if pruned.any()
            else []
        )
        values = per_seed(diff, excluded)
        out.append(judge(claim, mean_interval(values, claim.threshold, claim.side), notes))
    return out
