"""Class-conditional criteria (issue 30, item 2): class_count counts the classes that need each filter on a model
built so that the answer is known; per_class_taylor combines per-class Taylor scores as documented."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.class_aware import ClassCount, PerClassTaylor
from prunelab.pruning.criteria.gradients import TaylorFilter
from tests.conftest import cli


class Toy(nn.Module):
    """Filter k < 3 reads only input channel k, filter 3 reads every channel; class c lights only channel c."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)  # the same head (weights and bias) in every instance
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            for k in range(3):
                self.conv.weight[k, k] = 1.0
            self.conv.weight[3] = 0.5
        self.head = nn.Linear(4, 3)
        nn.init.normal_(self.head.weight)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def _data(n=24):
    y = torch.arange(n) % 3
    x = torch.zeros(n, 3, 4, 4)
    for i, c in enumerate(y.tolist()):
        x[i, c] = 1.0 + torch.rand(4, 4)
    return [(x[:12], y[:12]), (x[12:], y[12:])]


GROUPS = [SimpleNamespace(key="conv", producers=["conv"], batchnorms=[], out_channels=4)]


def _context():
    return ScoringContext(groups=GROUPS, extra={"num_classes": 3})


def test_class_count_counts_the_classes_that_need_each_filter():
    scores = ClassCount(num_batches=2).scores(Toy(), {}, iter(_data()), _context())
    assert scores["conv"].tolist() == [1.0, 1.0, 1.0, 3.0]
    only = ClassCount(num_batches=2, classes=[0, 2]).scores(Toy(), {}, iter(_data()), _context())
    assert only["conv"].tolist() == [1.0, 0.0, 1.0, 2.0]  # criterion.classes: scored on those classes alone


@pytest.mark.parametrize("reduce", ["max", "mean", "weighted"])
def test_per_class_taylor_combines_each_class_normalised_scores(reduce):
    data = _data()
    got = PerClassTaylor(num_batches=2, reduce=reduce).scores(Toy(), {}, iter(data), _context())["conv"]
    per = []
    for c in range(3):
        part = [(x[y == c], y[y == c]) for x, y in data]
        raw = TaylorFilter(num_batches=10).scores(Toy(), {}, iter(part), _context())["conv"]
        per.append(raw / raw.mean())
    stacked = torch.stack(per)
    expected = {"max": stacked.max(0).values, "mean": stacked.mean(0), "weighted": stacked.mean(0)}[reduce]
    assert torch.allclose(got, expected, rtol=1e-5)  # equal class counts: inverse-share weights are uniform
    assert int(got.argmax()) == 3 or reduce == "max"


def test_criterion_classes_naming_an_unknown_class_is_refused_before_training(tmp_path):
    args = ["logger=none", "criterion=class_count", "criterion.classes=[3,12]", "model=cnn3", "schedule.rounds=1"]
    proc = cli(args, tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("prunelab: error: criterion.classes: 12 is not a class index")
    assert not list(tmp_path.rglob("r00"))


def test_fairprune_with_beta_0_ranks_as_half_w2_times_the_protected_fisher():
    from prunelab.pruning.criteria.fairprune import FairPrune, fisher_diagonal

    data = _data()
    model = Toy()
    masks = {"conv.weight": torch.ones(4, 3, 1, 1), "head.weight": torch.ones(3, 4)}
    got = FairPrune(protect=[1], beta=0.0, num_batches=2).scores(model, masks, iter(data), _context())
    fisher = {n: torch.zeros_like(m, dtype=torch.float64) for n, m in masks.items()}
    for x, y in data:  # the protected class's examples of each batch
        for n, v in fisher_diagonal(model, list(masks), x[y == 1], y[y == 1]).items():
            fisher[n] += v / 2
    for n in masks:
        w = model.get_parameter(n).detach().double()
        assert torch.allclose(got[n].double(), 0.5 * w**2 * fisher[n], rtol=1e-4, atol=1e-12)
    both = FairPrune(protect=[1], beta=1.0, num_batches=2).scores(model, masks, iter(data), _context())
    assert not torch.allclose(both["head.weight"], got["head.weight"])  # the other classes' curvature counts


def test_fisher_diagonal_is_the_mean_squared_per_example_gradient():
    from prunelab.pruning.criteria.fairprune import fisher_diagonal

    model = Toy()
    x, y = _data()[0]
    got = fisher_diagonal(model, ["head.weight"], x[:3], y[:3])["head.weight"]
    grads = []
    for i in range(3):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(model.head.weight.grad.double().pow(2))
    assert torch.allclose(got, sum(grads) / 3)


@pytest.mark.parametrize("protect", ["null", "[0,1,2,3,4,5,6,7,8,9]"])
def test_fairprune_with_one_class_set_is_refused_before_training(tmp_path, protect):
    proc = cli(["logger=none", "criterion=fairprune", f"criterion.protect={protect}", "schedule.rounds=1"], tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("prunelab: error: criterion.protect: names one class set")
    assert not list(tmp_path.rglob("r00"))


def test_fairgrape_greedy_keeps_each_class_share_at_its_target_within_one_step():
    import numpy as np

    from prunelab.pruning.criteria.fairgrape import greedy_order

    rng = np.random.default_rng(0)
    imp = rng.random((3, 400)) ** 3 * np.array([[1.0], [0.2], [3.0]])  # three classes on different scales
    target = imp.sum(1) / imp.sum()
    order = greedy_order(imp)
    assert sorted(order.tolist()) == list(range(400))  # every weight ranked once
    step = imp.max()
    for k in (40, 120, 250, 400):
        kept = imp[:, order[:k]].sum(1)
        share = kept / kept.sum()
        assert np.abs(share - target).max() <= 2 * step / kept.sum(), k
    by_magnitude = np.argsort(-imp.sum(0))[:40]  # what a class-blind ranking keeps first is far from the targets
    blind = imp[:, by_magnitude].sum(1)
    assert np.abs(blind / blind.sum() - target).max() > 2 * step / blind.sum()


def test_fairgrape_scores_rank_alive_weights_and_leave_pruned_ones_last():
    from prunelab.pruning.criteria.fairgrape import FairGRAPE

    masks = {"conv.weight": torch.ones(4, 3, 1, 1), "head.weight": torch.ones(3, 4)}
    masks["head.weight"][0, 0] = 0
    scores = FairGRAPE(num_batches=2).scores(Toy(), masks, iter(_data()), _context())
    head = scores["head.weight"].flatten()
    assert float(head[0]) == -1.0 and sorted(head[1:].tolist()) == [float(v) for v in range(1, 12)]


def test_rank_stability_is_a_spearman_correlation():
    from prunelab.pruning.criteria.class_aware import rank_stability

    a = {"x": torch.tensor([0.1, 0.5, 0.3]), "y": torch.tensor([[2.0, 0.0]])}
    assert rank_stability(a, a) == pytest.approx(1.0)
    flipped = {k: -v for k, v in a.items()}
    assert rank_stability(a, flipped) == pytest.approx(-1.0)
    b = {"x": torch.tensor([0.1, 0.3, 0.5]), "y": torch.tensor([[2.0, 0.0]])}  # two neighbours swapped
    assert rank_stability(a, b) == pytest.approx(1 - 6 * 2 / (5 * 24))


def test_per_class_snip_means_each_class_normalised_snip_scores():
    from prunelab.pruning.criteria.class_aware import PerClassSNIP
    from prunelab.pruning.criteria.gradients import SNIP

    data = _data()
    masks = {"conv.weight": torch.ones(4, 3, 1, 1), "head.weight": torch.ones(3, 4)}
    crit = PerClassSNIP(num_batches=2, reduce="mean")
    got = crit.scores(Toy(), masks, iter(data), _context())
    per = []
    for c in range(3):
        part = [(x[y == c], y[y == c]) for x, y in data]
        raw = SNIP(num_batches=2).scores(Toy(), masks, iter(part), _context())
        scale = torch.cat([v.flatten().double() for v in raw.values()]).mean()
        per.append({k: v.double() / scale for k, v in raw.items()})
    for k in masks:
        assert torch.allclose(got[k].double(), sum(p[k] for p in per) / 3, rtol=1e-5)
    assert -1.0 <= crit.last_stats["rank_stability"] <= 1.0


def test_a_per_class_criterion_records_its_ranking_stability(tmp_path):
    import json

    run = tmp_path / "run"
    args = ["logger=none", "criterion=per_class_snip", "schedule.rounds=1", "trainer.max_epochs=1"]
    proc = cli([*args, f"hydra.run.dir={run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    stability = json.loads((run / "rounds" / "r01" / "criterion.json").read_text())["rank_stability"]
    assert rows[1]["criterion/rank_stability"] == stability and -1 <= stability <= 1
    assert "criterion/rank_stability" not in rows[0]
