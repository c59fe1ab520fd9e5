"""Every criterion in conf/criterion: finite, deterministic scores for a seed; select hits the target; pruned
entries stay pruned over successive rounds. Plus criterion-specific values."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from prunelab.config.groups import config_groups
from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.magnitude_increase import MagnitudeIncrease
from prunelab.pruning.select import select
from tests.conftest import compose_cfg
from tests.test_masks import make_model, train_steps

CRITERIA = config_groups()["criterion"]


def batches(n: int = 3, size: int = 8):
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(16, 1, size, size, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(n)
    ]


@pytest.mark.parametrize("name", CRITERIA)
def test_criterion_contract(name):
    extra = ["criterion.fn=prunelab.pruning.importances.fpgm.fpgm"] if name == "group_score" else []  # its ??? key
    extra += ["criterion.protect=[1]"] if name == "fairprune" else []  # the classes it protects (no default)
    criterion = instantiate(compose_cfg([f"criterion={name}", *extra]).criterion)
    if getattr(criterion, "interactive", False):
        pytest.skip("human-in-the-loop criterion: covered by test_methods.py::test_human_ratings_loop")
    if criterion.structured:
        return check_structured(criterion)
    model = make_model()
    init = rewinding.snapshot(model)
    train_steps(model, torch.optim.Adam(model.parameters(), lr=0.01))
    previous = masking.get_masks(model)
    for round_, target in ((1, 0.5), (2, 0.75)):
        ctx = ScoringContext(round=round_, seed=0, initial_state=init)
        masks = masking.get_masks(model)
        kw = {"batches": batches() if criterion.needs_data else None, "context": ctx}
        scores = criterion.scores(model, masks, **kw)
        again = criterion.scores(model, masks, **kw)
        assert all(torch.isfinite(s).all() for s in scores.values())
        assert all(torch.equal(scores[k], again[k]) for k in scores), "scores are not deterministic"
        new = select(scores, masks, target, criterion.scope)
        masking.set_masks(model, new)
        for k in new:
            assert torch.all(new[k][previous[k] == 0] == 0)
        pruned = sum(int((m == 0).sum()) for m in new.values())
        total = sum(m.numel() for m in new.values())
        assert abs(pruned / total - target) <= len(new) / total
        previous = new


def test_magnitude_increase_values_and_needs_init():
    model = make_model()
    init = rewinding.snapshot(model)
    with torch.no_grad():
        w = masking.original(model, "features.0.weight")
        w.mul_(2.0)  # every |w| doubled: increase = |w_init|
    scores = MagnitudeIncrease().scores(model, masking.get_masks(model), context=ScoringContext(initial_state=init))
    expected = init["features.0.parametrizations.weight.original"].abs()
    assert torch.allclose(scores["features.0.weight"], expected)
    assert torch.count_nonzero(scores["classifier.0.weight"]) == 0  # untouched layer: no increase
    with pytest.raises(PrunelabError, match="initial weights"):
        MagnitudeIncrease().scores(model, masking.get_masks(model), context=ScoringContext())


def check_structured(criterion) -> None:
    from prunelab.pruning import units
    from tests.test_structured import structured_model

    model, groups = structured_model("convnet-bn")
    previous = units.alive_units(model, groups)
    total = sum(len(a) for a in previous.values())
    for round_, target in ((1, 0.3), (2, 0.6)):
        ctx = ScoringContext(round=round_, seed=0, groups=groups, extra={"num_classes": 3})
        kw = {"batches": batches(size=16) if criterion.needs_data else None, "context": ctx}
        masks = masking.get_masks(model, primary_only=True)
        scores = criterion.scores(model, masks, **kw)
        again = criterion.scores(model, masks, **{**kw, "batches": batches(size=16) if criterion.needs_data else None})
        assert set(scores) == {g.key for g in groups}
        assert all(torch.isfinite(s).all() and s.shape == (g.out_channels,) for g, s in zip(groups, scores.values()))
        assert all(torch.equal(scores[k], again[k]) for k in scores), "scores are not deterministic"
        alive = units.select_units(scores, units.alive_units(model, groups), target)
        masking.set_masks(model, units.group_masks(model, groups, alive))
        assert all(not (alive[k] & ~previous[k]).any() for k in alive)
        assert sum(int((~a).sum()) for a in alive.values()) == round(target * total)
        previous = alive
