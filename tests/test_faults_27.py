"""Issue 27, items 4-7: types, data provenance, every check before any work, tracebacks as one-line errors.

Each test reproduces a defect that the issue found on the main of 2026-12-05 (tiny runs: digits, one epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelab.data.base import RawData, validate
from prunelab.data.medmnist import MedMNISTDataModule
from prunelab.errors import PrunelabError
from prunelab.runs import files as results
from tests.conftest import cli, compose_cfg
from tests.test_faults import one_line_error, start, wait_for

Q = ["logger=none", "trainer.max_epochs=1", "schedule.rounds=1"]


def q(args: list[str]) -> list[str]:
    """Tiny-run options under ``args`` (a schedule other than iterative has no ``rounds``; a logger replaces none)."""
    base = [a for a in Q if not (a.startswith("schedule.") and any(x.startswith("schedule=") for x in args))]
    return [a for a in base if not (a.startswith("logger=") and any(x.startswith("logger=") for x in args))] + args


# (overrides, the key the one-line error must name); each must fail before any folder is written
PREFLIGHT = [
    (["prune.include=*.weight"], "prune.include"),
    (["prune.exclude=classifier.*"], "prune.exclude"),
    (["criterion.scope=both"], "criterion.scope"),
    (["trainer.precision=abc"], "trainer.precision"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
    (["model.hidden=[0]"], "model.hidden"),
    (["criterion.scope=layer", "prune.max_layer_sparsity=0.5"], "prune.max_layer_sparsity"),
    (["data.imbalance.keep_fraction=abc"], "data.imbalance.keep_fraction"),
    (["criterion=snip", "schedule=one_shot", "schedule.at_init=true", "rewind=step"], "rewind"),
    (["logger=wandb", "logger.wandb.offline=false"], "logger.wandb.offline"),
    (["data.split_seed=-1"], "data.split_seed"),
]
if not torch.cuda.is_available():
    PREFLIGHT.append((["trainer.accelerator=gpu"], "trainer.accelerator"))


@pytest.mark.parametrize("args,key", PREFLIGHT, ids=[" ".join(a) for a, _ in PREFLIGHT])
def test_bad_options_fail_before_any_folder(tmp_path, args, key):
    run = tmp_path / "run"
    proc = cli([*q(args), f"hydra.run.dir={run}"], tmp_path, env_extra={"WANDB_API_KEY": "", "WANDB_MODE": "online"})
    one_line_error(proc, key)
    assert not run.exists()
    assert not (tmp_path / "shared").exists()


def _listing(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")} if folder.exists() else set()


def test_empty_output_dir_variable_is_refused(tmp_path):
    before = _listing(Path("/runs"))  # where an empty PRUNELAB_OUTPUT_DIR put run folders
    proc = cli([*Q], tmp_path, env_extra={"PRUNELAB_OUTPUT_DIR": ""})
    one_line_error(proc, "paths.output_dir")
    assert _listing(Path("/runs")) == before
    assert not any(tmp_path.iterdir())  # the working directory, where it put the shared round-0 store


def test_long_folder_name_is_one_line(tmp_path):
    proc = cli([*Q, f"hydra.run.dir={tmp_path / ('a' * 300)}"], tmp_path)
    one_line_error(proc, "hydra.run.dir")
    one_line_error(cli([*Q, f"name={'b' * 300}"], tmp_path), "name")


def test_empty_train_split_blames_val_fraction(tmp_path):
    one_line_error(
        cli([*Q, "data.val_fraction=0.9999", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path), "data.val_fraction"
    )


# -- 4: documented mappings can be set from the command line -------------------------------------------------------
def test_dict_options_set_from_the_command_line_as_the_readme_shows():
    cfg = compose_cfg(["data.imbalance.keep_fraction={3: 0.1, 5: 0.5}", "prune.ratios={classifier.*: 0.1}"])
    assert dict(cfg.data.imbalance.keep_fraction) == {3: 0.1, 5: 0.5}
    assert dict(cfg.prune.ratios) == {"classifier.*": 0.1}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "'prune.ratios={classifier.*: 0.1}'" in readme and "keep_fraction={3: 0.1, 5: 0.5}" in readme


def test_every_mapping_override_in_the_readme_composes():
    """Each ``key={...}`` override the README shows (quoted as a user types it) composes to a mapping."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    shown = re.findall(r"`('?[a-z_.]+=\{[^`]*\}'?)`", readme) + re.findall(r"`([a-z_.]+='\{[^`]*\}')`", readme)
    assert len(shown) >= 3, shown
    for text in shown:
        (override,) = shlex.split(text)
        key = override.split("=", 1)[0]
        node = compose_cfg([override])
        for part in key.split("."):
            node = node[part]
        assert len(node) >= 1, text


def test_null_mappings_keep_the_run_ids():
    from prunelab.config.identity import run_id

    default = compose_cfg([])
    assert default.prune.ratios is None and default.data.imbalance.keep_fraction is None
    assert run_id(default) == run_id(compose_cfg(["prune.ratios={}", "data.imbalance.keep_fraction={}"]))


# -- 5: data validated by what is known about it -------------------------------------------------------------------
def _mnist_copy(tmp_path: Path, data_dir: Path, files: dict[str, Path]) -> Path:
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, source in files.items():
        (raw / name).symlink_to(source)
    return tmp_path / "root"


IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.mark.parametrize("case", ["fashion under MNIST", "train and test swapped"])
def test_swapped_or_mislabelled_idx_files_are_refused(tmp_path, data_dir, case):
    from prunelab.data.mnist import MNISTDataModule

    if case == "fashion under MNIST":
        files = {n: data_dir / "FashionMNIST" / "raw" / n for n in IDX}
    else:
        swap = dict(zip(IDX, IDX[2:] + IDX[:2]))
        files = {n: data_dir / "MNIST" / "raw" / swap[n] for n in IDX}
    dm = MNISTDataModule(root=str(_mnist_copy(tmp_path, data_dir, files)))
    with pytest.raises(PrunelabError) as err:
        dm.setup()
    assert err.value.key == "paths.data_dir" and "not MNIST's" in err.value.one_line()


def test_official_files_are_recorded_as_official(data_dir):
    from prunelab.data.mnist import MNISTDataModule

    dm = MNISTDataModule(root=str(data_dir))
    assert dm.describe()["official"] is True
    bm = MedMNISTDataModule(path=str(data_dir / "medmnist" / "breastmnist_resaved.npz"), flag="breastmnist")
    assert bm.describe()["official"] is False  # a re-saved copy (shared/data/README.md)


def test_garbled_idx_header_is_one_line(tmp_path, data_dir):
    from prunelab.data.mnist import MNISTDataModule

    files = {n: data_dir / "MNIST" / "raw" / n for n in IDX}
    root = _mnist_copy(tmp_path, data_dir, files)
    target = root / "MNIST" / "raw" / IDX[1]
    target.unlink()
    target.write_bytes(b"\xff\xff\xff\xff" + (data_dir / "MNIST" / "raw" / IDX[1]).read_bytes()[4:])
    with pytest.raises(PrunelabError) as err:
        MNISTDataModule(root=str(root)).setup()
    assert err.value.key == "paths.data_dir" and "\n" not in err.value.one_line()


def _npz(path: Path, images: dict[str, np.ndarray], flag_sizes=(40, 10, 10)) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), flag_sizes):
        arrays[f"{split}_images"] = images[split]
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=(n, 1))
    np.savez(path, **arrays)
    return path


def test_channels_last_rgb_is_transposed(tmp_path):
    rng = np.random.default_rng(1)
    nhwc = {
        s: rng.integers(0, 256, size=(n, 28, 28, 3), dtype=np.uint8)
        for s, n in zip(("train", "val", "test"), (40, 10, 10))
    }
    last = MedMNISTDataModule(path=str(_npz(tmp_path / "last.npz", nhwc)), flag="dermamnist")
    first = MedMNISTDataModule(
        path=str(_npz(tmp_path / "first.npz", {s: a.transpose(0, 3, 1, 2) for s, a in nhwc.items()})), flag="dermamnist"
    )
    assert last.input_shape == (3, 28, 28) and first.input_shape == (3, 28, 28)
    assert torch.equal(last.x_train, first.x_train) and torch.equal(last.x_test, first.x_test)


def test_flat_images_and_float32_overflow_are_refused(tmp_path):
    flat = {s: np.zeros((n, 784), dtype=np.uint8) for s, n in zip(("train", "val", "test"), (40, 10, 10))}
    with pytest.raises(PrunelabError) as err:
        MedMNISTDataModule(path=str(_npz(tmp_path / "flat.npz", flat)), flag="x").setup()
    assert "(N, 28, 28)" in err.value.one_line()
    x = np.full((4, 8, 8), 1e300)
    raw = RawData(x, np.zeros(4, dtype=np.int64), x, np.zeros(4, dtype=np.int64), ["a", "b"])
    with pytest.raises(PrunelabError) as err:
        validate(raw, "huge")
    assert "float32" in err.value.one_line()


def test_a_swapped_medmnist_split_is_refused(tmp_path, data_dir):
    with np.load(data_dir / "medmnist" / "breastmnist_resaved.npz") as d:
        arrays = {k: d[k] for k in d.files}
    swapped = {
        **arrays,
        "train_images": arrays["test_images"],
        "train_labels": arrays["test_labels"],
        "test_images": arrays["train_images"],
        "test_labels": arrays["train_labels"],
    }
    np.savez(tmp_path / "s.npz", **swapped)
    with pytest.raises(PrunelabError) as err:
        MedMNISTDataModule(path=str(tmp_path / "s.npz"), flag="breastmnist").setup()
    assert "swapped" in err.value.one_line()


# -- 6: large seeds, SIGHUP, reproduce --seeds 0 --------------------------------------------------------------------
def test_seed_near_the_documented_limit_runs(tmp_path):
    proc = cli([*Q, f"seed={2**63 - 2}", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_sighup_marks_the_run_interrupted(tmp_path):
    run = tmp_path / "hup"
    proc = start(["logger=none", "trainer.max_epochs=40", "schedule.rounds=1", f"hydra.run.dir={run}"], tmp_path)
    wait_for("rounds/r00/checkpoints/last.ckpt", run, proc)
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGHUP, err[-2000:]
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_reproduce_with_zero_seeds_is_refused(tmp_path):
    proc = cli(["reproduce", "lth", "--seeds", "0", "--out", str(tmp_path / "lth")], tmp_path)
    assert proc.returncode == 2 and "--seeds" in proc.stderr and not (tmp_path / "lth").exists()


# -- 7: tracebacks become one line -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def structured_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("f27")
    run = out / "run"
    proc = cli([*q(["criterion=l1_filter", "schedule=one_shot"]), f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, run


@pytest.mark.parametrize("kept", [[-1], [10**6], ["a"], [0.5]])
def test_kept_json_with_bad_indices_is_one_line(structured_run, tmp_path, kept):
    import prunelab

    run = shutil.copytree(structured_run[1], tmp_path / "run")
    rdir = results.round_dir(run, 1)
    record = json.loads((rdir / "kept.json").read_text())
    record["groups"][0]["kept"] = kept
    (rdir / "kept.json").write_text(json.dumps(record))
    metrics = json.loads((rdir / "metrics.json").read_text())
    metrics["files"]["rounds/r01/kept.json"] = results.digest(rdir / "kept.json")  # a crafted, consistent folder
    (rdir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(PrunelabError) as err:
        prunelab.load_model(run, compact=True)
    assert "kept.json" in err.value.one_line()


def test_export_and_report_write_errors_are_one_line(structured_run, tmp_path):
    out, ref = structured_run
    run = shutil.copytree(ref, tmp_path / "run")
    (tmp_path / "taken").mkdir()
    one_line_error(cli(["export", str(run), "--format", "pt2", "--out", str(tmp_path / "taken")], out), "--out")
    proc = cli(["export", str(run), "--format", "pt2", "--atol", "nan"], out)
    assert proc.returncode == 2 and "--atol" in proc.stderr and "Traceback" not in proc.stderr
    os.chmod(run, 0o555)
    try:
        if os.access(run, os.W_OK):  # root ignores permissions: make the target a file instead
            os.chmod(run, 0o755)
            (run / "export").write_text("a file where the export folder goes")
            (run / "report").write_text("a file where the report folder goes")
        one_line_error(cli(["export", str(run), "--format", "pt2"], out), "--out")
        one_line_error(cli(["report", str(run)], out), "--out")
    finally:
        os.chmod(run, 0o755)


def test_structured_criterion_with_the_output_layer_excluded(tmp_path):
    """``schedule=gradual`` (which excludes the output layer) with a structured criterion used to end in a
    KeyError inside the first fit: the classifier's input columns now follow the removed neurons."""
    args = [
        "logger=none",
        "trainer.max_epochs=2",
        "schedule=gradual",
        "schedule.end_step=30",
        "schedule.frequency=5",
        "criterion=l1_filter",
        f"hydra.run.dir={tmp_path / 'g'}",
    ]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_lost_data_record_is_rebuilt_from_round_0(tmp_path):
    run = tmp_path / "run"
    assert cli([*Q, f"hydra.run.dir={run}"], tmp_path).returncode == 0
    (run / "data.json").write_text('{"trunc')
    proc = cli([*Q, f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stderr[-2000:]
    assert json.loads((run / "data.json").read_text())["fingerprint"]
    import prunelab

    assert isinstance(prunelab.load_model(run), torch.nn.Module)


def test_duplicate_sweep_value_is_refused_before_launch(tmp_path):
    proc = cli(["-m", "seed=0,0", *Q, f"hydra.sweep.dir={tmp_path / 'sw'}"], tmp_path)
    one_line_error(proc, "seed")
    assert not (tmp_path / "sw").exists()


ORPHAN = """
import multiprocessing, os, sys, time
from pathlib import Path

def job(marker):
    from prunelab.runner import interrupt
    interrupt.PARENT_POLL_SECONDS, interrupt.ORPHAN_GRACE_SECONDS = 0.1, 1.0
    try:
        with interrupt.interruptible():
            Path(marker + ".started").write_text(str(os.getpid()))
            time.sleep(120)
    except interrupt.RunInterrupted as exc:
        Path(marker).write_text(exc.signal_name)
        time.sleep(120)  # a pool worker waits for its next task: the watcher ends it

if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=job, args=(sys.argv[1],)).start()
    time.sleep(120)
"""


def test_worker_of_a_killed_sweep_marks_its_run_and_exits(tmp_path):
    """A job in a pool worker (as joblib's loky workers run them) whose parent is killed with SIGKILL is interrupted
    (SIGTERM to itself: the run is marked) and the worker exits instead of training on, orphaned."""
    script, marker = tmp_path / "orphan.py", tmp_path / "interrupted"
    script.write_text(ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), str(marker)], cwd=tmp_path)
    started = Path(f"{marker}.started")
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    child = int(started.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while Path(f"/proc/{child}").exists() and time.time() < deadline:
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break  # exited (a zombie until its new parent reaps it)
        time.sleep(0.1)
    alive = Path(f"/proc/{child}").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
    if alive:
        os.kill(child, signal.SIGKILL)
    assert marker.exists() and marker.read_text() == "SIGTERM"
    assert not alive


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_gpu_is_checked_by_the_job_not_by_the_launching_machine(tmp_path):
    """A sweep sent to GPU nodes (SLURM, Ray) is launched from a machine that may have none: the CLI's check leaves
    the GPU out, and each job checks its own machine before any work, its failure counted by the sweep summary."""
    from prunelab.config.checks import check_config

    cfg = compose_cfg(["trainer.accelerator=gpu"])
    check_config(cfg, machine=False)
    with pytest.raises(PrunelabError):
        check_config(cfg)
    sweep = tmp_path / "sw"
    proc = cli(["-m", "seed=0,1", *Q, "trainer.accelerator=gpu", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 3 and "2 of 2 sweep jobs failed" in proc.stderr, proc.stderr[-2000:]
    statuses = [json.loads(p.read_text())["status"] for p in sweep.glob("*/summary.json")]
    assert statuses == ["failed", "failed"]
