"""Each paper's method runs from the CLI on offline data (shortened: few batches, few rounds)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import cli, run_dirs

SHORT = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=10"]


@pytest.mark.parametrize("scenario", ["red", "blue", "black", "green"])
def test_entezari_scenarios_run(scenario, tmp_path, data_dir):
    proc = cli([f"experiment=entezari_{scenario}", *SHORT, "schedule.rounds=2"], tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [round(r["sparsity"], 4) for r in rows] == [0.0, 0.5, 0.75]
    assert {"test/fnr", "test/fpr", "test/auroc_pos"} <= set(rows[-1])
    per_tensor = json.loads((run_dir / "rounds" / "r02" / "metrics.json").read_text())["sparsity_per_tensor"]
    assert any(k.endswith(".bias") for k in per_tensor)  # biases are pruned too
    weights = {k: v for k, v in per_tensor.items() if k.endswith(".weight")}
    assert all(abs(v - 0.75) < 0.02 for v in weights.values()), weights  # the same share in every layer
    data = json.loads((run_dir / "data.json").read_text())
    neg, pos = data["counts"]["train"]
    assert data["classes"] == ["not_pneumonia", "pneumonia"] and abs(neg - 5 * pos) <= 1
