"""The real command line, end to end: a 2-round run, W&B offline contents, skip on rerun, resume after kill -9,
and a one-line error for each kind of bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.analysis.wandb_offline import read_history, run_files
from prunelab.models.mlp import MLP
from tests.conftest import cli, kill_when, run_dirs

FAST = ["trainer.max_epochs=3", "schedule.rounds=1"]
TIMING = {"fit_seconds", "wall_seconds", "round_seconds", "compute_seconds"}


@pytest.fixture(scope="module")
def two_round_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    proc = cli(FAST, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(out)
    return out, run_dir, proc


def test_two_round_run_writes_the_run_folder(two_round_run):
    _, run_dir, proc = two_round_run
    assert "worst class" in proc.stdout and "auroc_macro" in proc.stdout  # the per-round table
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["rounds"] == 2
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[0]["sparsity"] == 0 and rows[1]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert rows[1]["nonzero_parameters"] < rows[0]["nonzero_parameters"]
    assert rows[1]["flops"] == pytest.approx(0.5 * rows[1]["flops_dense"], rel=1e-3)
    for key in ("test/acc", "test/auroc_macro", "test/recall/3", "test/fn/3", "test/fp/3", "val/auroc_macro"):
        assert key in rows[1]
    r1 = run_dir / "rounds" / "r01"
    pred = np.load(r1 / "predictions.npz")
    assert pred["probs"].shape == (len(pred["labels"]), 10) and np.allclose(pred["probs"].sum(1), 1, atol=1e-5)
    assert (pred["preds"] == pred["labels"]).mean() == pytest.approx(rows[1]["test/acc"], abs=1e-6)
    masks = torch.load(r1 / "masks.pt", weights_only=True)
    pruned = sum(int((m == 0).sum()) for m in masks.values())
    assert pruned == round(0.5 * sum(m.numel() for m in masks.values()))
    assert rows[1]["parameters"] - rows[1]["nonzero_parameters"] == pruned
    ckpt = torch.load(next((r1 / "checkpoints").glob("best-*.ckpt")), weights_only=True)  # safe loading works
    ckpt_masks = {k: v for k, v in ckpt["state_dict"].items() if k.endswith(".mask")}
    assert ckpt_masks and all(
        torch.equal(ckpt_masks[f"model.{k.rpartition('.')[0]}.parametrizations.weight.0.mask"], v)
        for k, v in masks.items()
    )
    metrics = json.loads((r1 / "metrics.json").read_text())
    assert np.array(metrics["confusion_matrix"]).sum() == len(pred["labels"])
    assert metrics["training_loop"] == "lean"  # the default, and nothing made it fall back to Lightning's loop


def test_wandb_offline_run_holds_per_class_keys(two_round_run):
    _, run_dir, _ = two_round_run
    (wandb_file,) = run_files(run_dir)
    history = read_history(wandb_file)
    keys = {k for row in history for k in row}
    for c in range(10):
        assert f"test/recall/{c}" in keys and f"val/auroc/{c}" in keys and f"test/fn/{c}" in keys
    assert {"prune/round", "prune/sparsity", "prune/flops", "test/auroc_macro"} <= keys
    rounds = [row for row in history if "round/test/acc" in row]  # one summary row per round
    assert [r["prune/round"] for r in rounds] == [0, 1]
    assert rounds[1]["prune/sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert sum("test/acc" in row for row in history) == 2  # the test figures once per round, not twice
    with open(run_dir / "csv" / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert "test/recall/7" in header and "prune/round" in header


def test_wandb_run_is_named_typed_and_plots_over_rounds(two_round_run):
    """Issue 15: a round-aware x-axis (prune/step keeps counting; round summaries over prune/sparsity), a name with
    criterion and seed, job type "run", one W&B run id per run folder, and per-round tables."""
    from prunelab.analysis.wandb_offline import read_run_info
    from prunelab.training.loggers import wandb_id

    _, run_dir, _ = two_round_run
    (wandb_file,) = run_files(run_dir)
    info = read_run_info(wandb_file)
    stored = json.loads((run_dir / "wandb" / "id.json").read_text())
    assert info["job_type"] == "run" and info["id"] == stored["id"] == wandb_id(run_dir.name, stored["salt"])
    assert info["name"].startswith("digits-mlp-magnitude-cross_entropy-s0-")
    axes = info["step_metrics"]
    assert axes["round/test/acc"] == "prune/sparsity" and axes["val/acc"] == "prune/step"
    assert axes["*"] == "prune/step" and axes["round/*"] == "prune/sparsity"  # the globs agree with the names
    history = read_history(wandb_file)
    steps = [row["prune/step"] for row in history if "val/acc" in row]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # no restart between rounds
    epochs = [row["trainer/global_step"] for row in history if "val/acc" in row]
    assert epochs != sorted(epochs)  # Lightning's own step does restart (what prune/step fixes)
    tables = [row for row in history if row.get("round/per_class/_type") == "table-file"]  # nested keys, joined
    assert len(tables) == 2 and all(t["round/per_class/nrows"] == 10 for t in tables)
    matrices = [row for row in history if row.get("round/confusion_matrix_table/_type") == "table-file"]
    assert len(matrices) == 2 and matrices[0]["round/confusion_matrix_table/nrows"] == 100  # 10 x 10 cells


def test_a_resumed_run_continues_its_wandb_run_and_its_csv(tmp_path):
    import shutil

    from prunelab.analysis.wandb_offline import read_run_info

    proc = cli(FAST, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    shutil.rmtree(run_dir / "rounds" / "r01")  # as if the run had stopped after round 0
    again = cli(FAST, tmp_path)
    assert again.returncode == 0 and "resuming after round 0" in again.stdout, again.stderr[-2000:]
    (current,) = run_files(run_dir)  # one offline run to sync: the first attempt's folder is superseded
    (earlier,) = (run_dir / ".wandb_superseded").glob("offline-run-*/run-*.wandb")
    assert read_run_info(current)["id"] == read_run_info(earlier)["id"]
    summaries = [row for row in read_history(current) if "round/test/acc" in row]
    assert [row["prune/round"] for row in summaries] == [0, 1]  # round 0 sent again, round 1 once
    with open(run_dir / "csv" / "metrics.csv") as f:
        rounds = [float(r["prune/round"]) for r in csv.DictReader(f) if r.get("prune/round")]
    assert rounds.count(0.0) >= 2 and 1.0 in rounds  # round 0's rows from the first attempt are kept


def test_rerun_skips_a_complete_run(two_round_run):
    out, run_dir, _ = two_round_run
    before = (run_dir / "results.jsonl").read_text()
    proc = cli(FAST, out)
    assert proc.returncode == 0 and "already complete" in proc.stdout
    assert (run_dir / "results.jsonl").read_text() == before and run_dirs(out) == [run_dir]


def _comparable(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def test_killed_run_resumes_to_identical_results(tmp_path):
    args = [
        "logger=none",
        "model=lenet300",
        "data.batch_size=8",
        "trainer.max_epochs=6",
        "schedule.rounds=1",
        "optimizer=sgd",
        "share_round0=false",  # both runs train every round themselves (the reference's round 0 is not copied)
    ]
    ref = cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    kill_when([*args, f"hydra.run.dir={run}"], tmp_path, run / "rounds" / "r01" / "checkpoints" / "last.ckpt")
    assert not (run / "rounds" / "r01" / "metrics.json").exists(), "the kill came too late to test a resume"
    assert json.loads((run / "summary.json").read_text())["status"] == "running"
    resumed = cli([*args, f"hydra.run.dir={run}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _comparable(run) == _comparable(tmp_path / "ref")


def _write_foreign_checkpoint(path: Path) -> Path:
    torch.save(MLP((1, 8, 8), 10, (32,)).state_dict(), path)
    return path


def _truncated(path: Path) -> Path:
    _write_foreign_checkpoint(path)
    path.write_bytes(path.read_bytes()[:100])
    return path


ERRORS = [
    (["data=imagenet"], "data=imagenet", None),
    (["model.widthh=3"], "model.widthh", None),
    (["schedule.rate=1.5"], "schedule.rate", None),
    (["schedule=one_shot", "schedule.sparsity=1.0"], "schedule.sparsity", None),
    (["data=mnist", "paths.data_dir=NOWHERE"], "paths.data_dir", None),
    (["data.imbalance.positive_class=12"], "data.imbalance.positive_class", None),
    (["init_weights=CKPT"], "init_weights", _write_foreign_checkpoint),
    (["init_weights=CKPT"], "init_weights", _truncated),
    (["rewind=step", "rewind.step=100000"], "rewind.step", None),
]


@pytest.mark.parametrize("args,key,make", ERRORS, ids=[e[1] + ("-" + e[2].__name__ if e[2] else "") for e in ERRORS])
def test_bad_input_fails_on_one_line_before_training(args, key, make, tmp_path):
    if make is not None:
        ckpt = make(tmp_path / "ckpt.pt")
        args = [a.replace("CKPT", str(ckpt)) for a in args]
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")) for a in args]
    proc = cli(["logger=none", *args], tmp_path)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("prunelab: error:")]
    assert len(errors) == 1 and key in errors[0] and "fix" in errors[0], proc.stderr[-2000:]
    assert not list(tmp_path.rglob("metrics.json")), "training started"
    for summary in tmp_path.rglob("summary.json"):
        assert json.loads(summary.read_text())["status"] == "failed"


def test_mnist_lenet300_on_real_data(tmp_path, data_dir):
    """The acceptance command, shortened: iterative magnitude pruning of LeNet-300-100 on real MNIST."""
    proc = cli(
        [
            "data=mnist",
            "model=lenet300",
            f"paths.data_dir={data_dir}",
            "logger=none",
            "schedule.rounds=1",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=60",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    rows = _comparable(run_dir)
    assert rows[1]["sparsity"] == pytest.approx(0.5, abs=1e-4) and rows[0]["test/acc"] > 0.85
    assert rows[0]["parameters"] == 266_610 and len(np.load(run_dir / "rounds/r01/predictions.npz")["labels"]) == 10_000


def test_step_rewind_restores_the_step_k_weights(tmp_path):
    proc = cli(["logger=none", "rewind=step", "rewind.step=7", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    snap = torch.load(run_dir / "rewind" / "step7.pt", weights_only=True)
    init = torch.load(run_dir / "rewind" / "init.pt", weights_only=True)
    key = "features.1.parametrizations.weight.original"
    assert not torch.equal(snap[key], init[key])  # 7 steps moved the weights


def test_unwritable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # fails for root too, unlike a chmod-ed folder
    proc = cli(["logger=none", f"paths.output_dir={blocker / 'out'}"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr.strip().startswith("prunelab: error: paths.output_dir")
        and len(proc.stderr.strip().splitlines()) == 1
    )


def _interrupted_copy(run_dir: Path, to: Path, keep_rounds: int) -> Path:
    """A copy of a finished run as if it had been killed after ``keep_rounds`` rounds."""
    shutil.copytree(run_dir, to)
    for r in sorted((to / "rounds").iterdir())[keep_rounds:]:
        shutil.rmtree(r)
    (to / "summary.json").write_text(json.dumps({"status": "running"}))
    (to / "attempts.jsonl").unlink(missing_ok=True)
    return to


@pytest.mark.parametrize("broken", ["kept_model", "last_checkpoint"])
def test_broken_checkpoint_is_named_and_its_round_redone(two_round_run, tmp_path, broken):
    """Killed after round 0; then round 0's kept model (the start of round 1) or round 1's last.ckpt is truncated."""
    out, run_dir, _ = two_round_run
    copy = _interrupted_copy(run_dir, tmp_path / "copy", keep_rounds=1)
    if broken == "kept_model":
        target, redone = copy / "rounds" / "r00" / "model.pt", 0
    else:
        ckpts = copy / "rounds" / "r01" / "checkpoints"
        ckpts.mkdir(parents=True)
        shutil.copy(next((run_dir / "rounds" / "r01" / "checkpoints").glob("last*.ckpt")), ckpts / "last.ckpt")
        target, redone = ckpts / "last.ckpt", 1
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3])
    proc = cli([*FAST, f"hydra.run.dir={copy}"], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert target.name in log and f"redoing round {redone}" in log  # named, never silently skipped
    assert (
        list((copy / "rounds").glob("r00.broken-*")) if redone == 0 else list(ckpts.parent.glob("checkpoints.broken-*"))
    )
    assert json.loads((copy / "summary.json").read_text())["status"] == "complete"
    assert _comparable(copy) == _comparable(run_dir)  # the redone round gives the same results


def test_every_checkpoint_load_is_weights_only():
    """No pickle code runs from a checkpoint: every torch.load / Lightning fit-from-checkpoint in prunelab is safe."""
    src = Path(__file__).resolve().parent.parent / "src" / "prunelab"
    calls = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        for marker in ("torch.load(", "trainer.fit("):
            start = 0
            while (i := text.find(marker, start)) >= 0:
                end = text.find(")\n", i)
                calls.append((path.name, text[i : end + 1]))
                start = i + 1
    assert len(calls) >= 4
    unsafe = [(name, call) for name, call in calls if "weights_only=True" not in call]
    assert not unsafe, unsafe
