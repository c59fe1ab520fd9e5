"""Structured pruning: filter groups, exact zeros, selection rules, compaction (outputs and FLOPs), PLS-VIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.cross_decomposition import PLSRegression
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunelab.errors import PrunelabError
from prunelab.models.convnets import ConvNet
from prunelab.models.resnet import ResNet
from prunelab.models.vgg import VGG
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.cost import count_flops
from prunelab.pruning.groups import unit_groups
from prunelab.pruning.pls import pls, pls_vip

MODELS = {
    "convnet": lambda: ConvNet((1, 16, 16), 4, [8, "M", 8, "M", 16], (16,)),
    "convnet-bn": lambda: ConvNet((1, 16, 16), 4, [8, "M", 8, 16], (16,), batch_norm=True),
    "vgg11": lambda: VGG((3, 32, 32), 10, 11),
    "resnet20": lambda: ResNet((3, 32, 32), 10, 20),
}


def structured_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    model = MODELS[name]()
    masking.attach_masks(model, masking.prunable_names(model))
    groups = unit_groups(model)
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong channel would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model, groups


def prune_random_filters(model, groups, share: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    scores = {g.key: torch.rand(g.out_channels, generator=gen) for g in groups}
    alive = units.select_units(scores, units.alive_units(model, groups), share)
    masking.set_masks(model, units.group_masks(model, groups, alive))
    return alive


def input_for(model) -> torch.Tensor:
    shape = (3, 32, 32) if isinstance(model, (VGG, ResNet)) else (1, 16, 16)
    return torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))


def test_groups_follow_the_structure():
    _, vgg = structured_model("vgg11")
    assert len(vgg) == 7 and all(len(g.batchnorms) == 1 and len(g.consumers) == 1 for g in vgg)  # last conv out
    _, res = structured_model("resnet20")
    assert [g.key for g in res][:2] == ["blocks.0.conv1", "blocks.1.conv1"] and len(res) == 9
    assert all(g.consumers == [g.key.replace("conv1", "conv2")] for g in res)


@pytest.mark.parametrize("name", list(MODELS))
def test_pruned_filters_emit_exact_zeros(name):
    model, groups = structured_model(name)
    alive = prune_random_filters(model, groups, 0.5)
    outputs = {}
    hooks = []
    for g in groups:  # the last module of each group's path: its BatchNorm, else the conv
        last = g.batchnorms[-1] if g.batchnorms else g.key
        hooks.append(model.get_submodule(last).register_forward_hook(lambda m, i, o, c=g.key: outputs.update({c: o})))
    for train in (False, True):
        model.train(train)
        model(input_for(model))
        for g in groups:
            dead = ~alive[g.key]
            assert dead.any() and torch.count_nonzero(outputs[g.key][:, dead]) == 0
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("name", list(MODELS))
def test_compaction_gives_same_outputs_and_counted_flops(name):
    model, groups = structured_model(name)
    prune_random_filters(model, groups, 0.3)
    prune_random_filters(model, groups, 0.6, seed=1)
    model.eval()
    compact = units.compact(model, groups).eval()
    x = input_for(model)
    with torch.no_grad():
        assert torch.allclose(model(x), compact(x), atol=1e-5)
    assert sum(p.numel() for p in compact.parameters()) < sum(p.numel() for p in model.parameters())
    counted = count_flops(model, x.shape[1:])["flops"]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        compact(x[:1])
    assert counted == pytest.approx(counter.get_total_flops(), rel=1e-9)
    assert masking.masked_names(model)  # the original keeps its masks (compaction works on a copy)


def test_select_filters_rules():
    alive = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(6, dtype=torch.bool)}
    scores = {"a": torch.tensor([0.0, 0.0, 0.0, 0.0]), "b": torch.tensor([1.0, 2, 3, 4, 5, 6])}
    out = units.select_units(scores, alive, 0.5)  # remove 5 of 10: layer a keeps one filter
    assert out["a"].tolist() == [False, False, False, True] and int((~out["b"]).sum()) == 2
    assert out["b"].tolist() == [False, False, True, True, True, True]
    more = units.select_units({"a": torch.ones(4), "b": -torch.arange(6.0)}, out, 0.7)
    assert not (more["a"] & ~out["a"]).any() and not (more["b"] & ~out["b"]).any()  # never revived
    assert sum(int((~v).sum()) for v in more.values()) == 7
    again = units.select_units(scores, alive, 0.5)
    assert all(torch.equal(out[k], again[k]) for k in out)  # deterministic


def _sk_vip(x, y, **kw):
    p = PLSRegression(n_components=2, scale=True, **kw).fit(x, y)
    t, w, q = p.x_scores_, p.x_weights_, p.y_loadings_
    s = np.diag(t.T @ t @ q.T @ q)
    return np.sqrt(x.shape[1] * ((w / np.linalg.norm(w, axis=0)) ** 2 @ s) / s.sum())


def test_pls_vip_agrees_with_scikit_learn():
    gen = np.random.default_rng(0)
    n, f, c = 800, 120, 6
    labels = gen.integers(0, c, n)
    y = np.eye(c)[labels]
    x = gen.normal(size=(n, f))
    x[:, :15] += y @ gen.normal(size=(c, 15)) * 2  # informative features
    x[:, 30] = 2.5  # a constant feature (a dead filter)
    ours = pls_vip(torch.tensor(x), torch.tensor(y)).numpy()
    exact = _sk_vip(x, y, tol=1e-13, max_iter=10_000)  # NIPALS run to convergence
    assert np.allclose(ours, exact, rtol=1e-5, atol=1e-7)
    assert (np.argsort(ours, kind="stable") == np.argsort(exact, kind="stable")).all()  # the same ranking
    # scikit-learn's default NIPALS tolerance (the authors' call) stops ~3e-4 short: only near-ties may swap,
    # and the filters a pruning step removes (the lowest VIPs) are the same
    default = _sk_vip(x, y)
    assert spearmanr(ours, default).statistic > 0.999
    for k in (12, 30):
        assert set(np.argsort(ours)[:k]) == set(np.argsort(default)[:k])
    _, t, _ = pls(torch.tensor(x), torch.tensor(y))
    assert abs(float(t[:, 0] @ t[:, 1])) < 1e-6 * float(t[:, 0].norm() * t[:, 1].norm())  # orthogonal scores


def test_pls_vip_row_blocks_float32_and_offset(monkeypatch):
    """Passes over X walk it in row blocks (float32 input is converted block by block): many small blocks, a last
    partial block, float32 input and columns far from zero (the one-pass shifted sums) give the exact ranking."""
    from prunelab.pruning import pls as pls_module

    gen = np.random.default_rng(1)
    n, f, c = 1003, 90, 4
    labels = gen.integers(0, c, n)
    y = np.eye(c)[labels]
    x = gen.normal(size=(n, f)) * gen.uniform(0.5, 3.0, f)
    x[:, :10] += y @ gen.normal(size=(c, 10))
    x[:, 50:60] += 1e6  # large offsets: sums of squares without a shift would cancel catastrophically
    x[:, 70] = -7.0  # constant
    x32 = x.astype(np.float32)
    exact = _sk_vip(x32.astype(np.float64), y, tol=1e-13, max_iter=10_000)
    one_block = pls_vip(torch.tensor(x32), torch.tensor(y)).numpy()
    monkeypatch.setattr(pls_module._Standardized, "block_bytes", 8 * f * 64)  # 64-row blocks, the last one 43 rows
    blocks = pls_vip(torch.tensor(x32), torch.tensor(y)).numpy()
    for ours in (one_block, blocks):
        assert np.allclose(ours, exact, rtol=1e-6, atol=1e-8)
        assert (np.argsort(ours, kind="stable") == np.argsort(exact, kind="stable")).all()
    assert one_block[70] < 1e-12 and np.abs(one_block - blocks).max() < 1e-10  # constant: VIP 0 up to rounding


def test_layer_scope_removes_the_same_share_of_every_layer():
    alive = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)}
    scores = {"a": torch.arange(4.0), "b": torch.arange(10.0) + 100}  # a global ranking would empty "a" first
    glob = units.select_units(scores, alive, 0.5)
    assert int(glob["a"].sum()) == 1 and int(glob["b"].sum()) == 6
    per_layer = units.select_units(scores, alive, 0.5, scope="layer")
    assert per_layer["a"].tolist() == [False, False, True, True] and int(per_layer["b"].sum()) == 5
    with pytest.raises(PrunelabError, match=r"criterion\.scope"):
        units.select_units(scores, alive, 0.5, scope="both")
