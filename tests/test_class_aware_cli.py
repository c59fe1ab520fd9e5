"""Every class-aware method of issue 30 from the command line on the acceptance settings, kept small: MNIST with
LeNet-300-100 for every loss and criterion, Fashion-MNIST with cnn_small_bn for the structured criteria (three
classes, three training batches per epoch: what is checked is that each runs end to end and records its rounds)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import cli

SMALL = ["logger=none", "schedule.rounds=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=3"]
SMALL += ["data.classes=[0,1,2]", "share_round0=false"]
MNIST = ["data=mnist", "model=lenet300"]
FASHION = ["data=fashion_mnist", "model=cnn_small_bn", "+trainer.limit_val_batches=1", "export.latency_reps=1"]
METHODS = [
    (MNIST, "loss=ceag"),
    (MNIST, "loss=equalized"),
    (MNIST, "loss=distill"),
    (MNIST, "loss=pw"),
    (MNIST, "criterion=fairgrape"),
    (MNIST, "criterion=fairprune criterion.protect=[1]"),
    (MNIST, "criterion=per_class_snip"),
    (FASHION, "criterion=per_class_taylor"),
    (FASHION, "criterion=class_count"),
    (FASHION, "criterion=per_class_activation"),
]


@pytest.mark.parametrize("setting, method", METHODS, ids=[m for _, m in METHODS])
def test_each_class_aware_method_runs_on_the_acceptance_settings(tmp_path, data_dir, setting, method):
    run = tmp_path / "run"
    proc = cli([*SMALL, *setting, *method.split(), f"hydra.run.dir={run}"], tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["sparsity"] > 0
    assert sum(k.startswith("damage/gap/") for k in rows[1]) == 3  # three classes, each with its damage
    if method in ("loss=ceag", "loss=equalized"):  # the constrained losses record their multipliers after pruning
        assert "loss/multiplier/2" in rows[1] and "loss/multiplier/2" not in rows[0]
