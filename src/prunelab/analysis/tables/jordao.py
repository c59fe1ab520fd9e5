"""Jordao et al. 2020 at CPU scale: the sweeps and the table of ``prunelab reproduce jordao``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.analysis.papers import jordao as jordao_claims
from prunelab.analysis.reproduce_doc import FASHION
from prunelab.analysis.tables.common import DENSE, claims_section, curve_table, dense_line, paired, per_seed
from prunelab.runs.folders import Run

CRITERIA = {"PLSVIP": "PLS+VIP", "L1Filter": "L1-norm"}


def _by_criterion(runs: list[Run]) -> dict[str, dict[int, list[dict]]]:
    """Complete runs' rows by criterion and scope, read from each run's config (e.g. ``PLS+VIP, layer scope``)."""
    out: dict[str, dict[int, list[dict]]] = {}
    for run in runs:
        if run.status == "complete":
            crit = run.config.get("criterion", {})
            name = CRITERIA.get(str(crit.get("_target_", "")).rsplit(".", 1)[-1], str(crit.get("_target_")))
            label = f"{name}, {crit.get('scope', 'global')} scope"
            for row in run.rows:
                out.setdefault(label, {}).setdefault(row["round"], []).append({**row, "seed": run.seed})
    return out


def _same_dense(pops: dict[str, dict[int, list[dict]]]) -> str:
    """Whether every population got the same dense model per seed (round 0 does not depend on the criterion)."""
    by_seed: dict[int, set[float]] = {}
    for rounds in pops.values():
        for x in rounds.get(0, []):
            by_seed.setdefault(int(x["seed"]), set()).add(round(float(x["test/acc"]), 6))
    spread = max((max(v) - min(v) for v in by_seed.values()), default=0.0)
    return (
        f"The {len(pops)} populations share each seed's dense model: its test accuracy differs between them by "
        f"at most {spread:.4f} (0 = the same model)."
    )


def table(runs: list[Run], root: Path) -> str:
    pops = _by_criterion(runs)
    lines = curve_table(
        pops, "# Jordao et al. at CPU scale: Fashion-MNIST, a small CNN, p = 0.1 per iteration", "filters removed"
    )
    lines += ["", dense_line(pops), "", _same_dense(pops)]
    paper, pls, l1 = (pops.get(k) for k in ("PLS+VIP, global scope", "PLS+VIP, layer scope", "L1-norm, layer scope"))
    if not (paper and pls and l1):
        return "\n".join([*lines, "", "Claims need PLS+VIP at global scope and both criteria at layer scope."]) + "\n"
    last = min(max(paper), max(pls), max(l1))  # the same round: the same fine-tuning budget
    d, a = paired(per_seed(paper, 0, "test/acc"), per_seed(paper, last, "test/acc"))
    p, q = paired(per_seed(pls, last, "test/acc"), per_seed(l1, last, "test/acc"))
    fp, fl = paired(per_seed(pls, last, "flops_ratio"), per_seed(l1, last, "flops_ratio"))
    results = [jordao_claims.no_drop(d, a), jordao_claims.versus_l1(p, q, fp, fl)]
    lines += [
        "",
        f"Compared at round {last} (every population: the same fine-tuning budget). J1 uses the paper's "
        "method (one VIP ranking over all filters); J2 compares the criteria at layer scope, where both remove "
        "the same number of filters from each layer, so FLOPs match by construction (a global ranking removes "
        "different layers' filters and would need interpolation between rounds to match FLOPs). Paper "
        "(docs/methods.md §2): up to 67% FLOPs removed without penalizing accuracy, up to 90% with a negligible "
        "drop (ImageNet/CIFAR-10; not this scale).",
    ]
    return "\n".join([*lines, *claims_section(jordao_claims.CLAIMS, results)]) + "\n"


SPEC: dict[str, Any] = {
    "sweeps": {
        "paper": ["experiment=jordao_fashion", "criterion=pls_vip", DENSE],
        "matched": ["experiment=jordao_fashion", "criterion=pls_vip,l1_filter", "criterion.scope=layer", DENSE],
    },
    "seeds": 3,
    "data": sorted(FASHION),
    "configs": ["jordao_fashion"],
}
