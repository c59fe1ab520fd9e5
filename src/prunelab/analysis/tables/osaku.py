"""Osaku et al. 2021 at CPU scale: the sweep and the table of ``prunelab reproduce osaku``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunelab.analysis.papers import osaku as osaku_claims
from prunelab.analysis.reproduce_doc import FASHION
from prunelab.analysis.tables.common import (
    DENSE,
    by_population,
    claims_section,
    curve_table,
    dense_line,
    paired,
    per_seed,
)
from prunelab.runs.folders import Run


def table(runs: list[Run], root: Path) -> str:
    pops = by_population(runs)
    lines = curve_table(
        pops,
        "# Osaku et al. at CPU scale: Fashion-MNIST, a four-conv CNN, half of each layer's "
        "kernels by activation energy",
        "kernel share removed",
    )
    lines += ["", dense_line(pops)]
    prog = next((p for p in pops if "freeze=true" in p.lower()), None)
    whole = next((p for p in pops if "freeze=false" in p.lower()), None)
    if not (prog and whole):
        return "\n".join([*lines, "", "Claims need both variants."]) + "\n"
    last = min(max(pops[prog]), max(pops[whole]))
    a, b = paired(per_seed(pops[prog], last, "test/acc"), per_seed(pops[whole], last, "test/acc"))
    lines += [
        "",
        "The paper body is not available (only its abstracts, docs/methods.md §4): there are no paper "
        "figures to put beside these, and the baseline here is whole-model retraining after each *layer* "
        "(retraining after each kernel is out of this CPU budget).",
    ]
    return "\n".join([*lines, *claims_section(osaku_claims.CLAIMS, osaku_claims.evaluate(a, b))]) + "\n"


SPEC: dict[str, Any] = {
    "sweeps": {"": ["experiment=osaku_fashion", "schedule.freeze=true,false", DENSE]},
    "seeds": 3,
    "data": sorted(FASHION),
    "configs": ["osaku_fashion"],
}
