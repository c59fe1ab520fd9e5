"""Frankle & Carbin 2019 ("The lottery ticket hypothesis", ICLR; LeNet-300-100 on MNIST, Fig. 3-4): winning tickets
(masks from iterative magnitude pruning, survivors reset to their original initialisation) learn to a higher test
accuracy than the original network at 21.1% of its weights and still at 7.0%, and randomly reinitialised
subnetworks with the same masks do worse.

The reinit control is the paper's: ``rewind=reinit rewind.masks_from=<ticket runs>`` installs, at every round, the
ticket's own masks of that round (checked against their recorded checksums) and trains them from one fresh random
initialisation (seed + 1000003). ``prunelab reproduce lth`` runs the tickets first, then the controls.

Input per seed (paired: the reinit control of one seed trains that seed's ticket masks):
test accuracy of the dense network and of both variants at the rounds closest to 21% and 7% of weights left.

One file per paper: its claims (:data:`CLAIMS`, :func:`evaluate`), the CPU-scale sweep of
``prunelab reproduce lth`` (:data:`SPEC`) and its table (:func:`table`), found by
:func:`prunelab.analysis.papers.registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.claims import Claim, Result, family, judge, mean_interval
from prunelab.analysis.papers.common import EVERY, MNIST, claims_section, dense_line, mean, per_seed, pm
from prunelab.runs.folders import Run

LEVELS = (0.211, 0.070)  # weights remaining, as in the paper's figures
CLAIMS = [
    Claim(
        "L1",
        "a winning ticket at 21.1% of the weights reaches a higher test accuracy than the original network",
        "Fig. 3-4 (LeNet-300-100)",
        "accuracy ticket (21% of weights) - dense",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.002,
        margin_reason="'higher test accuracy' with no size in the text the project read: 0.2 points, the project's",
        primary=True,
        levels="21.1% of weights (the round closest to it)",
    ),
    Claim(
        "L2",
        "... and still at 7.0% of the weights",
        "Fig. 3-4 (LeNet-300-100)",
        "accuracy ticket (7% of weights) - dense",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.002,
        margin_reason="'higher test accuracy' with no size in the text the project read: 0.2 points, the project's",
        primary=False,
        levels="7.0% of weights (the round closest to it)",
    ),
    Claim(
        "L3",
        "the ticket beats random reinitialisation of its own masks at 21.1% of the weights",
        "Fig. 4 (random reinit)",
        "accuracy ticket - reinit (21% of weights)",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.002,
        margin_reason="'higher test accuracy' with no size in the text the project read: 0.2 points, the project's",
        primary=False,
        levels="21.1% of weights (the round closest to it)",
    ),
    Claim(
        "L4",
        "... and at 7.0% of the weights",
        "Fig. 4 (random reinit)",
        "accuracy ticket - reinit (7% of weights)",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.002,
        margin_reason="'higher test accuracy' with no size in the text the project read: 0.2 points, the project's",
        primary=False,
        levels="7.0% of weights (the round closest to it)",
    ),
]


def evaluate(dense: np.ndarray, ticket: dict[float, np.ndarray], reinit: dict[float, np.ndarray]) -> list[Result]:
    """Per-seed accuracies: ``ticket[level]`` and ``reinit[level]`` for each of :data:`LEVELS`."""
    out = []
    for claim, level in zip(CLAIMS[:2], LEVELS, strict=True):
        diff = np.asarray(ticket[level]) - dense
        out.append(judge(claim, mean_interval(diff, claim.threshold, claim.side, claim.margin)))
    for claim, level in zip(CLAIMS[2:], LEVELS, strict=True):
        diff = np.asarray(ticket[level]) - np.asarray(reinit[level])
        out.append(judge(claim, mean_interval(diff, claim.threshold, claim.side, claim.margin)))
    return family(out)


def _by_rewind(runs: list[Run]) -> dict[str, dict[int, list[dict]]]:
    out: dict[str, dict[int, list[dict]]] = {}
    for run in runs:
        if run.status == "complete":
            kind = str(run.config.get("rewind", {}).get("kind"))
            for row in run.rows:
                out.setdefault(kind, {}).setdefault(row["round"], []).append({**row, "seed": run.seed})
    return out


def _closest_round(rounds: dict[int, list[dict]], left: float) -> int:
    return min(rounds, key=lambda r: abs(1 - mean([x["sparsity"] for x in rounds[r]]) - left))


def table(runs: list[Run], root: Path) -> str:
    pops = _by_rewind(runs)
    names = {"init": "winning ticket (rewind to init)", "reinit": "reinit control (ticket's masks, fresh init)"}
    lines = [
        "# Frankle & Carbin 2019 at CPU scale: LeNet-300-100 on MNIST, 20% per round (output layer 10%)",
        "",
        "| variant | round | n | weights remaining | accuracy | change vs dense | worst-class recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, rounds in sorted(pops.items()):
        dense = mean([x["test/acc"] for x in rounds[0]])
        for r, rows in sorted(rounds.items()):
            acc, left = [x["test/acc"] for x in rows], 1 - mean([x["sparsity"] for x in rows])
            worst = pm([x["test/recall_worst"] for x in rows])
            lines.append(
                f"| {names.get(kind, kind)} | {r} | {len(rows)} | {left:.3f} | {pm(acc)} | "
                f"{mean(acc) - dense:+.4f} | {worst} |"
            )
    lines += ["", dense_line(pops)]
    ticket, reinit = pops.get("init"), pops.get("reinit")
    if not (ticket and reinit):
        return "\n".join([*lines, "", "Claims need both the ticket and the reinit control."]) + "\n"
    levels = {lv: _closest_round(ticket, lv) for lv in LEVELS}
    dense_acc = per_seed(ticket, 0, "test/acc")
    seeds = sorted(set(dense_acc) & set(per_seed(reinit, 0, "test/acc")))

    reached = {lv: abs(1 - mean([x["sparsity"] for x in ticket[r]]) - lv) <= 0.15 * lv for lv, r in levels.items()}

    def pick(pop: dict[int, list[dict]], level: float) -> np.ndarray:  # a level not reached: NaN, i.e. inconclusive
        found = per_seed(pop, levels[level], "test/acc")
        return np.array([found.get(s, np.nan) if reached[level] else np.nan for s in seeds])

    results = evaluate(
        np.array([dense_acc[s] for s in seeds]),
        {lv: pick(ticket, lv) for lv in levels},
        {lv: pick(reinit, lv) for lv in levels},
    )
    lines += [
        "",
        "Levels: "
        + ", ".join(
            f"{lv:.1%} of weights -> round {r}" + ("" if reached[lv] else " (not reached: its claims are inconclusive)")
            for lv, r in levels.items()
        )
        + " (the round whose remaining "
        "share is closest, within 15% of the level). Paper: LeNet-300-100 on MNIST, 50k iterations per "
        "round, accuracy read at the early-stopping iteration (docs/methods.md).",
    ]
    return "\n".join([*lines, *claims_section(CLAIMS, results)]) + "\n"


LTH = ["schedule.rounds=12", EVERY, "trainer.limit_train_batches=0.25"]
DEVIATIONS = [
    "Training: every round to convergence on validation accuracy (patience 4, at most 40 epochs) over a quarter of "
    "the training batches per epoch; the paper trains 50,000 iterations per round and reads accuracy at the early-"
    "stopping iteration.",
    "The levels 21.1% and 7.0% of weights and the LeNet settings were not read from the paper's figures (methods "
    "§8); the abstract says winning tickets 'reach higher test accuracy' above 10-20% of the original size.",
]
PAPER_VS_OURS = [("ticket accuracy at 21.1% / 7.0%", "figures not read", "the table above")]

HISTORY = [
    "2026-11-28 (d6d7bb0): first declaration, L1-L4 at 21.1% and 7.0% of weights, min n 3.",
    "2026-12-06 (issue 32): L1 primary, margins of 0.2 points, min n 6; 7 seeds (6 cannot pass Holm over 3).",
]

SPEC: dict[str, Any] = {
    # "time": CPU wall time of a first launch on 2 cores; the measured one is in the doc section
    "time": "estimated 70-140 min (30-60 min measured at 3 seeds)",
    "sweeps": {
        "ticket": ["experiment=lth_mnist", "rewind=init", *LTH],  # first: the controls need its masks
        "reinit": ["experiment=lth_mnist", "rewind=reinit", "rewind.masks_from={runs}/ticket", *LTH],
    },
    "seeds": 7,  # 6 cannot reach Holm's first step over 3 secondaries (3 / 64 > 0.025)
    "data": sorted(MNIST),
    "configs": ["lth_mnist"],
}
