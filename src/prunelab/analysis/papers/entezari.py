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

One file per paper: its claims (:data:`CLAIMS`, :func:`evaluate`), the CPU-scale sweep of
``prunelab reproduce entezari`` (:data:`SPEC`) and its table (:func:`table`), found by
:func:`prunelab.analysis.papers.registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.claims import Claim, Result, judge, mean_interval
from prunelab.analysis.papers.common import EVERY, claims_section, mean, pm
from prunelab.runs.folders import Run, group_labels

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


def _entezari_rows(runs: list[Run]) -> dict[tuple[str, int], list[dict]]:
    """Complete runs' rows by (scenario, round), each row tagged with its seed."""
    labels = group_labels(runs)
    by: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        if run.status == "complete":
            scenario = labels[run.path].split("entezari_")[-1].split(",")[0]
            for row in run.rows:
                by.setdefault((scenario, row["round"]), []).append({**row, "seed": run.seed})
    return by


def _positive(runs: list[Run]) -> str:
    keys = runs[0].rows[0] if runs and runs[0].rows else {}
    return next((k.split("/")[-1] for k in keys if k.startswith("test/fn/") and "not_" not in k), "1")


def entezari_arrays(by: dict, rounds: list[int]) -> dict[str, dict[str, np.ndarray]]:
    """(seeds, levels) arrays per scenario and metric, seeds aligned across scenarios (NaN where missing)."""
    seeds = sorted({x["seed"] for rows in by.values() for x in rows})
    names = {"auroc": "test/auroc_pos", "acc": "test/acc", "fnr": "test/fnr", "fpr": "test/fpr"}
    out: dict[str, dict[str, np.ndarray]] = {}
    for s in SCENARIOS:
        out[s] = {m: np.full((len(seeds), len(rounds)), np.nan) for m in names}
        for j, r in enumerate(rounds):
            for x in by.get((s, r), []):
                for m, key in names.items():
                    out[s][m][seeds.index(x["seed"]), j] = x[key]
    return out


def table(runs: list[Run], root: Path) -> str:
    by = _entezari_rows(runs)
    scenarios = [s for s in SCENARIOS if any(k[0] == s for k in by)]
    rounds = sorted({k[1] for k in by})
    pos = _positive(runs)
    first = next(iter(by.values()))[0]
    n_pos, n_all = first[f"test/support/{pos}"], sum(v for k, v in first.items() if k.startswith("test/support/"))
    every = [x for rows in by.values() for x in rows]
    converged = sum(bool(x.get("converged")) for x in every)
    lines = [
        "# Entezari & Saukh 2020 at CPU scale: PneumoniaMNIST (pneumonia 1:5 in train/val), CNN-3",
        "",
        f"Test set: {int(n_pos)} of {int(n_all)} examples positive (prevalence {n_pos / n_all:.1%}, against "
        "16.7% in training): accuracy is not comparable with the paper's ISIC figures.",
        f"Every round (rewound to init) trains until validation AUROC stops improving: {converged} of "
        f"{len(every)} fits stopped by patience (epochs {min(x['epochs'] for x in every)}-"
        f"{max(x['epochs'] for x in every)}).",
        "",
        "Mean ± std over seeds per lottery-ticket round (50% of remaining weights and biases per layer); "
        "`collapsed`: seeds whose model predicts one class for (nearly) every test example.",
        "",
        "| weights remaining | scenario | n | AUROC | accuracy | FNR | FPR | FN (test) | collapsed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        for s in scenarios:
            rows = by.get((s, r), [])
            if rows:
                down = collapsed(np.array([x["test/fnr"] for x in rows]), np.array([x["test/fpr"] for x in rows]))
                lines.append(
                    f"| {1 - rows[0]['sparsity']:.2%} | {s} | {len(rows)} | "
                    f"{pm([x['test/auroc_pos'] for x in rows])} | {pm([x['test/acc'] for x in rows])} | "
                    f"{pm([x['test/fnr'] for x in rows])} | {pm([x['test/fpr'] for x in rows])} | "
                    f"{mean([x[f'test/fn/{pos}'] for x in rows]):.1f} | {int(down.sum())} |"
                )
    if len(scenarios) < 4:
        return "\n".join([*lines, "", "Claims need all four scenarios."]) + "\n"
    results = evaluate(entezari_arrays(by, rounds))
    lines += [
        "",
        "## Paper vs ours",
        "",
        "| paper (reported) | ours |",
        "|---|---|",
        '| ISIC FNR: red 0.13, green 0.09 ("35%"; 30.8% by arithmetic), level not stated | see E5/E6: the '
        "FNR rise caused by pruning, against each scenario's own dense model |",
        "| CRACK FNR: 0.017 vs 0.011 (35.3%) | (CRACK not available offline) |",
        "| ISIC black, unpruned: AUROC 0.8069, accuracy 0.8608 | different data and model |",
    ]
    return "\n".join([*lines, *claims_section(CLAIMS, results)]) + "\n"


SPEC: dict[str, Any] = {
    # "time": CPU wall time of a first launch on 2 cores (docs/reproductions.md)
    "time": "about 19 min (20 runs)",
    "sweeps": {"": ["experiment=entezari_red,entezari_blue,entezari_black,entezari_green", EVERY]},
    "seeds": 5,
    "data": ["medmnist/pneumoniamnist_reconstructed.npz"],
    "configs": ["_entezari_base_", "entezari_red", "entezari_blue", "entezari_black", "entezari_green"],
}
