"""Jordao et al. (docs/methods.md §2): PLS+VIP removes FLOPs without penalizing accuracy, and beats L1-norm
filter pruning at matched FLOPs and matched fine-tuning budget.

Input per seed (paired: the same seed gives every population the same dense model): the converged dense accuracy,
each criterion's accuracy after the same number of rounds, and each criterion's FLOPs share at that round. The
comparison with L1 is only made when the FLOPs shares match (within ``FLOPS_TOL`` for every seed); otherwise it
is inconclusive with the reason.

One file per paper: its claims (:data:`CLAIMS`, :func:`evaluate`), the CPU-scale sweep of
``prunelab reproduce jordao`` (:data:`SPEC`) and its table (:func:`table`), found by
:func:`prunelab.analysis.papers.registry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prunelab.analysis.claims import Claim, Interval, Result, family, judge, mean_interval
from prunelab.analysis.papers.common import ENDS, FASHION, claims_section, curve_table, dense_line, paired, per_seed
from prunelab.runs.folders import Run

FLOPS_TOL = 0.01
CLAIMS = [
    Claim(
        "J1",
        'PLS+VIP removes FLOPs "without penalizing accuracy"',
        "abstract, methods §2",
        "accuracy of PLS+VIP (global ranking) after the last round - converged dense",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.0,
        margin_reason="'without penalizing accuracy' (abstract): no loss at all, so the bound is 0",
        primary=True,
        levels="the last round (the same fine-tuning budget for every population)",
    ),
    Claim(
        "J2",
        "PLS+VIP is more accurate than L1-norm filter pruning at equal FLOPs and fine-tuning budget",
        "§5 comparison with other criteria, methods §2",
        "accuracy PLS+VIP - L1 (layer scope: same filters per layer, FLOPs; same round)",
        "paired t and sign-flip over seeds",
        0.0,
        "greater",
        6,
        margin=0.005,
        margin_reason="a gain below half a point would be the paper's 'negligible' difference; the project's bound",
        levels="the last round, layer scope (FLOPs matched)",
    ),
]


def evaluate(
    dense: np.ndarray, pls: np.ndarray, l1: np.ndarray, flops_pls: np.ndarray, flops_l1: np.ndarray
) -> list[Result]:
    """Both claims on arrays paired by seed (the same seeds in every array)."""
    return family([no_drop(dense, pls), versus_l1(pls, l1, flops_pls, flops_l1)])


def no_drop(dense: np.ndarray, pls: np.ndarray) -> Result:
    """J1 on per-seed accuracies: the converged dense model and PLS+VIP after the last round."""
    c = CLAIMS[0]
    return judge(c, mean_interval(pls - dense, c.threshold, c.side, c.margin))


def versus_l1(pls: np.ndarray, l1: np.ndarray, flops_pls: np.ndarray, flops_l1: np.ndarray) -> Result:
    """J2 on per-seed accuracies and FLOPs shares of both criteria at the same round."""
    gap = float(np.max(np.abs(np.asarray(flops_pls) - np.asarray(flops_l1)))) if len(flops_pls) else float("nan")
    if not gap <= FLOPS_TOL:
        iv = Interval(float("nan"), float("nan"), float("nan"), len(pls))
        return judge(CLAIMS[1], iv, [f"FLOPs shares differ by up to {gap:.3f}: not a matched comparison"])
    return judge(
        CLAIMS[1],
        mean_interval(pls - l1, CLAIMS[1].threshold, CLAIMS[1].side, CLAIMS[1].margin),
        [f"FLOPs shares equal within {gap:.4f} for every seed"],
    )


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


def _final_line(pops: dict[str, dict[int, list[dict]]], last: int) -> str:
    """How the compared round was fine-tuned: to convergence (how many stopped by patience, the epochs) or not."""
    rows = [x for rounds in pops.values() for x in rounds.get(last, [])]
    if not rows or "converged" not in rows[0]:
        return f"Round {last}: a fixed number of fine-tuning epochs (not trained to convergence)."
    stopped, epochs = sum(bool(x["converged"]) for x in rows), [x["epochs"] for x in rows]
    return (
        f"Round {last} (the compared one): fine-tuned until validation accuracy stopped improving; {stopped} of "
        f"{len(rows)} models stopped by patience (epochs {min(epochs)}-{max(epochs)}); rounds 1-{last - 1} keep "
        "the config's epochs."
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
    lines += ["", _final_line(pops, last)]
    d, a = paired(per_seed(paper, 0, "test/acc"), per_seed(paper, last, "test/acc"))
    p, q = paired(per_seed(pls, last, "test/acc"), per_seed(l1, last, "test/acc"))
    fp, fl = paired(per_seed(pls, last, "flops_ratio"), per_seed(l1, last, "flops_ratio"))
    results = family([no_drop(d, a), versus_l1(p, q, fp, fl)])
    lines += [
        "",
        f"Compared at round {last} (every population: the same fine-tuning budget). J1 uses the paper's "
        "method (one VIP ranking over all filters); J2 compares the criteria at layer scope, where both remove "
        "the same number of filters from each layer, so FLOPs match by construction (a global ranking removes "
        "different layers' filters and would need interpolation between rounds to match FLOPs). Paper "
        "(docs/methods.md §2): up to 67% FLOPs removed without penalizing accuracy, up to 90% with a negligible "
        "drop (ImageNet/CIFAR-10; not this scale).",
    ]
    return "\n".join([*lines, *claims_section(CLAIMS, results)]) + "\n"


DEVIATIONS = [
    "Model and data: a small CNN with BatchNorm (cnn_small_bn) on Fashion-MNIST, against VGG-16 / ResNet on CIFAR-10 "
    "and ImageNet.",
    "The dense round and the final fine-tuning (the model J1 and J2 read) train to convergence on validation "
    "accuracy (patience 4, at most 40 epochs); the fine-tuning after each intermediate iteration is 2 epochs; every "
    "epoch is a random quarter of the training batches. The paper fine-tunes each iteration (budget not read). "
    "Every round to convergence was estimated at ~110 min on 2 cores with two jobs at once, over the 90 minutes a "
    "paper may take (pilot, seed 0, one thread: the dense round stopped at 32 epochs in 523 s, fine-tuning rounds "
    "at 6-8 epochs).",
    "PLS is fitted on 2000 training examples' pooled conv outputs; the paper uses all training examples.",
    "10% of the filters per iteration (p = 0.1) for the rounds declared in the sweep.",
]
PAPER_VS_OURS = [
    (
        "FLOPs removed without penalizing accuracy",
        "up to 67% (README tables, ImageNet/CIFAR-10)",
        "J1 at the last round",
    ),
    ("with a negligible drop", "up to 90%", "the FLOPs column above"),
]

HISTORY = [
    "2026-11-23 (ff4aa08): J1 as '|accuracy change| < 1 point'.",
    "2026-11-23 (9e33ff8): J1 changed to 'change > -1 point' after the first version said 'did not hold' for a "
    "gain: exploratory.",
    "2026-12-06 (issue 32): re-declared: J1 primary with the paper's own bound ('without penalizing accuracy': "
    "margin 0), J2 with a half-point margin (a smaller gain is 'negligible'); min n 6; 6 seeds; every fine-tuning "
    "round to convergence, as the dense round (was 2 epochs).",
    "2026-12-06 (issue 32, before any run of the new declaration): the dense and the final fine-tuning round to "
    "convergence, intermediate fine-tuning 2 epochs (converge.rounds=first_and_last): every round to convergence "
    "was estimated at ~110 min on 2 cores.",
]

SPEC: dict[str, Any] = {
    # "time": CPU wall time of a first launch on 2 cores; the measured one is in the doc section
    "time": "estimated ~60 min with --jobs 2 (40-45 min measured at 3 seeds with 2-epoch fine-tuning)",
    "sweeps": {
        # the dense round and the final fine-tuning to convergence: J1 compares like with like
        "paper": ["experiment=jordao_fashion", "criterion=pls_vip", ENDS],
        "matched": ["experiment=jordao_fashion", "criterion=pls_vip,l1_filter", "criterion.scope=layer", ENDS],
    },
    "seeds": 6,
    "data": sorted(FASHION),
    "configs": ["jordao_fashion"],
}
