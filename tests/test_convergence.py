"""Converged baselines (``converge``) and a sweeper objective that does not tune on the test set."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from prunelab.analysis.report import markdown
from prunelab.config.identity import run_id
from prunelab.runs.folders import find_runs
from tests.conftest import cli
from tests.test_faults import one_line_error

DENSE = "converge={max_epochs: 40, patience: 2, min_delta: 0.0}"


def test_dense_round_trains_until_the_monitor_stops_improving(tmp_path):
    run = tmp_path / "run"
    proc = cli(
        [
            "logger=none",
            "trainer.max_epochs=1",
            "schedule.rounds=1",
            DENSE,
            "monitor.metric=val/loss",
            "monitor.mode=min",
            f"hydra.run.dir={run}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    dense, pruned = rows
    assert dense["converged"] is True and 2 < dense["epochs"] < 40  # stopped by patience, not by the cap
    assert pruned["epochs"] == 1 and "converged" not in pruned  # fine-tuning keeps trainer.max_epochs
    every = tmp_path / "every"
    proc = cli(
        [
            "logger=none",
            "trainer.max_epochs=1",
            "schedule.rounds=1",
            DENSE[:-1] + ", rounds: all}",
            "monitor.metric=val/loss",
            "monitor.mode=min",
            f"hydra.run.dir={every}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (every / "results.jsonl").read_text().splitlines()]
    assert rows[0] == {**rows[0], "converged": True} and rows[1]["converged"] is True and rows[1]["epochs"] > 2


def test_first_and_last_converges_the_dense_and_the_final_round_only(tmp_path):
    from prunelab.runner.round import converges

    assert [converges("first_and_last", r, 3) for r in range(4)] == [True, False, False, True]
    assert [converges("first", r, 3) for r in range(4)] == [True, False, False, False]
    assert [converges("all", r, 3) for r in range(4)] == [True] * 4
    run = tmp_path / "ends"
    ends = "converge={max_epochs: 6, patience: 2, min_delta: 0.0, rounds: first_and_last}"
    args = ["logger=none", "trainer.max_epochs=1", "schedule.rounds=2", ends]
    proc = cli([*args, "monitor.metric=val/loss", "monitor.mode=min", f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert ["converged" in r for r in rows] == [True, False, True]  # trained under the stopping rule (or its cap)
    assert rows[1]["epochs"] == 1 and rows[2]["epochs"] > 2  # the middle round keeps trainer.max_epochs
    typo = cli(["logger=none", DENSE[:-1] + ", rounds: last}"], tmp_path)
    assert "first_and_last" in one_line_error(typo, "converge.rounds")


def test_converge_enters_the_run_id_only_when_set():
    base = OmegaConf.create({"seed": 0, "trainer": {"max_epochs": 1}})
    same = OmegaConf.create({"seed": 0, "trainer": {"max_epochs": 1}, "converge": None})
    other = OmegaConf.create({"seed": 0, "trainer": {"max_epochs": 1}, "converge": {"max_epochs": 9}})
    assert run_id(base) == run_id(same) != run_id(other)


def test_converge_is_refused_where_it_cannot_apply(tmp_path):
    bad = cli(["logger=none", DENSE, "population=2"], tmp_path)
    assert "population" in one_line_error(bad, "converge")
    gradual = cli(["logger=none", DENSE, "schedule=gradual"], tmp_path)
    assert "stop early" in one_line_error(gradual, "converge")
    typo = cli(["logger=none", "converge={max_epoch: 9}"], tmp_path)
    one_line_error(typo, "converge")


def test_a_test_set_objective_needs_an_opt_in_and_is_marked(tmp_path):
    refused = cli(["logger=none", "objective=test/acc"], tmp_path)
    assert "tune_on_test=true" in one_line_error(refused, "objective")
    run = tmp_path / "run"
    ok = cli(
        [
            "logger=none",
            "trainer.max_epochs=1",
            "schedule.rounds=1",
            "objective=test/acc",
            "tune_on_test=true",
            f"hydra.run.dir={run}",
        ],
        tmp_path,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    text = markdown([], find_runs(tmp_path))
    assert "Runs tuned on the test set (1)" in text and "objective test/acc" in text
