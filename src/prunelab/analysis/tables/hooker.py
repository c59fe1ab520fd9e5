"""Hooker et al. 2019 at CPU scale: the populations and the table of ``prunelab reproduce hooker``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.analysis.papers import hooker as hooker_claims
from prunelab.analysis.reproduce_doc import FASHION
from prunelab.analysis.tables.common import claims_section, seeds_text
from prunelab.runs.folders import Run

HOOKER_LEVELS = (0.3, 0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995)  # up to where top-1 falls


def _hooker_groups(runs: list[Run], root: Path) -> dict[str, list[Run]]:
    """Complete member runs by their sweep folder (dense, null, s<level>)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.status == "complete" and run.rows:
            groups.setdefault(run.path.relative_to(root).parts[0], []).append(run)
    return groups


def table(runs: list[Run], root: Path) -> str:
    from prunelab.analysis.hooker import _population_predictions, class_impact, pie_accuracy, pies, top1

    groups = _hooker_groups(runs, root)
    if "dense" not in groups or "null" not in groups:
        return "# Hooker et al.\n\nNeeds the dense and the null population.\n"
    dense, labels = _population_predictions(groups["dense"])
    null = _population_predictions(groups["null"])[0]
    levels = {float(k[1:]): _population_predictions(v)[0] for k, v in groups.items() if k.startswith("s")}
    quant_names = sorted({p.name for r in groups["dense"] for p in (r.path / "rounds").glob("r*/quant/*")})
    quant = {m: _population_predictions(groups["dense"], m)[0] for m in quant_names}
    c = int(max(labels.max(), dense.max()) + 1)
    paper = {0.0: 76.675, 0.3: 76.459, 0.5: 75.874, 0.7: 75.019, 0.9: 72.569}
    lines = [
        "# Hooker et al. at CPU scale: Fashion-MNIST, LeNet-300-100, gradual layer-wise magnitude pruning",
        "",
        f"Populations: dense {len(dense)} models (seeds {seeds_text(groups['dense'])}), null {len(null)} "
        f"dense models (seeds {seeds_text(groups['null'])}), each level its own "
        f"{min(len(p) for p in levels.values())} seeds.",
        "",
        "| population | models | top-1 (ours) | top-1 ResNet-50 ImageNet (paper code) | impacted classes | PIEs |"
        " top-1 on PIEs | top-1 on non-PIEs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pops = {
        "dense": dense,
        "null (dense, other seeds)": null,
        **{f"sparsity {k:g}": v for k, v in sorted(levels.items())},
        **{f"{m} (dense)": v for m, v in quant.items()},
    }
    for name, preds in pops.items():
        acc = top1(preds, labels)
        ref = dense if name != "dense" else null[: len(dense)]
        pa = pie_accuracy(preds, labels, pies(ref, preds, c))
        level = float(name.split()[1]) if name.startswith("sparsity") else 0.0 if name == "dense" else None
        p = f"{paper[level]:.3f}%" if level in paper else "-"
        lines.append(
            f"| {name} | {len(preds)} | {acc.mean():.4f} ± {acc.std(ddof=1):.4f} | {p} | "
            f"{class_impact(ref, preds, labels, c).count} | {pa['pie_count']} | "
            f"{pa['acc_pie']:.3f} | {pa['acc_non_pie']:.3f} |"
        )
    lines += [
        "",
        "Impacted classes and PIEs of a population are counted against the dense population (the dense "
        "row: against the first null models). The paper's column is the ResNet-50/ImageNet mean top-1 from "
        "the authors' code (docs/methods.md §3).",
    ]
    results = hooker_claims.evaluate(dense, null, levels, labels, quant or None, c)
    return "\n".join([*lines, *claims_section(hooker_claims.CLAIMS, results)]) + "\n"


SPEC: dict[str, Any] = {
    "sweeps": {
        "dense": ["experiment=hooker_fashion", "schedule.final_sparsity=0.0", "seed=0"],
        "null": ["experiment=hooker_fashion", "schedule.final_sparsity=0.0", "seed=100", "@2"],
        **{
            f"s{lvl:g}": ["experiment=hooker_fashion", f"schedule.final_sparsity={lvl}", f"seed={1000 + 100 * i}"]
            for i, lvl in enumerate(HOOKER_LEVELS)
        },
    },
    "seeds": 5,
    "population": True,
    "data": sorted(FASHION),
    "configs": ["hooker_fashion"],
}
