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
