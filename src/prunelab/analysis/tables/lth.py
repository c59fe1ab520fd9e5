"""Frankle & Carbin 2019 at CPU scale: winning tickets against the dense network and the reinit control on the
ticket's own masks; the sweeps and the table of ``prunelab reproduce lth``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.papers import lth as lth_claims
from prunelab.analysis.reproduce_doc import MNIST
from prunelab.analysis.tables.common import EVERY, claims_section, dense_line, mean, per_seed, pm
from prunelab.runs.folders import Run


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
    levels = {lv: _closest_round(ticket, lv) for lv in lth_claims.LEVELS}
    dense_acc = per_seed(ticket, 0, "test/acc")
    seeds = sorted(set(dense_acc) & set(per_seed(reinit, 0, "test/acc")))

    reached = {lv: abs(1 - mean([x["sparsity"] for x in ticket[r]]) - lv) <= 0.15 * lv for lv, r in levels.items()}

    def pick(pop: dict[int, list[dict]], level: float) -> np.ndarray:  # a level not reached: NaN, i.e. undecided
        found = per_seed(pop, levels[level], "test/acc")
        return np.array([found.get(s, np.nan) if reached[level] else np.nan for s in seeds])

    results = lth_claims.evaluate(
        np.array([dense_acc[s] for s in seeds]),
        {lv: pick(ticket, lv) for lv in levels},
        {lv: pick(reinit, lv) for lv in levels},
    )
    lines += [
        "",
        "Levels: "
        + ", ".join(
            f"{lv:.1%} of weights -> round {r}" + ("" if reached[lv] else " (not reached: its claims are undecided)")
            for lv, r in levels.items()
        )
        + " (the round whose remaining "
        "share is closest, within 15% of the level). Paper: LeNet-300-100 on MNIST, 50k iterations per "
        "round, accuracy read at the early-stopping iteration (docs/methods.md).",
    ]
    return "\n".join([*lines, *claims_section(lth_claims.CLAIMS, results)]) + "\n"


LTH = ["schedule.rounds=12", EVERY, "trainer.limit_train_batches=0.25"]
SPEC: dict[str, Any] = {
    "sweeps": {
        "ticket": ["experiment=lth_mnist", "rewind=init", *LTH],  # first: the controls need its masks
        "reinit": ["experiment=lth_mnist", "rewind=reinit", "rewind.masks_from={runs}/ticket", *LTH],
    },
    "seeds": 3,
    "data": sorted(MNIST),
    "configs": ["lth_mnist"],
}
