"""Class-aware methods compared at one matched budget (issue 30, item 4): does acting on class damage help?

Declared before any run (this file's first commit precedes the first launch of ``prunelab reproduce classaware``):
LeNet-300-100 on two imbalanced tasks, Fashion-MNIST with an exponential long tail (head/tail = 20) and
PneumoniaMNIST (its own imbalance), compressed by one round of pruning to one budget (10% of the parameters,
``budget.target=params``) and fine-tuned from the dense round 0 (``rewind=none``), 3 seeds each; the methods:

- ``magnitude``: magnitude pruning, plain fine-tuning (the baseline); ``recalibrated``: the same runs' validation
  fitted thresholds (``calibrate=thresholds``, no training);
- the losses ``ceag`` (epsilon 0.02), ``equalized``, ``distill``, ``pw`` with magnitude pruning;
- the criteria ``fairgrape`` and ``per_class_taylor`` (class-conditional Taylor, max over classes) with plain
  fine-tuning.

Claims (paired over seeds within a task; every rule as in :mod:`prunelab.analysis.claims`):

- C1 (Balancing Act's own): with ``ceag``, every class stays within epsilon of the average accuracy gap: per seed,
  epsilon - the largest excess gap (test, against the run's dense round) > 0.
- C2 (... where plain fine-tuning does not): the largest excess gap of magnitude minus that of ceag > 0.
- C3 (the issue's): the class-aware criteria reach a higher class-safe sparsity than magnitude: per seed, the
  class-safe sparsity of fairgrape minus that of magnitude > 0 (with one pruning round, class-safe sparsity is
  either 0 or the budget's sparsity: the rule asks whether the class-aware criterion passes the tolerance where
  magnitude fails).
- C4: post-hoc recalibration raises worst-class recall over plain fine-tuning (calibrated minus raw > 0).

Levels, margins and seeds are fixed here; a rule changed after seeing results would be marked exploratory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.claims import Claim, Result, family, judge, mean_interval
from prunelab.analysis.papers.common import FASHION, claims_section, mean, pm
from prunelab.runs.folders import Run

EPSILON = 0.02
TASKS = {
    "fashion": ["data=fashion_mnist", "data.imbalance.long_tail_ratio=20"],
    "pneumonia": ["data=pneumoniamnist"],
}
COMMON = ["experiment=classaware"]  # conf/experiment/classaware.yaml: model, schedule, budget, epsilon, metrics
METHODS = {
    "magnitude": ["criterion=magnitude", "loss=cross_entropy"],
    "ceag": ["criterion=magnitude", "loss=ceag", f"loss.epsilon={EPSILON}"],
    "equalized": ["criterion=magnitude", "loss=equalized"],
    "distill": ["criterion=magnitude", "loss=distill"],
    "pw": ["criterion=magnitude", "loss=pw"],
    "fairgrape": ["criterion=fairgrape", "loss=cross_entropy"],
    "per_class_taylor": ["criterion=per_class_taylor", "loss=cross_entropy"],
}

CLAIMS = [
    Claim(
        "C1",
        "CEAG keeps every class's accuracy gap within epsilon of the average gap",
        "Hashemizadeh et al. 2023 (Balancing Act), abstract and §5",
        f"{EPSILON} - largest excess gap of ceag (per seed and task)",
        "paired t and sign-flip over seeds and tasks",
        0.0,
        "greater",
        6,
        margin=0.0,
        margin_reason="'within epsilon': the constraint itself is the bound",
        primary=True,
        levels="the final round (10% of parameters)",
    ),
    Claim(
        "C2",
        "... where plain fine-tuning does not",
        "Balancing Act, comparison with the unconstrained baseline",
        "largest excess gap: magnitude - ceag",
        "paired t and sign-flip over seeds and tasks",
        0.0,
        "greater",
        6,
        margin=0.01,
        margin_reason="a gap reduction below 1 point is not one a user would act on; the project's bound",
        primary=False,
        levels="the final round",
    ),
    Claim(
        "C3",
        "class-aware criteria reach a higher class-safe sparsity than magnitude",
        "issue 30 (prunelab's question)",
        "class-safe sparsity: fairgrape - magnitude",
        "paired t and sign-flip over seeds and tasks",
        0.0,
        "greater",
        6,
        margin=0.05,
        margin_reason="one pruning round: a run's class-safe sparsity is 0 or 0.9, so 0.05 is one unit in 18 passing "
        "where magnitude fails; the project's bound",
        primary=False,
        levels="the final round",
    ),
    Claim(
        "C4",
        "post-hoc threshold recalibration raises worst-class recall",
        "Iofinova et al. 2023 (the countermeasure)",
        "worst-class recall of magnitude runs: recalibrated - raw",
        "paired t and sign-flip over seeds and tasks",
        0.0,
        "greater",
        6,
        margin=0.01,
        margin_reason="1 point of worst-class recall; the project's bound",
        primary=False,
        levels="the final round",
    ),
]


def evaluate(excess: dict[str, np.ndarray], safe: dict[str, np.ndarray], worst: dict[str, np.ndarray]) -> list[Result]:
    """Per unit (seed and task, the same order in every array): ``excess[method]`` the final round's largest excess
    gap, ``safe[method]`` the class-safe sparsity, ``worst['raw'|'recalibrated']`` magnitude's worst-class recall."""
    values = [
        EPSILON - excess["ceag"],
        excess["magnitude"] - excess["ceag"],
        safe["fairgrape"] - safe["magnitude"],
        worst["recalibrated"] - worst["raw"],
    ]
    return family(
        [judge(c, mean_interval(v, c.threshold, c.side, c.margin)) for c, v in zip(CLAIMS, values, strict=True)]
    )


def _final(runs: list[Run], root: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """{(task, method): {seed: final round}} from the sweep folders ``<root>/<task>-<method>``."""
    from prunelab.training.damage import class_safe_sparsity

    out: dict[tuple[str, str], dict[int, dict]] = {}
    for run in runs:
        if run.status != "complete" or not run.rows:
            continue
        task, _, method = run.path.parent.name.partition("-")
        row = {**run.rows[-1], "class_safe": class_safe_sparsity(run.rows)}
        out.setdefault((task, method), {})[int(run.seed or 0)] = row
    return out


def table(runs: list[Run], root: Path) -> str:
    final = _final(runs, root)
    lines = [
        "# Class-aware methods at one budget (10% of the parameters): LeNet-300-100, one pruning round",
        "",
        "| task | method | n | accuracy | worst-class recall | recalibrated | largest excess gap | class-safe | "
        "params kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, method), seeds in sorted(final.items()):
        rows = list(seeds.values())
        lines.append(
            f"| {task} | {method} | {len(rows)} | {pm([r['test/acc'] for r in rows])} | "
            f"{pm([r['test/recall_worst'] for r in rows])} | "
            f"{pm([r.get('calibrated/test/recall_worst', float('nan')) for r in rows])} | "
            f"{pm([r.get('damage/gap_excess_q100', float('nan')) for r in rows])} | "
            f"{pm([r['class_safe'] if r['class_safe'] is not None else float('nan') for r in rows])} | "
            f"{mean([r.get('budget/achieved', float('nan')) for r in rows]):.4f} |"
        )
    units = sorted({(t, s) for (t, m), seeds in final.items() for s in seeds if m == "magnitude"})

    def pick(method: str, key: str) -> np.ndarray:
        return np.array([final.get((t, method), {}).get(s, {}).get(key, np.nan) for t, s in units], dtype=float)

    results = evaluate(
        {m: pick(m, "damage/gap_excess_q100") for m in ("magnitude", "ceag")},
        {m: pick(m, "class_safe") for m in ("magnitude", "fairgrape")},
        {
            "raw": pick("magnitude", "test/recall_worst"),
            "recalibrated": pick("magnitude", "calibrated/test/recall_worst"),
        },
    )
    return "\n".join([*lines, *claims_section(CLAIMS, results)]) + "\n"


DEVIATIONS = [
    "Not one paper: prunelab's own question (issue 30), with each method's source in docs/methods.md §7; one pruning "
    "round to 10% of the parameters and 4 epochs of fine-tuning from the dense round, on LeNet-300-100.",
]
PAPER_VS_OURS = [("any figure", "no paper table (methods from several papers)", "the table above")]

HISTORY = [
    "2026-12-06 (3dcdd01): first declaration, C1-C4, 3 seeds, min n 3.",
    "2026-12-06 (issue 32): C1 primary, margins (C2 and C4 one point, C3 0.05), min n 6; 6 seeds.",
]

SPEC: dict[str, Any] = {
    "time": "estimated ~8 min (3.9 min measured at 3 seeds)",
    "sweeps": {f"{task}-{m}": [*data, *COMMON, *args] for task, data in TASKS.items() for m, args in METHODS.items()},
    "seeds": 6,
    "data": [*sorted(FASHION), "medmnist/pneumoniamnist_reconstructed.npz"],
    "configs": ["classaware"],
}
