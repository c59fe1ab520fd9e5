"""Issue 14 item 6: any ``fn(model, group) -> scores`` is a structured criterion (GroupScore), shown with FPGM and
BN scale, importances prunelab did not have."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.group_score import GroupScore, GroupView
from prunelab.pruning.groups import unit_groups
from prunelab.pruning.importances.bn_scale import bn_scale
from prunelab.pruning.importances.fpgm import fpgm
from tests.conftest import cli, run_dirs
from tests.test_faults import one_line_error


def conv_net(batch_norm: bool = True) -> nn.Module:
    layers = [nn.Conv2d(1, 3, 1, bias=False)]
    layers += [nn.BatchNorm2d(3)] if batch_norm else []
    model = nn.Sequential(*layers, nn.ReLU(), nn.Conv2d(3, 2, 1))
    masking.attach_masks(model, masking.prunable_names(model))
    return model


def view(model: nn.Module, alive=None) -> GroupView:
    (g,) = unit_groups(model)
    alive = torch.ones(g.out_channels, dtype=torch.bool) if alive is None else alive
    return GroupView(model, g.key, g.kind, g.out_channels, alive, g.producers, g.batchnorms, g.consumers)


def test_fpgm_scores_the_geometric_median_lowest():
    model = conv_net()
    with torch.no_grad():
        masking.original(model, "0.weight").copy_(torch.tensor([0.0, 1.0, 10.0]).view(3, 1, 1, 1))
    scores = fpgm(model, view(model))
    assert torch.allclose(scores, torch.tensor([11.0, 10.0, 19.0]))  # sum of distances to the others
    assert int(scores.argmin()) == 1  # the median unit is the most replaceable
    dead = torch.tensor([True, True, False])  # a pruned unit's (zero) weights are no longer a reference point
    assert torch.allclose(fpgm(model, view(model, dead))[:2], torch.tensor([1.0, 1.0]))


def test_bn_scale_reads_gamma_and_refuses_groups_without_a_norm():
    model = conv_net()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1]))
    assert torch.allclose(bn_scale(model, view(model)), torch.tensor([0.5, 2.0, 0.1]))
    with pytest.raises(PrunelabError, match="no BatchNorm"):
        bn_scale(conv_net(batch_norm=False), view(conv_net(batch_norm=False)))


def bad_shape(model, group):
    return torch.ones(group.units + 1)


def not_finite(model, group):
    return torch.full((group.units,), float("nan"))


def by_index(model, group, reverse: bool = False):
    """Higher index = more important (or less, reversed): makes which units are kept predictable."""
    scores = torch.arange(group.units, dtype=torch.float32)
    return -scores if reverse else scores


@pytest.mark.parametrize(
    ("fn", "says"), [("bad_shape", "not one score per unit"), ("not_finite", "non-finite"), ("nope", "cannot import")]
)
def test_group_score_checks_what_fn_returns(fn, says):
    model = conv_net()
    with pytest.raises(PrunelabError, match=says):
        crit = GroupScore(f"tests.test_group_score.{fn}")
        crit.check_groups(model, unit_groups(model))


def test_group_score_feeds_the_ranking():
    model = conv_net()
    groups = unit_groups(model)
    for reverse, kept in ((False, [2]), (True, [0])):
        crit = GroupScore("tests.test_group_score.by_index", scope="layer", options={"reverse": reverse})
        scores = crit.scores(model, masking.get_masks(model), context=ScoringContext(groups=groups))
        alive = units.select_units(scores, units.alive_units(model, groups), 0.6, scope="layer")
        assert torch.nonzero(alive["0"]).flatten().tolist() == kept


def test_a_user_score_function_prunes_through_the_cli(tmp_path):
    (tmp_path / "my_scores.py").write_text(
        "import torch\n\ndef low_index_first(model, group):\n    return torch.arange(group.units).float()\n"
    )
    args = [
        "data=digits",
        "model=cnn_small_bn",
        "criterion=group_score",
        "criterion.fn=my_scores.low_index_first",
        "criterion.scope=layer",
        "schedule.rate=0.5",
        "schedule.rounds=1",
        "trainer.max_epochs=1",
        "logger=none",
        "export.latency_reps=2",
    ]
    proc = cli(args, tmp_path, env_extra={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    record = json.loads((run_dir / "rounds" / "r01" / "kept.json").read_text())
    for g in record["groups"]:  # each layer keeps its upper half of units, exactly as the function ranked them
        assert g["kept"] == list(range(g["units"] - len(g["kept"]), g["units"]))
        assert len(g["kept"]) == g["units"] // 2


@pytest.mark.parametrize("criterion", ["fpgm", "bn_scale"])
def test_ported_importances_run_from_the_cli(criterion, tmp_path):
    args = [
        "data=digits",
        "model=cnn_small_bn",
        f"criterion={criterion}",
        "schedule.rate=0.5",
        "schedule.rounds=1",
        "trainer.max_epochs=1",
        "logger=none",
        "export.latency_reps=2",
    ]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    row = json.loads((run_dir / "rounds" / "r01" / "metrics.json").read_text())
    assert row["compact_max_abs_diff"] < 1e-4 and row["flops_ratio"] < 1


def test_score_function_errors_are_one_line_before_training(tmp_path):
    args = ["data=digits", "model=cnn_small_bn", "criterion=group_score", "criterion.fn=torch.ones", "logger=none"]
    line = one_line_error(cli(args, tmp_path), "criterion.fn")
    assert "failed on features.0" in line
    assert not list(tmp_path.rglob("results.jsonl"))
    line = one_line_error(cli(["criterion=group_score", "logger=none"], tmp_path), "criterion.fn")
    assert "has no value" in line
