"""Framework overhead: one MNIST training epoch in prunelab vs a bare PyTorch loop on the same tensors.

Both sides train LeNet-300-100 with Adam on the same in-memory MNIST tensors, batch size and batch order.
- bare: a plain ``nn.Module`` (no masks), ``for idx in batches: step``; the floor.
- bare+masks: the same loop on the masked model (isolates the parametrization's cost).
- prunelab: ``Trainer.fit`` for one epoch of a round as ``prunelab.run`` builds it (ClassifierModule,
  PruningCallback, ModelCheckpoint, CSV logger), validation off so both sides do the same work; the Trainer's
  construction and fit setup are inside the timing.
- prunelab+val: the same with the per-epoch validation pass (10% of train) and its per-class metrics.
Reported: median seconds over ``--reps`` interleaved repetitions and the throughput ratio bare / prunelab.

    python -m benchmarks.epoch_overhead [--reps 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from prunelab.data.mnist import MNISTDataModule
from prunelab.models.mlp import MLP
from prunelab.pruning import masks as M


def data_dir() -> str:
    return os.environ.get("PRUNELAB_DATA_DIR", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def bare_epoch(dm: MNISTDataModule, masked: bool) -> float:
    torch.manual_seed(0)
    model = MLP(dm.input_shape, dm.num_classes, (300, 100))
    if masked:
        M.attach_masks(model, M.prunable_names(model))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    start = time.perf_counter()
    model.train()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def prunelab_epoch(dm: MNISTDataModule, validate: bool) -> float:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from prunelab.config import conf_dir, register_resolvers
    from prunelab.run import prepare, run_round

    register_resolvers()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=mnist",
                "model=lenet300",
                "logger=csv",
                "trainer.max_epochs=1",
                f"data.batch_size={dm.batch_size}",
            ],
        )
        with open_dict(cfg):
            cfg.trainer.enable_progress_bar = False
            cfg.logger.csv.save_dir = tmp
            cfg.data.root = data_dir()
            if not validate:
                cfg.trainer.limit_val_batches = 0
                cfg.monitor.metric = None
        ctx = prepare(cfg, Path(tmp))
        ctx["dm"] = dm  # the same tensors as the bare loop
        from prunelab.run import build_loggers

        ctx["loggers"] = build_loggers(cfg, Path(tmp))
        return run_round(ctx, 0)["fit_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args([] if __name__ != "__main__" else None)
    dm = MNISTDataModule(root=data_dir(), batch_size=args.batch_size)
    dm.setup()
    torch.set_num_threads(torch.get_num_threads())
    runs: dict[str, list[float]] = {"bare": [], "bare+masks": [], "prunelab": [], "prunelab+val": []}
    bare_epoch(dm, False)  # warm-up (allocator, kernels)
    for _ in range(args.reps):
        runs["bare"].append(bare_epoch(dm, False))
        runs["bare+masks"].append(bare_epoch(dm, True))
        runs["prunelab"].append(prunelab_epoch(dm, validate=False))
        runs["prunelab+val"].append(prunelab_epoch(dm, validate=True))
    med = {k: statistics.median(v) for k, v in runs.items()}
    steps = len(dm.train_dataloader())
    print(
        f"MNIST LeNet-300-100, batch {args.batch_size}, {steps} steps/epoch, {torch.get_num_threads()} threads, "
        f"median of {args.reps}"
    )
    for k, v in med.items():
        print(f"  {k:13s} {v:7.3f} s/epoch   throughput ratio bare/{k} = {med['bare'] / v:5.3f}")


if __name__ == "__main__":
    main()
