"""Issue 15: a pruned model in your own code. prunelab.load_model / load_run without loading the dataset, and
`prunelab export --format onnx|torchscript|pt2` with the outputs checked against the masked model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import prunelab
from prunelab.errors import PrunelabError
from prunelab.runner.build import build_data
from tests.conftest import cli, compose_cfg, run_dirs

TINY = ["logger=none", "trainer.max_epochs=2", "schedule.rounds=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, extra in (("weights", []), ("units", ["criterion=l1_filter", "schedule.rate=0.5"])):
        folder = tmp_path_factory.mktemp(name)
        proc = cli([*TINY, *extra], folder)
        assert proc.returncode == 0, proc.stderr[-2000:]
        (out[name],) = run_dirs(folder)
    return out


def test_load_model_gives_the_runs_own_predictions(runs):
    run = runs["weights"]
    model = prunelab.load_model(run)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert not any("parametrizations" in k for k in model.state_dict())  # a plain module, masks folded in
    record = json.loads((run / "rounds" / "r01" / "metrics.json").read_text())
    nonzero = sum(int((p != 0).sum()) for p in model.parameters())
    assert nonzero == record["nonzero_parameters"]
    dm = build_data(compose_cfg(TINY))
    x = torch.cat([b[0] for b in dm.test_dataloader()])
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    saved, _ = prunelab.load_run(run).predictions(1)
    assert np.allclose(probs, saved, atol=1e-5)
    dense = prunelab.load_model(run, round=0)
    assert sum(int((p != 0).sum()) for p in dense.parameters()) > nonzero


def test_compact_model_is_smaller_and_equal(runs):
    run = runs["units"]
    masked, small = prunelab.load_model(run), prunelab.load_model(run, compact=True)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in masked.parameters())
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(small(x), masked(x), atol=1e-5)
    with pytest.raises(PrunelabError, match="compact"):
        prunelab.load_model(runs["weights"], compact=True)


def test_load_run_has_metrics_config_and_predictions(runs):
    run = prunelab.load_run(runs["weights"])
    assert list(run.metrics.index) == [0, 1] and run.metrics.loc[1, "sparsity"] > 0
    assert {"test/acc", "test/auroc_macro", "nonzero_parameters"} <= set(run.metrics.columns)
    assert run.config["seed"] == 0 and run.status == "complete" and run.classes[:2] == ["0", "1"]
    probs, labels = run.predictions()
    assert probs.shape == (len(labels), 10)
    assert run.confusion_matrix().sum() == len(labels)


def test_a_changed_file_is_refused(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["weights"], copy)
    (copy / "rounds" / "r01" / "model.pt").write_bytes(b"not a model")
    with pytest.raises(PrunelabError, match="checksum"):
        prunelab.load_model(copy)
    with pytest.raises(PrunelabError, match="not among the finished rounds"):
        prunelab.load_model(runs["weights"], round=5)
    with pytest.raises(PrunelabError, match="not a prunelab run folder"):
        prunelab.load_run(tmp_path)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_export_writes_a_checked_model(runs, tmp_path, fmt):
    from prunelab.cli.export import export

    path, diff, compact = export(runs["units"], fmt, out=tmp_path / f"m.{fmt}")
    assert path.exists() and compact and diff <= 1e-4
    if fmt == "onnx":  # class names and normalisation travel with the file
        import json

        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        data = json.loads((runs["units"] / "data.json").read_text())
        assert json.loads(props["prunelab.classes"]) == data["classes"]
        assert json.loads(props["prunelab.normalisation"]) == data["normalisation"] and data["normalisation"]["std"]
    with pytest.raises(PrunelabError, match="differ from the masked model"):  # the check runs: tolerance < 0
        export(runs["units"], fmt, out=tmp_path / f"bad.{fmt}", atol=-1.0)
    assert not (tmp_path / f"bad.{fmt}").exists() and not list(tmp_path.glob(".tmp-*"))


def test_export_command_line(runs, tmp_path):
    proc = cli(["export", str(runs["units"]), "--format", "onnx", "--round", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("wrote ") and "compacted" in proc.stdout
    assert (runs["units"] / "export" / "r01-compact.onnx").exists()
    bad = cli(["export", str(tmp_path), "--format", "onnx"], tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("prunelab: error: run_dir:")
