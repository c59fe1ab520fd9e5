"""Population training (prunelab.population.engine): K members at once give exactly the K single runs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelab.data.digits import DigitsDataModule
from prunelab.errors import PrunelabError
from prunelab.models.convnets import ConvNet, LeNet5
from prunelab.models.mlp import MLP
from prunelab.population.engine import Population, member_batches, train_epoch
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria.magnitude import Magnitude
from prunelab.pruning.select import select


def masked_member(seed: int, shape, hidden=(32, 16), sparsity: float = 0.5) -> nn.Module:
    torch.manual_seed(seed)
    model = MLP(shape, 10, hidden)
    masking.attach_masks(model, masking.prunable_names(model))
    prune_layerwise(model, sparsity)
    return model


def prune_layerwise(model: nn.Module, target: float) -> None:
    masks = masking.get_masks(model)
    masking.set_masks(model, select(Magnitude().scores(model, masks), masks, target, scope="layer"))


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)


def sequential(model, x, y, batch, seed, epochs, loss, on_step=None):
    """The single run a member must equal: same batches, loss, optimizer, and mask updates at the same steps."""
    opt = sgd(model.parameters())
    step = 0
    for epoch in range(epochs):
        for idx in member_batches(len(y), batch, [seed], epoch):
            if on_step is not None:
                on_step(step, model, opt)
            opt.zero_grad(set_to_none=True)
            loss(model(x[idx[0]]), y[idx[0]]).backward()
            opt.step()
            step += 1
    return model


def digits():
    dm = DigitsDataModule(batch_size=64)
    dm.setup()
    return dm.x_train, dm.y_train, dm.input_shape


def test_members_equal_their_single_runs_bitwise_with_gradual_pruning():
    x, y, shape = digits()
    seeds = [3, 4, 5]
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    fresh = [masked_member(s, shape, sparsity=0.0) for s in seeds]
    targets = {5: 0.3, 15: 0.6, 25: 0.8}  # gradual: masks change inside training, momentum must not revive weights

    def single_update(step, model, opt):
        if step in targets:
            prune_layerwise(model, targets[step])
            masking.mask_optimizer_state(opt, model)

    singles = [sequential(copy.deepcopy(m), x, y, 64, s, 3, loss, single_update) for m, s in zip(fresh, seeds)]

    pop = Population([copy.deepcopy(m) for m in fresh])
    opt = sgd(pop.params.values())

    def pop_update(step):
        if step in targets:
            pop.update_masks(lambda k, member: prune_layerwise(member, targets[step]), opt)

    step = 0
    for epoch in range(3):
        step, _, _ = train_epoch(pop, opt, loss, x, y, 64, seeds, epoch, on_step=pop_update, step=step)
    members = pop.sync_to_members()
    for single, member in zip(singles, members):
        for (name, a), b in zip(single.state_dict().items(), member.state_dict().values()):
            assert torch.equal(a, b), name
        assert masking.sparsity_stats(member)["sparsity"] == pytest.approx(0.8, abs=0.01)
        for name, mask in masking.get_masks(member).items():
            assert not masking.original(member, name)[mask == 0].any()  # pruned storage stays exactly 0
    # the members really differ from each other (own seeds, own data order)
    first, second = (masking.original(m, "classifier.weight") for m in members[:2])
    assert not torch.equal(first, second)


def test_lenet300_shapes_are_bitwise_equal_too():
    """The 100 -> 10 layer is where a batched bmm would differ from mm in the last bits."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 1, 28, 28, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    fresh = [masked_member(s, (1, 28, 28), hidden=(300, 100)) for s in (0, 1)]
    loss = nn.CrossEntropyLoss()
    singles = [sequential(copy.deepcopy(m), x, y, 128, s, 1, loss) for m, s in zip(fresh, (0, 1))]
    pop = Population([copy.deepcopy(m) for m in fresh])
    train_epoch(pop, sgd(pop.params.values()), loss, x, y, 128, [0, 1], 0)
    for single, member in zip(singles, pop.sync_to_members()):
        assert all(torch.equal(a, b) for a, b in zip(single.parameters(), member.parameters()))


def test_member_batches_are_the_single_run_batches():
    from prunelab.data.loader import IndexBatchSampler

    batches = member_batches(100, 32, [7, 8], epoch=2)
    for k, seed in enumerate((7, 8)):
        sampler = IndexBatchSampler(100, 32, shuffle=True, seed=seed)
        sampler.set_epoch(2)
        assert [b[k].tolist() for b in batches] == [b.tolist() for b in sampler]


def test_conv_members_are_close_not_bitwise():
    """Convs run under vmap (a grouped conv): equal up to rounding, documented as such."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 8, 8, generator=gen), torch.randint(0, 10, (96,), generator=gen)
    fresh = []
    for s in (0, 1):
        torch.manual_seed(s)
        fresh.append(LeNet5((1, 8, 8), 10))
    loss = nn.CrossEntropyLoss()
    singles = [sequential(copy.deepcopy(m), x, y, 32, s, 1, loss) for m, s in zip(fresh, (0, 1))]
    pop = Population([copy.deepcopy(m) for m in fresh])
    train_epoch(pop, sgd(pop.params.values()), loss, x, y, 32, [0, 1], 0)
    for single, member in zip(singles, pop.sync_to_members()):
        for a, b in zip(single.parameters(), member.parameters()):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_unsupported_models_and_optimizers_fail_clearly():
    torch.manual_seed(0)
    bn = ConvNet((1, 8, 8), 3, channels=[4], hidden=[8], batch_norm=True)
    with pytest.raises(PrunelabError, match="BatchNorm"):
        Population([bn, copy.deepcopy(bn)])
    with pytest.raises(PrunelabError, match="at least one member"):
        Population([])
    pop = Population([MLP((1, 8, 8), 10, (8,)) for _ in range(2)])
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 10, (20,))
    with pytest.raises(PrunelabError, match="element-wise"):
        train_epoch(pop, torch.optim.LBFGS(pop.params.values()), nn.CrossEntropyLoss(), x, y, 10, [0, 1], 0)


# -- population=K jobs (prunelab.population.run) -------------------------------------------------------------------
HOOKER_TINY = [
    "experiment=hooker_fashion",
    "data=digits",
    "schedule.final_sparsity=0.0,0.8",
    "schedule.begin_step=2",
    "schedule.end_step=20",
    "schedule.frequency=2",
    "trainer.max_epochs=2",
    "quantize=dynamic_int8",
    "logger=csv",
]
TIMING = {"fit_seconds", "round_seconds", "best_checkpoint", "test_seconds_cpu"}


def _same_files(a, b):
    import json

    import numpy as np

    for sub in ("rounds/r00", "rounds/r00/quant/dynamic_int8"):
        pa, pb = np.load(a / sub / "predictions.npz"), np.load(b / sub / "predictions.npz")
        assert all(np.array_equal(pa[k], pb[k]) for k in pa.files), sub
        ja, jb = json.loads((a / sub / "metrics.json").read_text()), json.loads((b / sub / "metrics.json").read_text())
        same = TIMING | {"training_loop"}  # which loop trained it: Lightning's step (lean) or the batched members
        assert {k: v for k, v in ja.items() if k not in same} == {k: v for k, v in jb.items() if k not in same}
        if sub == "rounds/r00":
            assert (ja["training_loop"], jb["training_loop"]) == ("lean", "population")
    ma = torch.load(a / "rounds/r00/model.pt", weights_only=True)
    mb = torch.load(b / "rounds/r00/model.pt", weights_only=True)
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


def test_population_job_writes_the_single_runs_bitwise(tmp_path):
    """population=2 trains seeds 0 and 1 at once; every member folder equals the single run of its seed (weights,
    masks, predictions, quantized rows, metrics), sits at the same run id, and the report reads it the same."""
    import csv

    from tests.conftest import cli

    single = cli(["-m", *HOOKER_TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'single'}"], tmp_path)
    assert single.returncode == 0, single.stderr[-2000:]
    pop = cli(["-m", *HOOKER_TINY, "seed=0", "population=2", f"hydra.sweep.dir={tmp_path / 'pop'}"], tmp_path)
    assert pop.returncode == 0, pop.stderr[-2000:]
    singles = {p.parent.name: p.parent for p in (tmp_path / "single").glob("*/summary.json")}
    members = {p.parent.name: p.parent for p in (tmp_path / "pop").glob("*/members/*/summary.json")}
    assert len(singles) == 4 and members.keys() == singles.keys()  # same run ids: same configs
    for rid, folder in singles.items():
        _same_files(folder, members[rid])
        with open(members[rid] / "csv" / "metrics.csv") as f:
            epochs = list(csv.DictReader(f))
        assert sum(1 for e in epochs if e.get("train/loss")) == 2  # per-epoch training log, as a Lightning fit
    for name in ("single", "pop"):
        assert cli(["report", str(tmp_path / name), "--out", str(tmp_path / f"rep_{name}")], tmp_path).returncode == 0
    hooker = [(tmp_path / f"rep_{n}" / "hooker.csv").read_text() for n in ("single", "pop")]
    assert hooker[0] == hooker[1]
    again = cli(["-m", *HOOKER_TINY, "seed=0", "population=2", f"hydra.sweep.dir={tmp_path / 'pop'}"], tmp_path)
    assert again.returncode == 0 and again.stdout.count("population already complete") == 2


def test_population_rejects_what_it_cannot_do_before_writing_members(tmp_path):
    from tests.conftest import cli

    proc = cli(["population=2", "logger=none"], tmp_path)  # the default schedule has 6 rounds
    assert proc.returncode == 2 and "population: population training does not support 6-round" in proc.stderr
    assert not list(tmp_path.rglob("members"))
