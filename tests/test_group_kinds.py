"""Issue 14: hidden neurons, the conv feeding Flatten -> Linear, and residual-coupled channels as prunable groups.

For every new group kind on MLP/LeNet-300-100, cnn_small_bn, VGG-11, ResNet-20 and WRN-16-4: a pruned unit emits
exact zeros, the masked model equals the same model with the pruned weights zeroed in plain tensors, the compacted
model's outputs equal the masked model's (<= 1e-5), and counted FLOPs equal ``torch.utils.flop_counter`` on the
compacted copy.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunelab.config.identity import run_id
from prunelab.errors import PrunelabError
from prunelab.models.convnets import ConvNet
from prunelab.models.mlp import MLP
from prunelab.models.resnet import ResNet
from prunelab.models.vgg import VGG
from prunelab.models.wide_resnet import WideResNet
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.cost import count_flops
from prunelab.pruning.groups import check_kinds, refused, unit_groups
from tests.conftest import cli, compose_cfg
from tests.test_faults import one_line_error

MODELS = {
    "lenet300": (lambda: MLP((1, 28, 28), 10, (300, 100)), (1, 28, 28)),
    "cnn_small_bn": (lambda: ConvNet((1, 28, 28), 10, [32, "M", 64, "M", 64], (128,), batch_norm=True), (1, 28, 28)),
    "vgg11": (lambda: VGG((3, 32, 32), 10, 11), (3, 32, 32)),
    "resnet20": (lambda: ResNet((3, 32, 32), 10, 20), (3, 32, 32)),
    "wrn16_4": (lambda: WideResNet((3, 32, 32), 10, 16, 4), (3, 32, 32)),
}
# what each model must offer beyond conv->conv filters
EXPECTED = {
    "lenet300": {"linear": 2},
    "cnn_small_bn": {"conv": 2, "flatten": 1, "linear": 1},
    "vgg11": {"conv": 7, "flatten": 1},
    "resnet20": {"conv": 9},  # the option-A streams are refused (channel zero-padding)
    "wrn16_4": {"conv": 7, "residual": 3},
}


def build(name: str, kinds="all", seed: int = 0):
    make, shape = MODELS[name]
    torch.manual_seed(seed)
    model = make()
    masking.attach_masks(model, masking.prunable_names(model))
    groups = unit_groups(model, kinds)
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    with torch.no_grad():  # non-trivial norm statistics, so a wrong channel would show
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model, groups, torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))


def prune_half(model, groups, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    scores = {g.key: torch.rand(g.out_channels, generator=gen) for g in groups}
    alive = units.select_units(scores, units.alive_units(model, groups), 0.5, scope="layer")
    masking.set_masks(model, units.group_masks(model, groups, alive))
    return alive


@pytest.mark.parametrize("name", list(MODELS))
def test_group_kinds_found(name):
    _, groups, _ = build(name)
    counts = {k: sum(g.kind == k for g in groups) for k in ("conv", "flatten", "linear", "residual")}
    assert counts == {k: EXPECTED[name].get(k, 0) for k in counts}
    conv_only = unit_groups(MODELS[name][0]())
    assert [g.key for g in conv_only] == [g.key for g in groups if g.kind == "conv"]


@pytest.mark.parametrize("name", list(MODELS))
def test_pruned_units_are_exact_zeros_and_compaction_is_exact(name):
    model, groups, x = build(name)
    if not groups:
        pytest.skip("no groups")
    alive = prune_half(model, groups)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(p).register_forward_hook(lambda m, i, o, p=p: outputs.update({p: o}))
        for g in groups
        for p in g.producers
    ]
    model.eval()
    with torch.no_grad():
        masked = model(x)
    for h in hooks:
        h.remove()
    for g in groups:
        for p in g.producers:
            assert torch.count_nonzero(outputs[p][:, ~alive[g.key]]) == 0, (g.kind, p)
    zeroed = units.bake(model).eval()  # plain tensors, pruned entries zero
    compact = units.compact(model, groups).eval()
    with torch.no_grad():
        assert torch.allclose(zeroed(x), masked, atol=1e-6)
        assert (compact(x) - masked).abs().max() <= 1e-5
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in zeroed.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        compact(x[:1])
    assert count_flops(model, x.shape[1:])["flops"] == pytest.approx(counter.get_total_flops(), rel=1e-9)


def test_residual_group_ties_every_producer_of_the_stream():
    _, groups, _ = build("wrn16_4")
    stage = next(g for g in groups if g.kind == "residual")
    assert stage.producers == ["blocks.0.shortcut", "blocks.0.conv2", "blocks.1.conv2"]
    assert "blocks.1.bn1" in stage.batchnorms and "blocks.2.bn1" in stage.batchnorms
    assert {"blocks.1.conv1", "blocks.2.conv1", "blocks.2.shortcut"} <= set(stage.consumers)
    last = [g for g in groups if g.kind == "residual"][-1]
    assert last.blocks == {"classifier": 1} and "bn" in last.batchnorms


def test_flatten_group_maps_a_channel_to_its_spatial_block():
    model, groups, _ = build("cnn_small_bn")
    flat = next(g for g in groups if g.kind == "flatten")
    linear = model.get_submodule(flat.consumers[0])
    assert flat.blocks[flat.consumers[0]] * flat.out_channels == linear.in_features
    assert flat.blocks[flat.consumers[0]] == 7 * 7


def test_option_a_shortcut_is_refused_with_a_reason():
    reasons = refused(ResNet((3, 32, 32), 10, 20))
    assert "channel zero-padding" in reasons["blocks.3.conv2"]
    assert "channel zero-padding" in reasons["conv1"]  # stage 0's stream feeds block 3's padded shortcut
    assert "output" in reasons["classifier"]


def test_unknown_kind_names_the_key():
    with pytest.raises(PrunelabError, match=r"prune\.group_kinds"):
        check_kinds(["neurons"])
    assert check_kinds("all") == ("conv", "flatten", "linear", "residual")


def test_group_kinds_enter_the_id_only_for_structured_criteria():
    base = compose_cfg([])
    # an unstructured criterion is not affected by the kinds, so they stay out of its identity
    assert run_id(base) == run_id(compose_cfg(["prune.group_kinds=[conv,linear]"]))
    l1 = compose_cfg(["criterion=l1_filter"])
    conv = compose_cfg(["criterion=l1_filter", "prune.group_kinds=[conv]"])
    assert run_id(conv) == run_id(compose_cfg(["criterion=l1_filter", "prune.group_kinds=conv"]))  # one = [one]
    assert run_id(l1) != run_id(conv)  # the default (auto: all the criterion can score) is another result
    assert run_id(l1) != run_id(compose_cfg(["criterion=l1_filter", "prune.group_kinds=[conv,linear]"]))
    missing = compose_cfg(["criterion=l1_filter"])
    with open_dict(missing):
        del missing.prune["group_kinds"]  # a key left out stands for its default
    assert run_id(missing) == run_id(l1)


def test_the_identity_asks_the_criterion_class_whether_it_is_structured():
    from hydra.utils import get_class

    from prunelab.config.groups import conf_dir

    structured = {}
    for path in (conf_dir() / "criterion").glob("*.yaml"):
        target = OmegaConf.load(path)["_target_"]
        structured[path.stem] = get_class(target).structured
        with_kinds = compose_cfg([f"criterion={path.stem}", "prune.group_kinds=[conv]", *_needs(path.stem)])
        plain = compose_cfg([f"criterion={path.stem}", *_needs(path.stem)])
        assert (run_id(with_kinds) != run_id(plain)) == structured[path.stem], path.stem
    unstructured = ["fairgrape", "fairprune", "magnitude", "magnitude_increase", "per_class_snip", "random", "snip"]
    assert sorted(k for k, v in structured.items() if not v) == unstructured


def _needs(option: str) -> list[str]:
    return ["criterion.fn=prunelab.pruning.importances.fpgm.fpgm"] if option == "group_score" else []


def test_auto_kinds_are_what_the_criterion_can_score():
    assert check_kinds("auto", ("conv", "flatten")) == ("conv", "flatten")
    assert check_kinds(["auto"]) == ("conv", "flatten", "linear", "residual")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["prune.group_kinds=[neurons]"], "unknown kind"),
        (["prune.group_kinds=[residual]"], "no structurally prunable group"),
        (
            ["criterion=activation_energy", "schedule=progressive", "rewind=none", "prune.group_kinds=[all]"],
            "cannot score ['linear']",
        ),
    ],
)
def test_group_kind_errors_name_the_key(extra, says, tmp_path):
    args = ["data=digits", "model=cnn_small_bn", "logger=none", "trainer.max_epochs=1", "criterion=l1_filter", *extra]
    line = one_line_error(cli(args, tmp_path), "prune.group_kinds")
    assert says in line
    assert not list(tmp_path.rglob("results.jsonl"))
