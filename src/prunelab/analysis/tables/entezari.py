"""Entezari & Saukh 2020 at CPU scale: the sweep and the table of ``prunelab reproduce entezari``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.papers import entezari
from prunelab.analysis.tables.common import EVERY, claims_section, mean, pm
from prunelab.runs.folders import Run, group_labels


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
    for s in entezari.SCENARIOS:
        out[s] = {m: np.full((len(seeds), len(rounds)), np.nan) for m in names}
        for j, r in enumerate(rounds):
            for x in by.get((s, r), []):
                for m, key in names.items():
                    out[s][m][seeds.index(x["seed"]), j] = x[key]
    return out


def table(runs: list[Run], root: Path) -> str:
    by = _entezari_rows(runs)
    scenarios = [s for s in entezari.SCENARIOS if any(k[0] == s for k in by)]
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
                down = entezari.collapsed(
                    np.array([x["test/fnr"] for x in rows]), np.array([x["test/fpr"] for x in rows])
                )
                lines.append(
                    f"| {1 - rows[0]['sparsity']:.2%} | {s} | {len(rows)} | "
                    f"{pm([x['test/auroc_pos'] for x in rows])} | {pm([x['test/acc'] for x in rows])} | "
                    f"{pm([x['test/fnr'] for x in rows])} | {pm([x['test/fpr'] for x in rows])} | "
                    f"{mean([x[f'test/fn/{pos}'] for x in rows]):.1f} | {int(down.sum())} |"
                )
    if len(scenarios) < 4:
        return "\n".join([*lines, "", "Claims need all four scenarios."]) + "\n"
    results = entezari.evaluate(entezari_arrays(by, rounds))
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
    return "\n".join([*lines, *claims_section(entezari.CLAIMS, results)]) + "\n"


SPEC: dict[str, Any] = {
    "sweeps": {"": ["experiment=entezari_red,entezari_blue,entezari_black,entezari_green", EVERY]},
    "seeds": 5,
    "data": ["medmnist/pneumoniamnist_reconstructed.npz"],
    "configs": ["_entezari_base_", "entezari_red", "entezari_blue", "entezari_black", "entezari_green"],
}
