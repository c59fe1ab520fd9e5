"""Issue 14: the lottery-ticket controls, rewind=reinit (same masks, fresh random weights) and rewind=shuffle
(masks permuted within each layer, round-0 weights)."""

from __future__ import annotations

import json

import pytest
import torch

from prunelab.models.mlp import MLP
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning.callback import PruningCallback
from prunelab.pruning.criteria.magnitude import Magnitude
from prunelab.pruning.schedules import Iterative
from prunelab.runs.files import SnapshotFolder
from tests.conftest import cli, run_dirs
from tests.test_faults import one_line_error


def masked_mlp(seed: int = 0):
    torch.manual_seed(seed)
    model = MLP((1, 8, 8), 10, (32, 16))
    masking.attach_masks(model, masking.prunable_names(model))
    return model


def prune_once(kind: str, tmp_path, trained_seed: int = 5):
    init = masked_mlp(0)
    (tmp_path / "rewind").mkdir(exist_ok=True)
    SnapshotFolder(tmp_path / "rewind").save("init.pt", rewinding.snapshot(init))
    fresh = MLP((1, 8, 8), 10, (32, 16))  # another initialisation
    torch.save(rewinding.dense_state_as_masked(fresh.state_dict(), init), tmp_path / "rewind" / "reinit.pt")
    model = masked_mlp(trained_seed)  # stands in for the trained round-0 weights
    cb = PruningCallback(
        Magnitude(), Iterative(0.5, 2), rewinding.Rewind(kind), 1, SnapshotFolder(tmp_path / "rewind"), seed=3
    )
    trained_masks = PruningCallback(
        Magnitude(), Iterative(0.5, 2), rewinding.Rewind("none"), 1, SnapshotFolder(tmp_path / "x")
    )
    reference = masked_mlp(trained_seed)
    trained_masks.prune(reference)
    cb.prune(model)
    return model, init, fresh, reference


def test_reinit_keeps_the_masks_and_restarts_from_fresh_weights(tmp_path):
    model, init, fresh, reference = prune_once("reinit", tmp_path)
    masks, ref = masking.get_masks(model, primary_only=True), masking.get_masks(reference, primary_only=True)
    assert all(torch.equal(masks[n], ref[n]) for n in masks)  # the ticket's masks
    for name in masks:
        kept = masking.effective(model, name)
        assert torch.equal(kept, dict(fresh.named_parameters())[name] * masks[name])
        assert not torch.equal(kept, masking.effective(init, name) * masks[name])


def test_shuffle_permutes_each_layer_and_restarts_from_init(tmp_path):
    model, init, _, reference = prune_once("shuffle", tmp_path)
    masks, ref = masking.get_masks(model, primary_only=True), masking.get_masks(reference, primary_only=True)
    for name in masks:
        assert int(masks[name].sum()) == int(ref[name].sum())  # the same sparsity per layer
        assert not torch.equal(masks[name], ref[name])  # a different subnetwork
        assert torch.equal(masking.effective(model, name), masking.original(init, name) * masks[name])


def test_shuffle_is_seeded():
    m = {"a": (torch.rand(50, generator=torch.Generator().manual_seed(0)) > 0.5).float()}
    assert torch.equal(rewinding.shuffled(m, 1, 2)["a"], rewinding.shuffled(m, 1, 2)["a"])
    assert not torch.equal(rewinding.shuffled(m, 1, 2)["a"], rewinding.shuffled(m, 1, 3)["a"])


def test_reinit_run_saves_a_fresh_initialisation(tmp_path):
    proc = cli(["logger=none", "trainer.max_epochs=1", "schedule.rounds=1", "rewind=reinit"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    init, fresh = (torch.load(run / "rewind" / f, weights_only=True) for f in ("init.pt", "reinit.pt"))
    assert init.keys() == fresh.keys()
    assert all(init[k].shape == fresh[k].shape for k in init)
    assert not all(torch.equal(init[k], fresh[k]) for k in init if k.endswith("original"))
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(
    "args",
    [
        ["rewind=shuffle", "criterion=l1_filter", "model=cnn_small_bn"],
        ["rewind=reinit", "schedule=gradual", "schedule.end_step=10"],
    ],
)
def test_controls_are_refused_where_they_do_not_apply(args, tmp_path):
    one_line_error(cli(["logger=none", "trainer.max_epochs=1", *args], tmp_path), "rewind")


def _ckpt(run, r):
    return torch.load(
        run / "rounds" / f"r{r:02d}" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )


@pytest.mark.parametrize("budget", ["continue", "restart"])  # restart: every round the full budget, fresh schedule
def test_step_rewinding_continues_round_zeros_budget_and_schedule(budget, tmp_path):
    sched = "scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 1, gamma: 0.5}"
    args = [
        "logger=none",
        "trainer.max_epochs=3",
        "schedule.rounds=1",
        "rewind=step",
        "rewind.step=25",
        f"rewind.budget={budget}",
        sched,
    ]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    first, second = _ckpt(run, 0), _ckpt(run, 1)
    total = first["global_step"]
    per_epoch = total // 3
    assert per_epoch < 25  # step 25 lies in epoch 1 (0-based): the schedule resumes there
    epoch_sched = second["lr_schedulers"][0]["last_epoch"]
    if budget == "continue":  # round 0's epochs from the one holding step 25, the schedule resumed there
        assert second["global_step"] == total - (25 // per_epoch) * per_epoch
        assert epoch_sched == first["lr_schedulers"][0]["last_epoch"]
    else:
        assert second["global_step"] == total and epoch_sched == first["lr_schedulers"][0]["last_epoch"]


def test_continued_budget_refuses_converging_every_round(tmp_path):
    args = ["logger=none", "rewind=step", "rewind.step=5", "converge={max_epochs: 5, patience: 1, rounds: all}"]
    one_line_error(cli(args, tmp_path), "rewind.budget")
