"""Issue 14: layer allocation is a choice (prune.normalize, prune.ratios, prune.max_layer_sparsity), not an
accident of score scale."""

from __future__ import annotations

import math

import pytest
import torch

from prunelab.config.identity import run_id
from prunelab.models.mlp import MLP
from prunelab.models.vgg import VGG
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning import units
from prunelab.pruning.allocation import Allocation, layer_target
from prunelab.pruning.callback import PruningCallback
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.filters import L1Filter
from prunelab.pruning.criteria.magnitude import Magnitude
from prunelab.pruning.groups import unit_groups
from prunelab.pruning.schedules import Iterative, OneShot
from prunelab.runs.files import SnapshotFolder
from tests.conftest import cli, compose_cfg
from tests.test_faults import one_line_error


def vgg_kept_shares(allocation: Allocation, scope: str = "global") -> dict[str, float]:
    """VGG-11 at initialisation, global L1 filter pruning to 50% of all filters: each layer's kept share."""
    torch.manual_seed(0)
    model = VGG((3, 32, 32), 10, 11)
    masking.attach_masks(model, masking.prunable_names(model))
    groups = unit_groups(model)
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    cb = PruningCallback(
        L1Filter(scope),
        OneShot(0.5),
        rewinding.Rewind(),
        1,
        SnapshotFolder("unused"),
        groups=groups,
        allocation=allocation,
    )
    context = ScoringContext(round=1, seed=0, groups=groups)
    current = masking.get_masks(model, primary_only=True)
    scores = cb.criterion.scores(model, current, context=context)
    masking.set_masks(model, cb.select_masks(model, scores, current, 0.5, context))
    alive = units.alive_units(model, groups)
    return {n: float(a.float().mean()) for n, a in alive.items()}


def test_raw_global_scores_empty_some_layers_and_normalisers_do_not():
    raw = vgg_kept_shares(Allocation())
    assert min(raw.values()) < 0.05  # the accident the issue measured: features.0 keeps 1 of 64
    mean = vgg_kept_shares(Allocation(normalize="mean"))
    assert all(0.4 < s < 0.6 for s in mean.values()), mean  # dividing by the layer's mean balances the layers
    for how in ("max", "l2"):  # other normalisers reallocate too, but not evenly (l2 spares the small layers)
        shares = vgg_kept_shares(Allocation(normalize=how))
        assert shares != raw and max(abs(shares[k] - raw[k]) for k in raw) > 0.2, (how, shares)
    layer = vgg_kept_shares(Allocation(), scope="layer")
    assert all(s == pytest.approx(0.5, abs=0.02) for s in layer.values())


def test_max_layer_sparsity_caps_a_global_ranking():
    shares = vgg_kept_shares(Allocation(max_layer_sparsity=0.7))
    assert min(shares.values()) >= 0.3 - 1e-9 and min(vgg_kept_shares(Allocation()).values()) < 0.3
    sizes = {
        "features.0": 64,
        "features.4": 128,
        "features.8": 256,
        "features.11": 256,
        "features.15": 512,
        "features.18": 512,
        "features.22": 512,
    }  # the target is still met: 50% of all filters removed
    kept = sum(shares[k] * n for k, n in sizes.items()) / sum(sizes.values())
    assert kept == pytest.approx(0.5, abs=1 / sum(sizes.values()))


def frankle_carbin_round(rounds: int, scope: str) -> dict[str, float]:
    """LeNet-300-100, magnitude pruning, 20% per round with the output layer at 10% (prune.ratios)."""
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10, (300, 100))
    masking.attach_masks(model, masking.prunable_names(model))
    sched = Iterative(0.2, rounds)
    for r in range(1, rounds + 1):
        cb = PruningCallback(
            Magnitude(scope),
            sched,
            rewinding.Rewind(),
            r,
            SnapshotFolder("unused"),
            allocation=Allocation(ratios={"classifier.*": 0.1}),
        )
        current = masking.get_masks(model, primary_only=True)
        context = ScoringContext(round=r, seed=0)
        scores = cb.criterion.scores(model, current, context=context)
        masking.set_masks(model, cb.select_masks(model, scores, current, sched.sparsity_at(r), context))
    return {n: float((m == 0).float().mean()) for n, m in masking.get_masks(model, primary_only=True).items()}


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_per_pattern_rates_give_frankle_and_carbins_output_layer(scope):
    sparsity = frankle_carbin_round(3, scope)
    assert sparsity["classifier.weight"] == pytest.approx(1 - 0.9**3, abs=1e-3)
    hidden = [v for k, v in sparsity.items() if k != "classifier.weight"]
    if scope == "layer":
        assert all(v == pytest.approx(1 - 0.8**3, abs=1e-3) for v in hidden)
    else:  # the hidden layers share 1 - 0.8^3 between them
        assert sum(v * n for v, n in zip(hidden, (784 * 300, 300 * 100), strict=True)) / (
            784 * 300 + 300 * 100
        ) == pytest.approx(1 - 0.8**3, abs=1e-3)


def test_layer_target_is_a_rate_per_schedule_step():
    assert layer_target(1 - 0.8**4, 0.1, 0.2) == pytest.approx(1 - 0.9**4)
    assert layer_target(0.5, 0.3, 0.5) == pytest.approx(0.3)  # one-shot: the layer's own share
    assert layer_target(0.0, 0.3, 0.5) == 0.0
    assert math.isclose(layer_target(0.2, 0.2, 0.2), 0.2)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("prune.normalize=median", "prune.normalize"),
        ("+prune.ratios={classifier.*: 1.5}", "prune.ratios.classifier.*"),
        ("prune.max_layer_sparsity=0", "prune.max_layer_sparsity"),
    ],
)
def test_bad_allocation_names_the_key(override, key, tmp_path):
    one_line_error(cli(["logger=none", "trainer.max_epochs=1", override], tmp_path), key)


def test_progressive_schedule_refuses_a_custom_allocation(tmp_path):
    args = [
        "data=digits",
        "model=cnn_small_bn",
        "criterion=activation_energy",
        "schedule=progressive",
        "rewind=none",
        "prune.normalize=mean",
    ]
    one_line_error(cli(args, tmp_path), "prune.ratios")


def test_defaults_keep_run_ids_and_lth_experiments_use_rates():
    base = compose_cfg([])
    assert run_id(base) == run_id(compose_cfg(["prune.normalize=none", "prune.max_layer_sparsity=null"]))
    assert run_id(base) != run_id(compose_cfg(["prune.normalize=mean"]))
    lth = compose_cfg(["experiment=lth_mnist"])
    assert dict(lth.prune.ratios) == {"classifier.*": 0.1} and lth.criterion.scope == "layer"
    conv4 = compose_cfg(["experiment=lth_conv4_cifar10"])
    assert list(conv4.prune.ratios.items()) == [("classifier.4.*", 0.1), ("features.*", 0.1), ("classifier.*", 0.2)]


def test_max_layer_sparsity_caps_unstructured_global_magnitude():
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10, (300, 100))
    masking.attach_masks(model, masking.prunable_names(model))
    with torch.no_grad():  # the first layer's weights 10x smaller: a raw global ranking would empty it first
        model.features[1].weight.mul_(0.1)
    current = masking.get_masks(model, primary_only=True)
    for cap, below in ((None, False), (0.82, True)):
        cb = PruningCallback(
            Magnitude(),
            OneShot(0.8),
            rewinding.Rewind(),
            1,
            SnapshotFolder("unused"),
            allocation=Allocation(max_layer_sparsity=cap),
        )
        scores = cb.criterion.scores(model, current, context=ScoringContext(round=1, seed=0))
        masks = cb.select_masks(model, scores, current, 0.8, ScoringContext(round=1, seed=0))
        per_layer = {n: float((m == 0).float().mean()) for n, m in masks.items()}
        overall = sum(float((m == 0).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        assert overall == pytest.approx(0.8, abs=1e-4)
        assert (max(per_layer.values()) <= 0.82 + 1e-6) is below, per_layer


def test_normalize_auto_is_mean_for_structured_and_raw_for_unstructured():
    prune = compose_cfg([]).prune
    assert prune.normalize == "auto"
    assert Allocation.from_config(prune, structured=True).normalize == "mean"
    assert Allocation.from_config(prune, structured=False).normalize == "none"
    assert Allocation.from_config(prune, structured=False).default  # unstructured: exactly the earlier path
    # identities: auto is none for an unstructured criterion (earlier runs keep their ids), a new result otherwise
    assert run_id(compose_cfg([])) == run_id(compose_cfg(["prune.normalize=none"]))
    l1 = ["criterion=l1_filter", "prune.group_kinds=[conv]"]
    assert run_id(compose_cfg(l1)) != run_id(compose_cfg([*l1, "prune.normalize=none"]))
    for name in ("jordao_fashion", "osaku_fashion"):  # papers' runs made with raw scores on conv filters keep them
        cfg = compose_cfg([f"experiment={name}"])
        assert cfg.prune.normalize == "none" and list(cfg.prune.group_kinds) == ["conv"]


def test_structured_default_spreads_the_cut_over_layers():
    """With normalize=auto (mean) no VGG-11 layer is gutted at 50% of all filters; raw scores keep 1.6% of one."""
    raw = vgg_kept_shares(Allocation("none"))
    auto = vgg_kept_shares(Allocation.from_config(compose_cfg([]).prune, structured=True))
    assert min(raw.values()) < 0.05
    assert min(auto.values()) > 0.3


def test_round_kept_rounds_up_with_the_best_scored_units():
    alive = {"a": torch.tensor([True] * 14 + [False] * 2), "b": torch.ones(6, dtype=torch.bool)}
    scores = {"a": torch.arange(16.0), "b": torch.arange(6.0)}
    kept = {"a": torch.tensor([False] * 9 + [True] * 5 + [False] * 2), "b": torch.tensor([False] * 3 + [True] * 3)}
    out = units.round_kept(kept, alive, scores, 4)
    assert int(out["a"].sum()) == 8  # 5 -> 8: the 3 best-scored units this step removed (6, 7, 8) stay
    assert torch.nonzero(out["a"]).flatten().tolist() == [6, 7, 8, 9, 10, 11, 12, 13]
    assert not out["a"][14:].any()  # units pruned in earlier steps never come back
    assert int(out["b"].sum()) == 4  # 3 -> 4
    assert units.round_kept(kept, alive, scores, 32)["b"].all()  # capped at what is alive (6)
    assert torch.equal(units.round_kept(kept, alive, scores, 1)["a"], kept["a"])


def test_round_to_keeps_multiples_through_the_cli(tmp_path):
    import json

    from tests.conftest import run_dirs

    args = [
        "data=digits",
        "model=cnn_small_bn",
        "criterion=l1_filter",
        "schedule.rate=0.4",
        "schedule.rounds=1",
        "prune.round_to=8",
        "trainer.max_epochs=1",
        "logger=none",
        "export.latency_reps=2",
    ]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    groups = json.loads((run_dir / "rounds" / "r01" / "kept.json").read_text())["groups"]
    assert all(len(g["kept"]) % 8 == 0 for g in groups), [len(g["kept"]) for g in groups]
    assert any(len(g["kept"]) < g["units"] for g in groups)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["prune.round_to=0"], "not a unit count"),
        (["prune.round_to=8", "criterion=magnitude"], "structured"),
        (["prune.round_to=8", "criterion=activation_energy", "schedule=progressive", "rewind=none"], "progressive"),
    ],
)
def test_round_to_errors_name_the_key(extra, says, tmp_path):
    args = ["data=digits", "model=cnn_small_bn", "criterion=l1_filter", "logger=none", "trainer.max_epochs=1", *extra]
    line = one_line_error(cli(args, tmp_path), "prune.round_to")
    assert says in line
    assert not list(tmp_path.rglob("results.jsonl"))
