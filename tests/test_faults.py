"""Issue 12's fault list: each defect found by trying prunelab as a new user would, reproduced as a test.

Numbers in the test names are the issue's items. Runs are tiny (digits, one epoch, csv or no logger).
"""

from __future__ import annotations

import fcntl
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.errors import PrunelabError
from tests.conftest import TINY_RUN, cli

Q = TINY_RUN
TIMING = {"fit_seconds", "wall_seconds", "round_seconds", "compute_seconds"}


def one_line_error(proc: subprocess.CompletedProcess, key: str, code: int = 2) -> str:
    """The process failed with ``code`` and exactly one ``prunelab: error:`` line naming ``key`` and a fix."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("prunelab: error:")]
    assert len(errors) == 1 and key in errors[0] and "fix" in errors[0], proc.stderr[-3000:]
    assert "optimizer.lr" not in errors[0] or "optimizer" in key, errors[0]  # not blamed on the learning rate
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


def comparable(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder except the attempt log and the lock (which a refused attempt may touch)."""
    skip = {"attempts.jsonl", ".lock", "cli.log"}
    return {
        str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name not in skip
    }


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# -- 1: a finished folder answers only for its own config ----------------------------------------------------------
def test_01_complete_folder_refuses_another_config_and_writes_nothing(complete_run, tmp_path):
    out, run = complete_run
    run = copy_run(run, tmp_path / "run")
    before = snapshot(run)
    proc = cli([*Q, "seed=7", f"hydra.run.dir={run}"], out)
    assert "seed" in one_line_error(proc, "hydra.run.dir")
    assert snapshot(run) == before  # neither summary.json nor .hydra/ nor anything else was rewritten
    assert json.loads((run / "attempts.jsonl").read_text().splitlines()[-1])["outcome"] == "refused"


def test_01_interrupted_folder_refuses_another_config(complete_run, tmp_path):
    out, run = complete_run
    run = copy_run(run, tmp_path / "run")
    shutil.rmtree(run / "rounds" / "r02")
    (run / "summary.json").write_text(json.dumps({"status": "running"}))
    before = snapshot(run)
    one_line_error(cli([*Q, "seed=7", f"hydra.run.dir={run}"], out), "hydra.run.dir")
    assert snapshot(run) == before


def test_01_sweep_into_another_sweeps_numbered_folders_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "logger=none",
        "trainer.max_epochs=1",
        "schedule.rounds=1",
        "hydra.sweep.subdir=${hydra.job.num}",
        f"hydra.sweep.dir={sweep}",
    ]
    first = cli([*args, "seed=0,1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = {job: snapshot(sweep / job) for job in ("0", "1")}
    second = cli([*args, "seed=5,6"], tmp_path)
    assert second.returncode == 3, second.stderr[-3000:]  # not "skipped": both jobs refused
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["refused"] == 2 and summary["skipped"] == 0
    assert {job: snapshot(sweep / job) for job in ("0", "1")} == before


def test_01_population_folder_refuses_another_config(tmp_path):
    run = tmp_path / "pop"
    args = ["logger=none", "schedule=dense", "trainer.max_epochs=1", "population=2", f"hydra.run.dir={run}"]
    assert cli(args, tmp_path).returncode == 0
    before = snapshot(run)
    one_line_error(cli([*args, "seed=7"], tmp_path), "hydra.run.dir")
    assert snapshot(run) == before
    again = cli(args, tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout


# -- 2: the data is part of the identity -------------------------------------------------------------------------------
def breast_npz(path: Path, data_dir: Path) -> Path:
    shutil.copy(data_dir / "medmnist" / "breastmnist_resaved.npz", path)
    return path


def test_02_changed_data_is_refused_and_moved_identical_data_resumes(tmp_path, data_dir):
    npz = breast_npz(tmp_path / "a.npz", data_dir)
    run = tmp_path / "run"
    args = ["data=breastmnist", "logger=none", "trainer.max_epochs=1", "schedule.rounds=1", f"hydra.run.dir={run}"]
    assert cli([*args, f"data.path={npz}"], tmp_path).returncode == 0
    with np.load(npz) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["train_labels"] = 1 - arrays["train_labels"]  # "fixing" a bad data file changes what was trained on
    np.savez(npz, **arrays)
    assert "fingerprint" in one_line_error(cli([*args, f"data.path={npz}"], tmp_path), "data")
    moved = breast_npz(tmp_path / "elsewhere.npz", data_dir)  # the original data, in another folder
    proc = cli([*args, f"data.path={moved}"], tmp_path)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr[-3000:]


# -- 3: CIFAR batches are unpickled without running code -------------------------------------------------------------
class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_03_cifar_batch_file_cannot_run_code(tmp_path):
    from prunelab.data.cifar import _read, safe_unpickle

    marker, evil = tmp_path / "pwned", tmp_path / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    assert pickle.loads(evil.read_bytes())[b"data"] == 0 and marker.exists()  # plain pickle runs it
    marker.unlink()
    with pytest.raises(PrunelabError, match="not a plain CIFAR batch"):
        _read(evil)
    assert not marker.exists()
    good = tmp_path / "good"
    good.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}))
    assert safe_unpickle(good)[b"labels"] == [1, 2]


# -- 4: SIGTERM leaves a non-zero exit and an interrupted status; a sweep writes its summary ------------------------
def start(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(out), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "prunelab", *args, "trainer.enable_progress_bar=false"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out)


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not list(root.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the process ended before it could be signalled"


def test_04_sigterm_marks_the_run_interrupted_and_exits_143(tmp_path):
    run = tmp_path / "run"
    proc = start(["logger=csv", "trainer.max_epochs=40", "schedule.rounds=1", f"hydra.run.dir={run}"], tmp_path)
    wait_for("rounds/r00/checkpoints/last.ckpt", run, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert json.loads((run / "attempts.jsonl").read_text().splitlines()[-1])["outcome"] == "interrupted"


def test_04_sigterm_stops_a_sweep_with_a_summary_and_relaunch_finishes_it(tmp_path):
    # share_round0=false: the killed sweep must train (and be stopped in) its own round 0, not copy the reference's
    args = ["-m", "seed=0,1", "logger=csv", "trainer.max_epochs=12", "schedule.rounds=1", "share_round0=false"]
    ref = cli([*args, f"hydra.sweep.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    sweep = tmp_path / "killed"
    proc = start([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    wait_for("*/rounds/r00/checkpoints/last.ckpt", sweep, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["interrupted"] == 1 and summary["stopped_by"] == "SIGTERM"
    assert summary["failed_jobs"][0]["outcome"] == "interrupted"
    again = cli([*args, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob("*/results.jsonl"))
    ref_jobs = sorted(p.parent for p in (tmp_path / "ref").glob("*/results.jsonl"))
    assert [j.name for j in jobs] == [j.name for j in ref_jobs] and len(jobs) == 2
    assert all(comparable(a) == comparable(b) for a, b in zip(jobs, ref_jobs))


# -- 5: every loaded split is validated ----------------------------------------------------------------
def test_05_medmnist_with_fewer_labels_than_images_is_one_line(tmp_path, data_dir):
    npz = breast_npz(tmp_path / "short.npz", data_dir)
    with np.load(npz) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["train_labels"] = arrays["train_labels"][:10]
    np.savez(npz, **arrays)
    line = one_line_error(cli(["data=breastmnist", f"data.path={npz}", "logger=none"], tmp_path), "data")
    assert str(npz) in line and "546 images but 10 labels" in line
    assert not list(tmp_path.rglob("metrics.json"))


@pytest.mark.parametrize("damage", ["truncated", "missing_key", "nan_images", "bad_labels"])
def test_05_damaged_npz_names_the_file(tmp_path, data_dir, damage):
    from prunelab.data.medmnist import MedMNISTDataModule

    npz = breast_npz(tmp_path / "b.npz", data_dir)
    with np.load(npz) as d:
        arrays = {k: d[k] for k in d.files}
    if damage == "truncated":
        npz.write_bytes(npz.read_bytes()[:5000])
    elif damage == "missing_key":
        del arrays["val_images"]
        np.savez(npz, **arrays)
    elif damage == "nan_images":
        arrays["test_images"] = arrays["test_images"].astype(np.float32) * np.nan
        np.savez(npz, **arrays)
    else:
        arrays["test_labels"] = arrays["test_labels"] + 5
        np.savez(npz, **arrays)
    with pytest.raises(PrunelabError) as err:
        MedMNISTDataModule(path=str(npz), flag="breastmnist").setup()
    assert str(npz) in err.value.one_line() and err.value.fix


def test_05_truncated_mnist_says_truncated_not_missing(tmp_path, data_dir):
    from prunelab.data.mnist import MNISTDataModule

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_dir / "MNIST" / "raw").iterdir():
        if not f.name.endswith(".gz"):
            shutil.copy(f, raw / f.name)
    target = raw / "t10k-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(PrunelabError, match="truncated or corrupt"):
        MNISTDataModule(root=str(tmp_path)).setup()


# -- 6: finished work is verified ------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["deleted_round", "truncated_model", "truncated_masks", "corrupt_metrics"])
def test_06_damaged_complete_run_is_redone_not_skipped(complete_run, tmp_path, damage):
    out, ref = complete_run
    run = copy_run(ref, tmp_path / "run")
    r01 = run / "rounds" / "r01"
    if damage == "deleted_round":
        shutil.rmtree(r01)
    elif damage == "corrupt_metrics":
        (r01 / "metrics.json").write_text('{"round": 1, "spars')
    else:
        f = r01 / ("model.pt" if damage == "truncated_model" else "masks.pt")
        f.write_bytes(f.read_bytes()[:200])
    report = cli(["report", str(run)], out)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "broken" in (run / "report" / "report.md").read_text()  # listed as broken, not complete
    shutil.rmtree(run / "report")
    proc = cli([*Q, f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0 and "nothing to do" not in proc.stdout, proc.stderr[-3000:]
    assert "redoing round 1" in proc.stdout + proc.stderr  # Hydra's log handler writes to stdout
    assert comparable(run) == comparable(ref)  # redone to the same results


def test_06_corrupt_summary_and_results_are_rebuilt_from_verified_rounds(complete_run, tmp_path):
    out, ref = complete_run
    run = copy_run(ref, tmp_path / "run")
    (run / "summary.json").write_text("{not json")
    (run / "results.jsonl").write_text("garbage\n")
    proc = cli([*Q, f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"
    assert comparable(run) == comparable(ref)
    assert not list((run / "rounds").glob("*.broken-*"))  # the intact rounds were kept, not retrained


# -- 8, 9, 12, 13, 14: bad input is one line, before training -------------------------------------------------------
def _pruned_model(tmp: Path, ref: Path) -> Path:
    return ref / "rounds" / "r02" / "model.pt"


def _nan_weights(tmp: Path, ref: Path) -> Path:
    state = torch.load(ref / "rounds" / "r00" / "model.pt", weights_only=True)
    state = {k: v * float("nan") if k.endswith("original") else v for k, v in state.items()}
    torch.save(state, tmp / "nan.pt")
    return tmp / "nan.pt"


BAD = [
    (["trainer.max_epochs=-1"], "trainer.max_epochs", None),  # 7: would train forever
    (["data.batch_size=0"], "data.batch_size", None),
    (["data.batch_size=-1"], "data.batch_size", None),
    (["seed=1e14"], "seed", None),
    (["seed=abc"], "seed", None),
    (["seed=1.5"], "seed", None),
    (["monitor.metric=val/nonexistent"], "monitor.metric", None),
    (["monitor.mode=foo"], "monitor.mode", None),
    (["trainer.max_epochs=abc"], "trainer.max_epochs", None),
    (["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=nan"], "data.imbalance.neg_pos_ratio", None),
    (["data.imbalance.long_tail_ratio=nan"], "data.imbalance.long_tail_ratio", None),
    (["quantize.methods=[int4]"], "quantize.methods", None),  # 9
    (["quantize=all", "quantize.calibration_batches=0"], "quantize.calibration_batches", None),  # 9, 13
    (["init_weights=CKPT"], "init_weights", _pruned_model),  # 9
    (["schedule.rate=0.999999"], "schedule.rate", None),  # 12
    (["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=inf"], "data.imbalance.neg_pos_ratio", None),
    (["population=0"], "population", None),
    (["data.val_fraction=0"], "data.val_fraction", None),
    (["init_weights=CKPT"], "init_weights: ", _nan_weights),  # 13: named, not blamed on optimizer.lr
    (["trainer.limit_train_batches=0"], "trainer.limit_train_batches", None),  # 13
    (["name=../../../x"], "name", None),  # 14
    (["training_loop=fast"], "training_loop", None),
]


@pytest.mark.parametrize(
    "args,key,make", BAD, ids=[" ".join(b[0]) + (f"-{b[2].__name__}" if b[2] else "") for b in BAD]
)
def test_bad_input_is_one_line_before_anything_is_trained(complete_run, tmp_path, args, key, make):
    _, ref = complete_run
    if make is not None:
        args = [a.replace("CKPT", str(make(tmp_path, ref))) for a in args]
    out = tmp_path / "out"
    out.mkdir()
    proc = cli(["logger=none", *args], out)
    one_line_error(proc, key)
    assert not list(out.rglob("metrics.json")), "training started"
    assert not (out / "runs" / ".." / ".." / ".." / "x").exists(), "wrote outside paths.output_dir"


def test_08_read_only_run_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # unwritable for root too, unlike a chmod-ed folder
    one_line_error(cli(["logger=none", f"hydra.run.dir={blocker / 'run'}"], tmp_path), "hydra.run.dir")


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_08_full_disk_is_one_line_and_the_run_is_not_complete(tmp_path):
    run = tmp_path / "run"
    proc = cli(["logger=none", *Q[1:], f"hydra.run.dir={run}"], tmp_path, preexec_fn=_limit_file_size)
    line = one_line_error(proc, "paths.output_dir")
    assert "disk is full" in line and "rewind/init.pt" in line  # names the file that could not be written
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed"


# -- 10: one process per run folder ---------------------------------------------------------------------------------
def test_10_second_process_is_refused_then_waits_and_a_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    args = ["logger=none", "trainer.max_epochs=1", "schedule.rounds=1", f"hydra.run.dir={run}"]
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"pid 4242 on testhost since now")
    line = one_line_error(cli(args, tmp_path), "hydra.run.dir")
    assert "in use by pid 4242 on testhost" in line and "--wait" in line
    assert not (run / "summary.json").exists()
    threading.Timer(3.0, os.close, args=(fd,)).start()  # the holder ends after 3 s
    waited = cli(["--wait", *args], tmp_path)
    assert waited.returncode == 0 and (run / "summary.json").exists(), waited.stderr[-2000:]
    stale = tmp_path / "stale"  # a lock file whose holder was killed: the kernel released its flock
    stale.mkdir()
    (stale / ".lock").write_text("pid 99999 on gone since then")
    assert cli([*args[:-1], f"hydra.run.dir={stale}"], tmp_path).returncode == 0


# -- 11: one bad run does not break the report ------------------------------------------------------------------------
def test_11_report_lists_a_corrupt_run_and_exits_2_on_bad_usage(complete_run, tmp_path):
    out, ref = complete_run
    root = tmp_path / "runs"
    good, bad = copy_run(ref, root / "good"), copy_run(ref, root / "bad")
    (bad / "summary.json").write_text("{trunc")
    proc = cli(["report", str(root)], out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (root / "report" / "report.md").read_text()
    assert (
        "| bad | broken | summary.json is unreadable" in text
        and good.name in (root / "report" / "runs.csv").read_text()
    )
    missing = cli(["report", str(tmp_path / "nowhere")], out)
    assert missing.returncode == 2 and missing.stderr.startswith("prunelab: error: folder")


# -- 13: a broken rewind/init.pt is one warning line, and the run goes on ----------------------------------------------
def test_13_unreadable_init_snapshot_is_rewritten_from_the_seed(complete_run, tmp_path):
    out, ref = complete_run
    run = copy_run(ref, tmp_path / "run")
    shutil.rmtree(run / "rounds" / "r02")
    (run / "summary.json").write_text(json.dumps({"status": "running"}))
    init = run / "rewind" / "init.pt"
    original = init.read_bytes()
    init.write_bytes(original[:300])
    proc = cli([*Q, f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "init.pt" in line]
    assert len(warnings) == 1 and "rewritten" in warnings[0] and "Traceback" not in proc.stderr
    assert (
        torch.load(init, weights_only=True).keys() == torch.load(ref / "rewind" / "init.pt", weights_only=True).keys()
    )
    assert comparable(run) == comparable(ref)


def test_preflight_knows_every_quantization_method():
    from prunelab.config.checks import QUANTIZE_METHODS
    from prunelab.training.quantize import METHODS

    assert tuple(QUANTIZE_METHODS) == tuple(METHODS)
