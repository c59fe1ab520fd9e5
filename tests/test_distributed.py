"""Data-dependent criteria under DDP: two CPU processes on the gloo backend, each with its own shard of the batches,
reduce their statistics so both compute the same scores and masks, equal to one process scoring the union."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from prunelab.errors import PrunelabError
from prunelab.pruning import distributed, units
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.activations import ActivationEnergy
from prunelab.pruning.criteria.gradients import SNIP, TaylorFilter
from prunelab.pruning.criteria.pls_vip import PLSVIP
from prunelab.pruning.select import select

WORLD = 2


def _shards() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Four batches of 8 (16x16 images, 3 classes); rank r gets batches r and r + 2 (uneven data, same count)."""
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 1, 16, 16, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(4)]
    return [data[r::WORLD] for r in range(WORLD)]


def _criteria(per_rank: int = 1) -> dict:
    """The data-dependent criteria; ``per_rank`` scales their sample budget (it is read per rank)."""
    return {
        "taylor_filter": TaylorFilter(num_batches=2 * per_rank),
        "snip": SNIP(num_batches=2 * per_rank),
        "activation_energy": ActivationEnergy(num_samples=16 * per_rank),
        "pls_vip": PLSVIP(num_samples=16 * per_rank),
    }


def _score_all(criteria: dict, batches: list) -> dict[str, dict]:
    """Scores and masks of every criterion, each on a fresh copy of the same (seeded) model."""
    from tests.test_structured import structured_model

    out = {}
    for name, criterion in criteria.items():
        model, groups = structured_model("convnet-bn")
        ctx = ScoringContext(round=1, seed=0, groups=groups, extra={"num_classes": 3})
        masks = masking.get_masks(model, primary_only=True)
        scores = criterion.scores(model, masks, batches=iter(batches), context=ctx)
        if criterion.structured:
            new = units.group_masks(model, groups, units.select_units(scores, units.alive_units(model, groups), 0.4))
        else:
            new = select(scores, masks, 0.6, scope="global")
        masking.set_masks(model, new)
        distributed.check_identical(masking.get_masks(model))
        out[name] = {"scores": scores, "masks": masking.get_masks(model)}
    return out


def _worker(rank: int, port: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        shard = _shards()[rank]
        result = _score_all(_criteria(), shard)
        try:  # masks that differ between ranks are caught
            distributed.check_identical({"w": torch.tensor([float(rank), 1.0])})
            result["mismatch_caught"] = False
        except PrunelabError:
            result["mismatch_caught"] = True
        torch.save(result, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(folder)), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(_criteria()))
def test_ranks_prune_identically_and_as_one_process_on_the_union(ranks, name):
    r0, r1 = ranks[0][name], ranks[1][name]
    for key in r0["masks"]:
        assert torch.equal(r0["masks"][key], r1["masks"][key]), key
    for key in r0["scores"]:
        assert torch.equal(r0["scores"][key], r1["scores"][key]), key
    # one process on the union of the shards (rank 0's batches, then rank 1's), with twice the per-rank budget
    shards = _shards()
    single = _score_all({name: _criteria(per_rank=WORLD)[name]}, [*shards[0], *shards[1]])[name]
    for key in r0["scores"]:
        assert torch.allclose(r0["scores"][key], single["scores"][key], rtol=1e-4, atol=1e-6), key
    for key in r0["masks"]:
        assert torch.equal(r0["masks"][key], single["masks"][key]), key
    # and the reduction matters: rank 0's shard alone scores differently
    alone = _score_all({name: _criteria()[name]}, shards[0])[name]
    assert any(not torch.allclose(alone["scores"][k], single["scores"][k]) for k in single["scores"])


def test_mismatched_masks_are_caught(ranks):
    assert ranks[0]["mismatch_caught"] and ranks[1]["mismatch_caught"]


def test_helpers_are_identities_without_a_process_group():
    t = torch.arange(6.0).view(3, 2)
    assert distributed.world_size() == 1 and distributed.all_sum(t) is t and distributed.all_cat(t) is t
    distributed.check_identical({"w": t})


@pytest.mark.slow
def test_ddp_run_on_two_cpu_processes_shards_training_and_prunes_identically(tmp_path):
    """trainer=ddp_cpu end to end: 2 gloo ranks, a data-dependent structured criterion (Taylor). Each rank trains
    on half of every epoch; the callback's cross-rank mask check passes at every pruning step; rank 0 writes."""
    from tests.conftest import cli

    args = ["model=lenet5", "criterion=taylor_filter", "schedule.rounds=1", "trainer.max_epochs=2", "logger=none"]
    ddp = cli(["trainer=ddp_cpu", *args, f"hydra.run.dir={tmp_path / 'ddp'}"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "ranks computed different masks" not in ddp.stderr
    assert ddp.stdout.count("run folder:") == 1 and ddp.stdout.count("next: prunelab report") == 1  # rank 0 only
    one = cli([*args, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]

    def steps(run: Path) -> int:
        ckpt = torch.load(run / "rounds" / "r00" / "checkpoints" / "last.ckpt", weights_only=True)
        return int(ckpt["global_step"])

    assert steps(tmp_path / "ddp") * 2 == pytest.approx(steps(tmp_path / "one"), abs=2 * 2)  # half the batches
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "results.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["units_removed_share"] > 0
    masks = torch.load(tmp_path / "ddp" / "rounds" / "r01" / "masks.pt", weights_only=True)
    assert any(not bool(m.all()) for m in masks.values())
