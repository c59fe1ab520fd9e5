"""Helpers shared by the reproduction tables (:mod:`prunelab.analysis.papers`): means with spreads, per-seed
pairing, per-population curves, and the claims section. A change here changes every paper's code hash
(:mod:`prunelab.analysis.reproduce_doc`); a change to one paper's table module changes only that paper's."""

from __future__ import annotations

import math
import statistics

import numpy as np

from prunelab.analysis import claims
from prunelab.runs.folders import Run, group_labels

# md5 of the official files (torchvision 0.29.1 for Fashion-MNIST, medmnist 3.0.2 info.py for MedMNIST)
FASHION = {
    f"FashionMNIST/raw/{name}-ubyte.gz": md5
    for name, md5 in (
        ("train-images-idx3", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        ("train-labels-idx1", "25c81989df183df01b3e8a0aad5dffbe"),
        ("t10k-images-idx3", "bef4ecab320f06d8554ea6380940ec79"),
        ("t10k-labels-idx1", "bb300cfdad3c16e7a12a480ee83cd310"),
    )
}
MNIST = {
    f"MNIST/raw/{name}-ubyte.gz": md5
    for name, md5 in (
        ("train-images-idx3", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1", "ec29112dd5afa0611ce80d1b7f02629c"),
    )
}

DENSE = "converge={max_epochs: 40, patience: 4, min_delta: 0.0, rounds: first}"
EVERY = "converge={max_epochs: 40, patience: 4, min_delta: 0.0, rounds: all}"  # lottery tickets: every round from init
ENDS = "converge={max_epochs: 40, patience: 4, min_delta: 0.0, rounds: first_and_last}"  # the dense, the final round


def mean(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else float("nan")


def std(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: list[float]) -> str:
    return f"{mean(values):.3f} ± {std(values):.3f}"


def claims_section(declared: list, results: list) -> list[str]:
    return [
        "",
        "## Claims (declared in prunelab/analysis/papers/ before the runs; see the declaration line below)",
        "",
        *claims.markdown(results),
        "",
        "<details><summary>The declared rules</summary>",
        "",
        *claims.declared(declared),
        "",
        "</details>",
    ]


def disclosure(module) -> list[str]:
    """Markdown: every deviation from the paper's setup, and the paper's reported numbers beside ours."""
    lines = ["", "## Deviations from the paper", ""] + [f"- {d}" for d in getattr(module, "DEVIATIONS", [])]
    rows = getattr(module, "PAPER_VS_OURS", [])
    if rows:
        lines += ["", "| figure | paper (reported) | ours |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return lines


def seeds_text(runs: list[Run]) -> str:
    seeds = sorted(int(r.seed) for r in runs if r.seed is not None)
    return f"{seeds[0]}-{seeds[-1]}" if seeds else "?"


def by_population(runs: list[Run]) -> dict[str, dict[int, list[dict]]]:
    labels = group_labels(runs)
    out: dict[str, dict[int, list[dict]]] = {}
    for run in runs:
        if run.status == "complete":
            for row in run.rows:
                out.setdefault(labels[run.path], {}).setdefault(row["round"], []).append({**row, "seed": run.seed})
    return out


def curve_table(pops: dict[str, dict[int, list[dict]]], title: str, first: str) -> list[str]:
    lines = [
        title,
        "",
        f"| population | round | n | {first} | FLOPs (share of dense) | accuracy | change vs dense | "
        "worst-class recall | worst class |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pop, rounds in sorted(pops.items()):
        dense = mean([x["test/acc"] for x in rounds[0]])
        for r, rows in sorted(rounds.items()):
            share = mean([removed_unit_share(x) for x in rows])
            worst = max({x["worst_class"] for x in rows}, key=[x["worst_class"] for x in rows].count)
            acc = [x["test/acc"] for x in rows]
            lines.append(
                f"| {pop} | {r} | {len(rows)} | {share:.3f} | {pm([x['flops_ratio'] for x in rows])} | "
                f"{pm(acc)} | {mean(acc) - dense:+.4f} | {pm([x['test/recall_worst'] for x in rows])} | "
                f"{worst} |"
            )
    return lines


def per_seed(rounds: dict[int, list[dict]], r: int, key: str) -> dict[int, float]:
    return {int(x["seed"]): float(x[key]) for x in rounds.get(r, [])}


def paired(a: dict[int, float], b: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    seeds = sorted(set(a) & set(b))
    return np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])


def dense_line(pops: dict[str, dict[int, list[dict]]]) -> str:
    dense = [x for rounds in pops.values() for x in rounds.get(0, [])]
    if not dense or "converged" not in dense[0]:
        return "Dense round: a fixed number of epochs (not trained to convergence)."
    stopped, epochs = sum(bool(x["converged"]) for x in dense), [x["epochs"] for x in dense]
    return (
        f"Dense round: trained until validation accuracy stopped improving; {stopped} of {len(dense)} dense "
        f"models stopped by patience (epochs {min(epochs)}-{max(epochs)})."
    )


def removed_unit_share(row: dict) -> float:
    """The share of structured units a round removed (``filters_removed_share`` in runs made before issue 28), or
    its weight sparsity for unstructured runs."""
    return float(row.get("units_removed_share", row.get("filters_removed_share", row["sparsity"])))
