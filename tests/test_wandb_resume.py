"""Issue 31 (item 1): W&B as a faithful mirror of the run folder. A run stopped with SIGTERM inside round 3 (after
round 2) and resumed to the end leaves one offline folder to sync (the README's line), holding one W&B run whose
history has every round once, every epoch once, and monotonic steps; its figures are the run folder's."""

from __future__ import annotations

import json
import signal
import subprocess

from prunelab.analysis.wandb_offline import read_config, read_history, read_run_info
from tests.conftest import cli
from tests.test_faults import start, wait_for

EPOCHS = 3


def _sync_targets(run):
    """What the README's `wandb sync` line picks up in a run folder (its find pattern, evaluated by find)."""
    out = subprocess.run(
        ["find", str(run), "-path", "*/wandb/offline-run-*", "-prune"], capture_output=True, text=True, check=True
    )
    return sorted(out.stdout.split())


def test_sigterm_after_round_2_and_resume_sync_one_run_with_each_round_once(tmp_path):
    run = tmp_path / "run"
    args = ["schedule.rounds=3", f"trainer.max_epochs={EPOCHS}", "data.batch_size=16", f"hydra.run.dir={run}"]
    proc = start(args, tmp_path)
    wait_for("rounds/r03/checkpoints/last.ckpt", run, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert not (run / "rounds" / "r03" / "metrics.json").exists(), "the signal came too late: round 3 had ended"
    again = cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]

    (folder,) = _sync_targets(run)  # one folder: the first process's is superseded, not synced beside it
    (wandb_file,) = [p for p in (tmp_path / folder).glob("run-*.wandb")]
    assert len(list((run / ".wandb_superseded").glob("offline-run-*"))) == 1
    info, history = read_run_info(wandb_file), read_history(wandb_file)
    assert (
        info["exited"]
        and info["exit_code"] == 0
        and info["id"] == json.loads((run / "wandb/id.json").read_text())["id"]
    )
    summaries = [row for row in history if "round/test/acc" in row]
    assert [int(row["prune/round"]) for row in summaries] == [0, 1, 2, 3]
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [row["round/test/acc"] for row in summaries] == [row["test/acc"] for row in results]
    epochs = [(int(row["prune/round"]), int(row["epoch"])) for row in history if "val/acc" in row]
    assert sorted(epochs) == [(r, e) for r in range(4) for e in range(EPOCHS)]  # every epoch once, none twice
    assert sum("test/acc" in row for row in history) == 4
    assert sum(row.get("round/per_class/_type") == "table-file" for row in history) == 4
    steps = [row["prune/step"] for row in history if "prune/step" in row]
    assert steps == sorted(steps) and [row["_step"] for row in history] == list(range(len(history)))
    # each epoch's row carries the sparsity it trained at, not the previous round's
    for row in history:
        if "val/acc" in row:
            assert abs(row["prune/sparsity"] - results[int(row["prune/round"])]["sparsity"]) < 1e-6
    config = read_config(wandb_file)
    assert config["criterion"] == "magnitude" and config["data"] == "digits" and config["schedule"] == "iterative"
    assert info["name"].startswith("digits-mlp-magnitude-cross_entropy-s0-")


def test_a_resumed_round_keeps_only_the_rows_its_checkpoint_holds():
    from prunelab.training.loggers import _kept

    def m(r, **row):
        return {"k": "m", "r": r, "row": row}

    earlier = [m(0, epoch=0), m(0, **{"round/test/acc": 1}), m(1, epoch=0), m(1, epoch=1), m(1, epoch=2)]
    earlier += [m(1, **{"kept/val/acc": 1, "epoch": 1}), m(1, **{"test/acc": 1}), {"k": "media", "r": 1}, m(2, epoch=0)]
    kept = [e for e in earlier if _kept(e, 1, 1)]  # round 1 resumed from its checkpoint of epoch 1
    assert kept == earlier[:4]
    assert [e for e in earlier if _kept(e, 1, None)] == earlier[:2]  # round 1 starts over: none of its rows stand
    assert [e for e in earlier if _kept(e, 3, None)] == earlier  # rounds 0-2 complete: all stand
