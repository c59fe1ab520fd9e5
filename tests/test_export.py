"""Issue 14 item 5: structured rounds keep ``kept.json``; prunelab.runs.compact.load_compact rebuilds the compacted
model from it and ``model.pt`` with ``weights_only=True`` loading (no pickled module), equal to the masked model."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from prunelab.config.instantiate import make
from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.groups import unit_groups
from prunelab.runs.compact import dense_state, kept_record, load_compact
from tests.conftest import cli, compose_cfg, run_dirs
from tests.test_group_kinds import prune_half

SHAPES = {
    "lenet300": (1, 28, 28),
    "cnn_small_bn": (1, 28, 28),
    "vgg11": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "wrn16_4": (3, 32, 32),
}


def fake_run(tmp_path, name: str):
    """A run folder as a structured run leaves it: config, round 1's model.pt and kept.json (half of each group)."""
    cfg = compose_cfg([f"model={name}"])
    model = make(cfg, "model", input_shape=SHAPES[name], num_classes=10, _convert_="all")
    masking.attach_masks(model, masking.prunable_names(model))
    groups = unit_groups(model, "all")
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    with torch.no_grad():  # non-trivial norm statistics, so a wrong channel would show
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    prune_half(model, groups)
    rdir = tmp_path / "rounds" / "r01"
    rdir.mkdir(parents=True)
    OmegaConf.save(cfg, tmp_path / "run_config.yaml", resolve=True)  # as a run records it
    torch.save(model.state_dict(), rdir / "model.pt")
    (rdir / "kept.json").write_text(json.dumps(kept_record(model, groups, SHAPES[name], 10)))
    return model.eval(), groups


@pytest.mark.parametrize("name", list(SHAPES))
def test_load_compact_equals_the_masked_model(name, tmp_path):
    masked, groups = fake_run(tmp_path, name)
    compact = load_compact(tmp_path, 1)
    assert not any(masking.has_masks(m) for m in compact.modules())
    x = torch.randn(4, *SHAPES[name], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float((compact(x) - masked(x)).abs().max()) <= 1e-5
    expected = units.compact(masked, groups)  # the in-run compaction: the same architecture
    assert [tuple(p.shape) for p in compact.parameters()] == [tuple(p.shape) for p in expected.parameters()]
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in masked.parameters()) * 0.8


def test_dense_state_folds_masks():
    layer = torch.nn.Linear(3, 2)
    masking.attach_masks(layer, ["weight"])
    masking.set_masks(layer, {"weight": torch.tensor([[1.0, 0, 1], [0, 1, 1]])}, zero_weights=False)
    state = dense_state(layer.state_dict())
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], masking.effective(layer, "weight").detach())


def test_load_compact_refuses_files_that_do_not_belong_together(tmp_path):
    fake_run(tmp_path, "cnn_small_bn")
    path = tmp_path / "rounds" / "r01" / "kept.json"
    record = json.loads(path.read_text())
    record["groups"][0]["kept"] = record["groups"][0]["kept"][:-1]  # drops a unit model.pt still uses
    path.write_text(json.dumps(record))
    with pytest.raises(PrunelabError, match=r"kept\.json drops units"):
        load_compact(tmp_path, 1)
    path.write_text("{")
    with pytest.raises(PrunelabError, match="cannot read"):
        load_compact(tmp_path, 1)
    path.unlink()
    with pytest.raises(PrunelabError, match="does not exist"):
        load_compact(tmp_path, 1)
    with pytest.raises(PrunelabError, match="does not exist"):
        load_compact(tmp_path, 7)


def test_structured_run_keeps_kept_json_and_no_pickled_module(tmp_path):
    proc = cli(
        [
            "data=digits",
            "model=cnn_small_bn",
            "criterion=l1_filter",
            "schedule.rate=0.5",
            "schedule.rounds=1",
            "trainer.max_epochs=1",
            "logger=none",
            "export.latency_reps=2",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    assert not list(run_dir.rglob("compact.pt"))
    record = json.loads((run_dir / "rounds" / "r01" / "kept.json").read_text())
    assert {g["kind"] for g in record["groups"]} == {"conv", "flatten", "linear"}  # default kinds: auto
    row = json.loads((run_dir / "rounds" / "r01" / "metrics.json").read_text())
    assert "kept.json" in json.dumps(row["files"])  # hashed with the round's other files
    compact = load_compact(run_dir, 1)
    assert sum(p.numel() for p in compact.parameters()) == row["compact_parameters"]
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = make(compose_cfg(["model=cnn_small_bn"]), "model", input_shape=(1, 8, 8), num_classes=10, _convert_="all")
    plain.load_state_dict(dense_state(torch.load(run_dir / "rounds" / "r01" / "model.pt", weights_only=True)))
    with torch.no_grad():
        assert float((compact(x) - plain.eval()(x)).abs().max()) <= 1e-5
