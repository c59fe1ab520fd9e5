"""Issue 27, items 1-3: a run folder is data, never code; its identity cannot be skipped; a moved folder resumes
exactly.

Each crafted folder below would run ``touch <marker>`` if any reader instantiated or unpickled what it names. Every
reader must leave the marker absent and end in one line naming the key at fault.
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

import pytest
import torch
import yaml

import prunelab
from prunelab.analysis import report as report_mod
from prunelab.errors import PrunelabError
from prunelab.runs import files as results
from prunelab.runs import masks_from as source
from prunelab.runs.compact import FORMAT, load_compact
from prunelab.runs.folders import listed_run as report_load_run
from tests.conftest import cli
from tests.test_faults import Q, comparable, one_line_error, snapshot


class Exploit:
    """Pickles as ``os.system("touch <marker>")``: unpickling it runs the command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _edit_config(run: Path, edit) -> None:
    path = run / "run_config.yaml"
    cfg = yaml.safe_load(path.read_text())
    edit(cfg)
    path.write_text(yaml.safe_dump(cfg))


def crafted(complete_run, tmp_path, case: str) -> tuple[Path, Path]:
    """A copy of the finished run, changed so that opening it would run ``touch marker`` (``case``)."""
    _, ref = complete_run
    run = shutil.copytree(ref, tmp_path / f"crafted-{case}")
    marker = tmp_path / f"ran-{case}"
    payload = tmp_path / "payload.pkl"
    torch.save({"x": Exploit(marker)}, payload)
    call = {"_target_": "torch.load", "f": str(payload), "weights_only": False}
    if case == "model.hidden":  # a nested _target_ in the model's options
        _edit_config(run, lambda c: c["model"].__setitem__("hidden", call))
    elif case == "data.imbalance":  # a nested _target_ in the data's options
        _edit_config(run, lambda c: c["data"]["imbalance"].__setitem__("x", call))
    elif case == "model._target_":  # the model itself names a foreign callable
        _edit_config(run, lambda c: c.__setitem__("model", call))
    elif case == "model.pt":  # a pickle as the weights, its recorded checksum updated to match
        for r in (0, 1, 2):
            rdir = results.round_dir(run, r)
            for name in ("model.pt", "masks.pt"):
                torch.save({"x": Exploit(marker)}, rdir / name)
            metrics = json.loads((rdir / "metrics.json").read_text())
            for name in ("model.pt", "masks.pt"):
                metrics["files"][f"rounds/r{r:02d}/{name}"] = results.digest(rdir / name)
            (rdir / "metrics.json").write_text(json.dumps(metrics))
    return run, marker


CASES = ["model.hidden", "data.imbalance", "model._target_", "model.pt"]


def _one_line(exc: PrunelabError) -> str:
    line = exc.one_line()
    assert "\n" not in line and "weights_only=False" not in line and "weights_only` set to `False" not in line
    return line


@pytest.mark.parametrize("case", CASES)
def test_load_model_and_compact_never_run_the_folders_code(complete_run, tmp_path, case):
    run, marker = crafted(complete_run, tmp_path, case)
    with pytest.raises(PrunelabError) as err:
        prunelab.load_model(run)
    _one_line(err.value)
    (results.round_dir(run, 2) / "kept.json").write_text(
        json.dumps({"format": FORMAT, "input_shape": [1, 8, 8], "num_classes": 10, "groups": []})
    )
    with pytest.raises(PrunelabError) as err:
        load_compact(run, 2)
    _one_line(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_load_run_report_and_masks_from_never_run_the_folders_code(complete_run, tmp_path, case):
    run, marker = crafted(complete_run, tmp_path, case)
    if case == "model.pt":  # the record is intact: the run loads as data, its masks are refused
        prunelab.load_run(run)
        with pytest.raises(PrunelabError) as err:
            source.load(run, 1)
        assert "more than tensors" in _one_line(err.value)
    else:  # an edited record is refused whole, by every reader
        with pytest.raises(PrunelabError) as err:
            prunelab.load_run(run)
        _one_line(err.value)
        listed = report_load_run(run)
        assert listed.status == "broken" and "must not choose code" in str(listed.error)
        assert report_mod._test_images([listed]) is None
    assert not marker.exists()


@pytest.mark.parametrize("case", CASES)
def test_export_and_report_commands_never_run_the_folders_code(complete_run, tmp_path, case):
    out, _ = complete_run
    run, marker = crafted(complete_run, tmp_path, case)
    proc = cli(["export", str(run), "--format", "pt2", "--out", str(tmp_path / "m.pt2")], out)
    key = {"model.hidden": "model.hidden", "data.imbalance": "data.imbalance", "model._target_": "model._target_"}
    line = one_line_error(proc, key.get(case, "run_dir"))
    assert "weights_only" not in line
    proc = cli(["report", str(run), "--out", str(tmp_path / "report")], out)
    assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_trust_refuses_directives_interpolations_and_foreign_targets():
    from prunelab.runs.trust import buildable

    good = {"model": {"_target_": "prunelab.models.mlp.MLP", "hidden": [64, 32]}}
    assert buildable(good, "model") == good["model"]
    bad = [
        ({"_target_": "prunelab.models.mlp.MLP", "hidden": {"_target_": "torch.load"}}, "model.hidden._target_"),
        ({"_target_": "prunelab.models.mlp.MLP", "_args_": ["x"]}, "model._args_"),
        ({"_target_": "prunelab.models.mlp.MLP", "_partial_": True}, "model._partial_"),
        ({"_target_": "prunelab.models.mlp.MLP", "hidden": ["${oc.env:HOME}"]}, "model.hidden[0]"),
        ({"_target_": "builtins.eval"}, "model._target_"),
        ({"_target_": "prunelab.data.digits.DigitsDataModule"}, "model._target_"),  # another group's class
    ]
    for node, key in bad:
        with pytest.raises(PrunelabError) as err:
            buildable({"model": node}, "model")
        assert err.value.key == key, (node, err.value.one_line())


def test_every_torch_load_is_the_one_helper():
    """``torch.load`` appears once in prunelab's source: in results.load_tensors, with weights_only=True."""
    src = Path(prunelab.__file__).parent
    calls = [
        (p, line)
        for p in src.rglob("*.py")
        for line in p.read_text().splitlines()
        if "torch.load(" in line and not line.strip().startswith(("#", "``", "-"))
    ]
    code = [(p.name, line.strip()) for p, line in calls if "``" not in line]
    assert code == [("files.py", 'return torch.load(path, map_location="cpu", weights_only=True)')], code


# -- 2: identity cannot be skipped ---------------------------------------------------------------------------------
def test_folder_without_its_recorded_config_is_never_adopted(complete_run, tmp_path):
    out, ref = complete_run
    run = shutil.copytree(ref, tmp_path / "run")
    (run / "run_config.yaml").unlink()
    shutil.rmtree(run / ".hydra", ignore_errors=True)
    before = snapshot(run)
    proc = cli([*Q, "criterion=random", f"hydra.run.dir={run}"], out)
    assert "no run_config.yaml" in one_line_error(proc, "hydra.run.dir")
    assert snapshot(run) == before
    proc = cli([*Q, f"hydra.run.dir={run}"], out)  # not even its own config: nothing proves it
    one_line_error(proc, "hydra.run.dir")


def test_summary_of_another_run_is_refused(complete_run, tmp_path):
    out, ref = complete_run
    run = shutil.copytree(ref, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "run_id": "0123456789"}))
    proc = cli([*Q, f"hydra.run.dir={run}"], out)
    assert "0123456789" in one_line_error(proc, "hydra.run.dir")


# -- 3: a moved folder resumes exactly -----------------------------------------------------------------------------
def test_moved_folder_resumes_to_identical_results(tmp_path):
    """kill -9 right after round 0's first best checkpoint, copy the folder elsewhere, resume there: every round's
    record, model and predictions equal an uninterrupted run's."""
    args = ["logger=csv", "trainer.max_epochs=6", "schedule.rounds=1", "share_round0=false"]
    ref = tmp_path / "ref"
    assert cli([*args, f"hydra.run.dir={ref}"], tmp_path).returncode == 0
    first = tmp_path / "first"
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "prunelab", *args, f"hydra.run.dir={first}", "trainer.enable_progress_bar=false"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = first / "rounds" / "r00" / "checkpoints"
    while proc.poll() is None and not any(ckpts.glob("best-*.ckpt")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not results.round_done(first, 0), "the run complete_run round 0 before it was killed: nothing to test"
    moved = shutil.copytree(first, tmp_path / "elsewhere" / "moved")
    shutil.rmtree(first)
    resumed = cli([*args, f"hydra.run.dir={moved}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "dirpath has changed" not in resumed.stderr
    assert comparable(moved) == comparable(ref)
    for r in (0, 1):
        a, b = results.round_dir(ref, r), results.round_dir(moved, r)
        assert (a / "model.pt").read_bytes() == (b / "model.pt").read_bytes() or _same_state(a, b)
        assert (a / "predictions.npz").read_bytes() == (b / "predictions.npz").read_bytes()


def _same_state(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p / "model.pt", weights_only=True) for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
