"""The mask invariants of DESIGN.md, each on a real model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.models.convnets import ConvNet
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning.criteria.magnitude import Magnitude
from prunelab.pruning.criteria.random import Random
from prunelab.pruning.select import select
from prunelab.training import fastpaths


def make_model(seed: int = 0) -> nn.Module:
    fastpaths.install_mask_fast_path()  # as runs build their models (the lean property, P2)
    torch.manual_seed(seed)
    model = ConvNet((1, 8, 8), 3, channels=[4, "M", 8], hidden=[16], batch_norm=True)
    masking.attach_masks(model, masking.prunable_names(model))
    return model


def prune(model: nn.Module, target: float, scope: str = "global") -> dict:
    masks = masking.get_masks(model)
    new = select(Magnitude().scores(model, masks), masks, target, scope)
    masking.set_masks(model, new)
    return new


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, steps: int = 20) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def pruned_values(model: nn.Module) -> torch.Tensor:
    return torch.cat([masking.effective(model, n)[m == 0].flatten() for n, m in masking.get_masks(model).items()])


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-4),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd-momentum-wd", "adam", "adamw"],
)
def test_pruned_weights_stay_exactly_zero(make_opt):
    model = make_model()
    opt = make_opt(model.parameters())
    train_steps(model, opt, 10)  # optimizer state (momentum, Adam moments) is non-zero for every weight now
    twin, twin_opt = copy.deepcopy(model), None
    twin_opt = make_opt(twin.parameters())
    twin_opt.load_state_dict(opt.state_dict())
    prune(model, 0.7)
    train_steps(model, opt, 30)  # the same optimizer keeps stepping; its state moves the storage under the mask
    values = pruned_values(model)
    assert values.numel() > 0 and torch.count_nonzero(values) == 0  # the effective weights are exactly 0
    assert masking.sparsity_stats(model)["sparsity"] == pytest.approx(0.7, abs=1e-3)
    # with the optimizer state masked too (what in-fit pruning does), the storage itself stays exactly 0
    prune(twin, 0.7)
    masking.mask_optimizer_state(twin_opt, twin)
    train_steps(twin, twin_opt, 30)
    for n, m in masking.get_masks(twin).items():
        assert torch.count_nonzero(masking.original(twin, n)[m == 0]) == 0
    fresh = make_opt(model.parameters())  # a fresh optimizer (a new round) never moves zeroed storage
    masking.apply_masks_to_weights(model)
    train_steps(model, fresh, 10)
    for n, m in masking.get_masks(model).items():
        assert torch.count_nonzero(masking.original(model, n)[m == 0]) == 0


def test_checkpoint_round_trip(tmp_path):
    model = make_model()
    train_steps(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    prune(model, 0.6)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = make_model(seed=123)  # different init, all-ones masks
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    fresh.eval()
    for n, m in masking.get_masks(model).items():
        assert torch.equal(masking.get_masks(fresh)[n], m)
        assert torch.equal(masking.effective(fresh, n), masking.effective(model, n))
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(fresh(x), model(x))
    assert any(k.endswith("parametrizations.weight.0.mask") for k in model.state_dict())


def test_rewind_restores_exactly_and_keeps_zeros():
    model = make_model()
    init = rewinding.snapshot(model)
    train_steps(model, torch.optim.Adam(model.parameters(), lr=0.01))
    prune(model, 0.5)
    rewinding.restore(model, init)
    for n, m in masking.get_masks(model).items():
        key = n.rpartition(".")[0] + ".parametrizations.weight.original"
        w = masking.original(model, n)
        assert torch.equal(w[m == 1], init[key][m == 1])
        assert torch.count_nonzero(w[m == 0]) == 0
    # buffers (BatchNorm running statistics) rewind too
    bn = next(k for k in init if k.endswith("running_mean"))
    assert torch.equal(model.state_dict()[bn], init[bn])


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("target", [0.0, 0.2, 0.5, 0.9, 0.99])
def test_select_hits_target_and_never_revives(scope, target):
    model = make_model()
    masks = masking.get_masks(model)
    first = select(Random().scores(model, masks), masks, 0.1, scope)
    # scores that favour exactly the pruned entries must not bring them back
    adversarial = {n: (1 - m) * 1e6 + torch.rand(m.shape) for n, m in first.items()}
    new = select(adversarial, first, max(target, 0.1), scope)
    for n in new:
        assert torch.all(new[n][first[n] == 0] == 0), "a pruned entry was revived"
    if scope == "global":
        total = sum(m.numel() for m in new.values())
        pruned = sum(int((m == 0).sum()) for m in new.values())
        assert abs(pruned - round(max(target, 0.1) * total)) <= 1
    else:
        for m in new.values():
            assert abs(int((m == 0).sum()) - round(max(target, 0.1) * m.numel())) <= 1


def test_select_breaks_ties_deterministically():
    masks = {"a.weight": torch.ones(10), "b.weight": torch.ones(10)}
    scores = {"a.weight": torch.zeros(10), "b.weight": torch.zeros(10)}
    new = select(scores, masks, 0.25)
    assert new["a.weight"].tolist() == [0] * 5 + [1] * 5 and new["b.weight"].sum() == 10
    assert all(torch.equal(select(scores, masks, 0.25)[k], v) for k, v in new.items())


def test_select_rejects_bad_targets_and_scores():
    masks = {"a.weight": torch.tensor([0.0, 0.0, 1.0, 1.0])}
    with pytest.raises(PrunelabError, match=r"outside \[0, 1\)"):
        select({"a.weight": torch.rand(4)}, masks, 1.0)
    with pytest.raises(PrunelabError, match="below the current"):
        select({"a.weight": torch.rand(4)}, masks, 0.25)
    with pytest.raises(PrunelabError, match="NaN"):
        select({"a.weight": torch.tensor([1.0, float("nan"), 1.0, 1.0])}, masks, 0.5)


def test_random_criterion_is_seeded():
    model = make_model()
    masks = masking.get_masks(model)
    from prunelab.pruning.criteria import ScoringContext

    a = Random().scores(model, masks, context=ScoringContext(seed=3, round=1))
    b = Random().scores(copy.deepcopy(model), masks, context=ScoringContext(seed=3, round=1))
    c = Random().scores(model, masks, context=ScoringContext(seed=4, round=1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_prunable_patterns_and_parameter_counts():
    torch.manual_seed(0)
    model = ConvNet((1, 8, 8), 3, channels=[4, "M", 8], hidden=[16])
    names = masking.prunable_names(model, include=["*.weight"], exclude=["classifier.*"])
    assert names == ["features.0.weight", "features.3.weight"]
    masking.attach_masks(model, masking.prunable_names(model))
    total = sum(p.numel() for p in model.parameters())
    prune(model, 0.5)
    counts = masking.count_parameters(model)
    assert counts["parameters"] == total
    pruned = int(sum((m == 0).sum() for m in masking.get_masks(model).values()))
    assert counts["nonzero_parameters"] <= total - pruned


def test_lean_property_matches_parametrize_and_yields_to_it():
    """The masked tensor is read through a lean property (issue 6, P2); it must give parametrize's value and
    gradient, and hand over to parametrize's own getter under caching and fx tracing."""
    from torch.nn.utils import parametrize

    model = make_model()
    prune(model, 0.6)
    lin = model.get_submodule(masking.prunable_names(model)[-1].rpartition(".")[0])
    chain = lin.parametrizations.weight
    assert getattr(type(lin).weight.fget, "_prunelab_lean", False)
    lean = lin.weight
    slow = chain()  # parametrize's own evaluation of the chain
    assert torch.equal(lean, slow) and torch.equal(lean, chain.original * chain[0].mask)
    lean.sum().backward()
    assert torch.equal(chain.original.grad, chain[0].mask)  # d(sum(w * m))/dw = m: pruned entries get no gradient
    with parametrize.cached():
        assert lin.weight is lin.weight  # parametrize's cache, not a fresh product per access
    graph = torch.fx.symbolic_trace(lin).graph
    assert any(n.op == "call_module" and n.target == "parametrizations.weight" for n in graph.nodes)  # fx's view
    x = torch.randn(5, lin.in_features)
    assert torch.equal(torch.fx.symbolic_trace(lin)(x), lin(x))


def test_dense_mask_skips_the_multiply_and_every_mask_change_is_seen():
    """An all-ones mask reads ``original`` without the multiply (issue 16): same value and gradient bit for bit, and
    every way a mask changes (set_masks, in-place write, a view's write, ``.data =``, load_state_dict, a new buffer)
    is seen at the next access: a pruned entry is never read back as its stored value."""
    model = make_model()
    name = masking.prunable_names(model)[-1]
    lin = model.get_submodule(name.rpartition(".")[0])
    chain = lin.parametrizations.weight
    orig, mod = chain.original, chain[0]
    dense = lin.weight
    assert dense.grad_fn is not None and type(dense.grad_fn).__name__ != "MulBackward0"  # no multiply node
    assert torch.equal(dense, orig * mod.mask) and not isinstance(dense, nn.Parameter)
    dense.pow(2).sum().backward()
    assert torch.equal(orig.grad, 2 * orig.detach())
    orig.grad = None

    def zero_at_00() -> bool:
        return lin.weight[0, 0].item() == 0.0 and orig[0, 0].item() != 0.0

    with torch.no_grad():
        orig[0, 0] = 0.5  # a stored value that must not show through a pruned entry
    changes = {
        "set_masks": lambda m: masking.set_masks(model, {name: m}, zero_weights=False),
        "in place": lambda m: mod.mask.copy_(m),
        "through a view": lambda m: mod.mask.view(-1).__setitem__(0, 0.0),
        ".data =": lambda m: setattr(mod.mask, "data", m.clone()),
        "load_state_dict": lambda m: lin.load_state_dict({**lin.state_dict(), "parametrizations.weight.0.mask": m}),
        "new buffer": lambda m: mod.register_buffer("mask", m.clone()),
    }
    pruned = torch.ones_like(mod.mask)
    pruned[0, 0] = 0
    for how, change in changes.items():
        assert lin.weight[0, 0].item() == 0.5, how  # dense again before each change (cache is warm)
        change(pruned)
        assert zero_at_00(), how
        assert type(lin.weight.grad_fn).__name__ == "MulBackward0", how
        mod.mask.fill_(1.0)
