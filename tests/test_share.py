"""Issue 15: round 0 shared between runs that differ only in what happens after it (criterion, schedule rate or
rounds, rewind). The reused run's results equal an unshared run's; other round-0 settings are never shared."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli, run_dirs
from tests.test_faults import comparable, one_line_error

FAST = ["logger=csv", "trainer.max_epochs=2", "schedule.rounds=1"]


def attempts(run_dir):
    return [json.loads(x) for x in (run_dir / "attempts.jsonl").read_text().splitlines()]


def test_a_criteria_sweep_trains_round_0_once_with_the_same_results(tmp_path):
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    shared.mkdir()
    alone.mkdir()
    proc = cli(["-m", "criterion=magnitude,random", *FAST, f"hydra.sweep.dir={shared / 'sweep'}"], shared)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = sorted(run_dirs(shared / "sweep"), key=lambda p: attempts(p)[0].get("shared_round0", ""))
    assert "shared_round0" not in attempts(first)[0]
    reused = attempts(second)[0]
    assert Path(reused["shared_round0"]).parent == shared / "shared" / "round0"
    assert reused["saved_seconds"] > 0
    summary = json.loads((shared / "sweep" / "sweep_summary.json").read_text())  # the .md rounds to whole seconds
    assert summary["saved_seconds"] == round(reused["saved_seconds"], 2) > 0
    for criterion in ("magnitude", "random"):
        proc = cli([f"criterion={criterion}", *FAST, "share_round0=false"], alone)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (alone / "shared").exists()
    by_id = {p.name: p for p in run_dirs(alone)}
    for run in (first, second):  # the same run ids, and bit-identical results with and without sharing
        assert comparable(run) == comparable(by_id[run.name])


def test_other_round_0_settings_are_not_shared(tmp_path):
    for args in (["seed=0"], ["seed=1"], ["seed=0", "optimizer.lr=0.005"]):
        assert cli([*FAST, *args], tmp_path).returncode == 0
    keys = sorted(p.name for p in (tmp_path / "shared" / "round0").iterdir())
    assert len(keys) == 3
    assert all("shared_round0" not in attempts(r)[0] for r in run_dirs(tmp_path / "runs"))


def test_a_broken_shared_round_is_trained_again(tmp_path):
    assert cli([*FAST, "criterion=magnitude"], tmp_path).returncode == 0
    (key,) = (tmp_path / "shared" / "round0").iterdir()
    (key / "rounds" / "r00" / "model.pt").write_bytes(b"broken")
    proc = cli([*FAST, "criterion=random"], tmp_path)
    assert proc.returncode == 0 and "is broken" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    run = next(r for r in run_dirs(tmp_path / "runs") if "random" in (r / "run_config.yaml").read_text())
    assert "shared_round0" not in attempts(run)[0]


def test_share_round0_must_be_a_boolean(tmp_path):
    one_line_error(cli([*FAST, "share_round0=maybe"], tmp_path), "share_round0")
