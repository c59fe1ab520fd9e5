"""Matched budgets (issue 29, item 6): criteria launched with the same budget.target/value land within its
tolerance of the target and of each other (unstructured and structured, global and per-layer scope), the report
ranks them by class-safe sparsity and accuracy, and a value no rate can reach is refused before any training."""

from __future__ import annotations

import csv
import json

import pytest
from omegaconf import OmegaConf

from prunelab.errors import PrunelabError
from prunelab.pruning.budget import Budget
from tests.conftest import cli, run_dirs

QUICK = ["logger=none", "trainer.max_epochs=1", "schedule.rounds=2"]


def _final(run_dir):
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return rows[-1]


@pytest.mark.parametrize(
    "node, key",
    [
        ({"target": "parms", "value": 0.1}, "budget.target"),
        ({"target": "params", "value": 1.0}, "budget.value"),
        ({"target": "params", "value": 0}, "budget.value"),
        ({"target": "flops", "value": 0.5, "tolerance": 0}, "budget.tolerance"),
        ({"target": None, "value": 0.5}, "budget.target"),
    ],
)
def test_bad_budgets_name_their_key(node, key):
    with pytest.raises(PrunelabError) as err:
        Budget.from_config(OmegaConf.create(node))
    assert err.value.key == key


def test_round_goals_follow_the_geometric_path_to_the_value():
    b = Budget("params", 0.1)
    assert [round(b.goal(k, 2), 6) for k in range(3)] == [1.0, round(0.1**0.5, 6), 0.1]


def test_three_criteria_with_one_budget_land_within_its_tolerance_and_are_ranked(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "criterion=magnitude,random,snip", "budget.target=params", "budget.value=0.1", *QUICK]
    proc = cli([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finals = [_final(d) for d in run_dirs(sweep)]
    assert len(finals) == 3
    for row in finals:
        kept = row["nonzero_parameters"] / row["parameters"]
        assert abs(kept - 0.1) <= 0.01 and row["budget/achieved"] == pytest.approx(kept)
        assert row["budget/within_tolerance"] is True
    rep = cli(["report", str(sweep), "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    with open(tmp_path / "rep" / "class_damage.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["population"] for r in rows} == {"magnitude", "random", "snip"}  # each population's short name
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Class damage" in md and "budget params = 0.1: 3 runs" in md and ": within the tolerance 0.01" in md
    ranked = [line for line in md.splitlines() if line.startswith("| 1 | ")]
    best = max(rows, key=lambda r: (float(r["class_safe_sparsity"] or -1), float(r["test_acc"])))
    assert ranked and f"| {best['population']} |" in ranked[0]  # rank 1: highest class-safe sparsity, then accuracy
    assert (tmp_path / "rep" / "tolerance_band.png").exists()
    assert "| method | n | accuracy | worst-class recall |" in md  # methods x metrics, mean ± std over seeds
    manifest = json.loads((tmp_path / "rep" / "figures.json").read_text())
    (cost,) = [m for m in manifest if m["kind"] == "worst_recall_vs_cost"]
    assert cost["xlabel"] == "params (share of dense)" and (tmp_path / "rep" / cost["file"]).stat().st_size > 5000


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_structured_and_unstructured_criteria_meet_one_flops_budget(tmp_path, scope):
    finals = []
    for criterion in ("l1_filter", "magnitude"):
        run = tmp_path / criterion
        args = [f"criterion={criterion}", f"criterion.scope={scope}", "model=cnn3", "budget.target=flops"]
        proc = cli([*args, "budget.value=0.3", *QUICK, f"hydra.run.dir={run}"], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        finals.append(_final(run))
    structured, unstructured = finals
    assert "units_removed_share" in structured and "units_removed_share" not in unstructured
    for row in finals:
        assert abs(row["budget/achieved"] - 0.3) <= 0.01 and row["budget/within_tolerance"] is True
    assert abs(structured["budget/achieved"] - unstructured["budget/achieved"]) <= 0.01
    assert structured["budget/achieved"] == pytest.approx(structured["flops_ratio"], abs=1e-6)


def test_a_budget_no_rate_can_reach_is_refused_before_training(tmp_path):
    proc = cli(["logger=none", "budget.target=params", "budget.value=0.001"], tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("prunelab: error: budget.value: no rate reaches params 0.001")
    assert not list(tmp_path.rglob("summary.json")) and not list(tmp_path.rglob("*.ckpt"))
