"""P6 populations: K seeds of LeNet-300-100 trained at once (``prunelab.population.engine``) against K sequential runs.

Fashion-MNIST tensors in memory, batch 128, SGD (momentum 0.9, Nesterov, weight decay 1e-4, as the Hooker
experiment), prunelab's masks attached (half the weights of every layer pruned by magnitude, as a mid-level
population member). Each member k has seed k: its own initialisation and its own data order.
- sequential: K single-model loops, one after the other (the same masked modules, batches and optimizer);
- population: one stacked, vmapped step per batch for all K members.
Reported: median seconds per epoch of all K members, the speedup (target >= 3x), and how far each member is from
its sequential run after the epoch (largest weight difference; agreement of test-set predictions).
The bound: ``torch.profiler`` over ``--profile-steps`` sequential steps gives the share of time spent inside the
matrix-multiply kernels (``aten::mm``/``addmm``/``bmm``/``baddbmm``). Members stay bitwise equal to their single runs
only if each keeps its own GEMMs (a batched ``bmm`` rounds differently), so that time cannot shrink, and
1 / share is the largest speedup any stacking can give on this machine.

    python -m benchmarks.populations [--reps 3] [--k 5]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from benchmarks.common import data_dir, interleaved, print_table, verdict
from prunelab.data.mnist import FashionMNISTDataModule
from prunelab.models.mlp import MLP
from prunelab.population.engine import Population, member_batches, train_epoch
from prunelab.pruning import masks as masking
from prunelab.pruning.select import select
from prunelab.training import fastpaths


def member(seed: int, shape, classes: int) -> nn.Module:
    torch.manual_seed(seed)
    model = MLP(shape, classes, (300, 100))
    names = masking.prunable_names(model)
    fastpaths.install_mask_fast_path()  # as runs build their models
    masking.attach_masks(model, names)
    scores = {n: masking.effective(model, n).detach().abs() for n in names}
    masking.set_masks(model, select(scores, masking.get_masks(model), 0.5, scope="layer"))
    return model


def optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile-steps", type=int, default=40)
    args = parser.parse_args(argv)
    dm = FashionMNISTDataModule(root=data_dir(), batch_size=args.batch_size)
    dm.setup()
    x, y = dm.x_train, dm.y_train
    seeds = list(range(args.k))
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    fresh = [member(s, dm.input_shape, dm.num_classes) for s in seeds]
    state: dict[str, list[nn.Module]] = {}

    def sequential() -> None:
        models = [copy.deepcopy(m) for m in fresh]
        for model, s in zip(models, seeds):
            opt = optimizer(model.parameters())
            for idx in member_batches(len(y), args.batch_size, [s], epoch=0):
                opt.zero_grad(set_to_none=True)
                loss(model(x[idx[0]]), y[idx[0]]).backward()
                opt.step()
        state["sequential"] = models

    def population() -> None:
        pop = Population([copy.deepcopy(m) for m in fresh])
        train_epoch(pop, optimizer(pop.params.values()), loss, x, y, args.batch_size, seeds, epoch=0)
        state["population"] = pop.sync_to_members()

    med = interleaved({"sequential": sequential, "population": population}, args.reps, warmup=0)
    share = gemm_share(copy.deepcopy(fresh[0]), x, y, args.batch_size, loss, args.profile_steps)
    speedup = med["sequential"] / med["population"]
    diffs, agree = [], []
    with torch.no_grad():
        for a, b in zip(state["sequential"], state["population"]):
            diffs.append(max(float((pa - pb).abs().max()) for pa, pb in zip(a.parameters(), b.parameters())))
            agree.append(float((a(dm.x_test).argmax(1) == b(dm.x_test).argmax(1)).float().mean()))
    print_table(
        f"P6 populations: {args.k} x LeNet-300-100 (50% masked), Fashion-MNIST, 1 epoch of "
        f"{len(member_batches(len(y), args.batch_size, [0], 0))} steps, {torch.get_num_threads()} threads, "
        f"median of {args.reps} (target >= 3x)",
        ["variant", "s / epoch (all members)", "speedup", "target"],
        [
            ["K sequential runs", med["sequential"], 1.0, ""],
            ["population (stacked)", med["population"], speedup, verdict(speedup, 3.0)],
            [f"bound: 1 / GEMM share of a sequential step ({share:.0%})", "", 1 / share, ""],
        ],
    )
    print_table(
        "P6 members against their sequential runs after the epoch",
        ["member (seed)", "max |weight diff|", "test predictions identical"],
        [[s, f"{d:.2e}", f"{a:.4f}"] for s, d, a in zip(seeds, diffs, agree)],
    )
    return [{"speedup": speedup, "gemm_share": share, "max_weight_diff": max(diffs), "min_agreement": min(agree)}]


def gemm_share(model: nn.Module, x, y, batch_size: int, loss, steps: int) -> float:
    """Share of a sequential training step's wall time spent inside matrix-multiply kernels: the kernels' time
    from torch.profiler over the same steps, divided by their wall time measured without it."""
    from torch.profiler import ProfilerActivity, profile

    opt = optimizer(model.parameters())
    batches = member_batches(len(y), batch_size, [0], epoch=0)[: steps + 5]

    def step(idx) -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(x[idx[0]]), y[idx[0]]).backward()
        opt.step()

    for idx in batches[:5]:  # warm-up
        step(idx)
    start = time.perf_counter()  # wall time without the profiler (it adds a few microseconds to every op)
    for idx in batches[5:]:
        step(idx)
    wall = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for idx in batches[5:]:
            step(idx)
    gemm_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS)
    return gemm_us / 1e6 / wall


GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


if __name__ == "__main__":
    main()
