"""Issue 30's acceptance: every class-aware method resumes after kill -9 with identical results. The losses with a
state of their own (ceag, equalized, distill) are tested in test_teachers.py; here the criteria and ``pw``, on the
digits default (cnn_small_bn for the activation criterion, which scores filters): one pruning round, killed inside
round 1, resumed, compared with an uninterrupted run.

Two kill points: after the first checkpoint of round 1 (the masks and the criterion's statistics come back from
the round's files, nothing is selected again), and right after a per-class criterion wrote its statistics but
before any checkpoint (the resumed process selects again, so the scoring must not depend on the process)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import cli, kill_when

CKPT, SELECTED = "checkpoints/last.ckpt", "criterion.json"
CASES = [
    ("criterion=fairgrape", CKPT),
    ("criterion=fairprune criterion.protect=[1]", CKPT),
    ("criterion=class_count", CKPT),
    ("criterion=per_class_taylor", SELECTED),
    ("criterion=per_class_snip", CKPT),
    ("criterion=per_class_activation model=cnn_small_bn", SELECTED),
    ("loss=pw", CKPT),
]


def _round1(run):
    r1 = run / "rounds" / "r01"
    tensors = {name: torch.load(r1 / name, weights_only=True) for name in ("model.pt", "masks.pt")}
    stats = json.loads((r1 / SELECTED).read_text()) if (r1 / SELECTED).exists() else None
    return tensors, json.loads((r1 / "metrics.json").read_text()), stats


@pytest.mark.parametrize("method, target", CASES, ids=[m.split()[0] for m, _ in CASES])
def test_a_killed_class_aware_round_resumes_to_identical_results(tmp_path, method, target):
    args = ["logger=none", *method.split(), "schedule.rounds=1", "trainer.max_epochs=3", "data.batch_size=16"]
    args += ["share_round0=false"]
    ref = cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    r1 = run / "rounds" / "r01"
    kill_when([*args, f"hydra.run.dir={run}"], tmp_path, r1 / target, delay=0.05 if target == CKPT else 0.0)
    assert (r1 / target).exists() and not (r1 / "metrics.json").exists(), "the kill missed round 1"
    if target == SELECTED:
        assert not (r1 / CKPT).exists(), "the kill came after the first checkpoint: selection was not redone"
    resumed = cli([*args, f"hydra.run.dir={run}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (want, want_row, want_stats), (got, got_row, got_stats) = _round1(tmp_path / "ref"), _round1(run)
    for name in want:
        assert want[name].keys() == got[name].keys()
        assert all(torch.equal(want[name][k], got[name][k]) for k in want[name]), name
    assert got_row["test/acc"] == want_row["test/acc"] and got_row["sparsity"] == want_row["sparsity"] > 0
    assert got_stats == want_stats
