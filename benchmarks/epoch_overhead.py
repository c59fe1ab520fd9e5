"""P1 framework overhead: MNIST training in prunelab vs a bare PyTorch loop on the same tensors.

Both sides train the same model (LeNet-300-100: a full epoch; Conv-4: its first ``--conv-steps`` steps, the
model being ~100x costlier per step) with Adam on the same in-memory MNIST tensors, batch size and batch order.
- bare: a plain ``nn.Module`` (no masks), ``for idx in batches: step``; the floor.
- bare+val: the bare loop, then the validation forward pass (10% of train, eval batches of 1000) and the per-class
  figures prunelab logs, in plain tensor ops (confusion matrix by ``bincount``, AUROC by one sort per class); the
  fair baseline of a prunelab round, which validates every epoch.
- bare+masks: the same loop on the masked model (isolates the parametrization's cost).
- prunelab: ``Trainer.fit`` for one epoch of a round as ``prunelab.runner`` builds it (ClassifierModule,
  PruningCallback, ModelCheckpoint, CSV logger, the lean training loop of ``prunelab.training.internals``), validation
  off so both sides do the same work; the fit setup is inside the timing. A variant runs the same round with
  Lightning's own training loop (``training_loop=lightning``). Progress bar off, except in two variants that show what a
  redraw per step costs (Lightning's default) against prunelab's default, one redraw per 25 steps.
- prunelab+val: the same with the per-epoch validation pass (10% of train) and its per-class metrics, compared with
  bare+val.
- interleaved: the prunelab round with a bare loop's step run after each of its steps (a callback's
  ``on_train_batch_end``: the bare loop's own batch, model and Adam; with validation, the bare validation pass and
  its per-class figures after the last step), so both see the same CPU speed at millisecond distance. "Whole fit":
  the bare loop's time over the rest of ``Trainer.fit``'s time (setup, steps, validation, checkpoints, teardown);
  "the steps alone": the bare steps' time over the prunelab loop's time between the callback's calls (fetch, hooks,
  step, bookkeeping). Far less noisy than the back-to-back epochs; its control runs two bare loops interleaved the
  same way (expected 1.0).
- Lightning floor: the smallest LightningModule (training_step returns the loss; automatic optimization, and a
  manual-optimization variant) on the unmasked model, Trainer with no logger, checkpoint, progress bar or
  validation. What any Lightning-based loop costs on this machine, before prunelab adds anything.
Reported: ms per step (median over runs) and the throughput ratio baseline / variant, the baseline being bare+val
for the variant with validation and the bare loop for the others. Each run of a variant follows a run of its
baseline, and the ratio is the median (range alongside) of these back-to-back pairs: this CPU's speed drifts by
~30% over seconds (same process CPU time, no steal), which ratios of separately taken medians do not cancel.
Targets (issue 16): prunelab rows >= 0.85 of their baseline on LeNet-300-100, >= 0.90 on Conv-4.

    python -m benchmarks.epoch_overhead [--reps 9] [--batch-size 128] [--models lenet300 conv4] [--conv-steps 6]
    python -m benchmarks.epoch_overhead --profile   # where a step's time goes: prunelab round vs Lightning floor
    python -m benchmarks.epoch_overhead --checkpoints   # an epoch's checkpoint writes: RoundCheckpoint vs Lightning's
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import data_dir, print_table, verdict
from prunelab.data.mnist import MNISTDataModule
from prunelab.models.convnets import ConvNet
from prunelab.models.mlp import MLP
from prunelab.pruning import masks as masking
from prunelab.training import fastpaths

VAL_BASE = "bare loop + validation, per-class metrics (plain tensor ops)"
INTERLEAVED = "prunelab round, no validation, interleaved with the bare loop step by step (whole fit)"
INTERLEAVED_VAL = "prunelab round + validation, interleaved with the bare loop + validation (whole fit)"
PER_STEP = ": the steps alone"
INTERLEAVED_CONTROL = "control: bare loop interleaved with a second bare loop (expected 1.0)"


def build(name: str, dm: MNISTDataModule) -> nn.Module:
    if name == "lenet300":
        return MLP(dm.input_shape, dm.num_classes, (300, 100))
    return ConvNet(dm.input_shape, dm.num_classes, channels=[64, 64, "M", 128, 128, "M"], hidden=[256, 256])


def per_class_figures(probs: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a hand-written loop computes for per-class eyes, in plain tensor ops: a confusion matrix by ``bincount``
    (recall, precision, specificity, F1, TP/FP/TN/FN) and one-vs-rest AUROC by one sort per class (trapezoids
    over distinct thresholds)."""
    c = probs.shape[1]
    cm = torch.bincount(y * c + probs.argmax(1), minlength=c * c).reshape(c, c).double()
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    fp, fn = predicted - tp, support - tp
    tn = cm.sum() - tp - fp - fn
    recall, precision = tp / support.clamp_min(1), tp / predicted.clamp_min(1)
    auroc = torch.empty(c, dtype=torch.float64)
    for k in range(c):
        scores, order = torch.sort(probs[:, k], descending=True)
        pos = (y[order] == k).double()
        tps, fps = pos.cumsum(0), (1 - pos).cumsum(0)
        last = torch.ones_like(pos, dtype=torch.bool)
        last[:-1] = scores[:-1] != scores[1:]
        tpr = torch.cat([tps.new_zeros(1), tps[last]]) / tps[-1]
        fpr = torch.cat([fps.new_zeros(1), fps[last]]) / fps[-1]
        auroc[k] = torch.trapezoid(tpr, fpr)
    return {
        "recall": recall,
        "precision": precision,
        "specificity": tn / (tn + fp).clamp_min(1),
        "f1": 2 * tp / (2 * tp + fp + fn).clamp_min(1),
        "auroc": auroc,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "acc": cm.trace() / cm.sum(),
    }


@torch.no_grad()
def bare_validation(model: nn.Module, dm: MNISTDataModule) -> dict[str, torch.Tensor]:
    model.eval()
    probs = torch.cat([torch.softmax(model(x), 1) for x, _ in dm.val_dataloader()])
    model.train()
    return per_class_figures(probs, dm.y_val)


def bare_epoch(
    dm: MNISTDataModule,
    masked: bool,
    model_name: str = "lenet300",
    steps: int | None = None,
    validate: bool = False,
) -> float:
    torch.manual_seed(0)
    model = build(model_name, dm)
    if masked:
        fastpaths.install_mask_fast_path()  # as runs build their models
        masking.attach_masks(model, masking.prunable_names(model))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    start = time.perf_counter()
    model.train()
    for i, (x, y) in enumerate(loader):
        if steps is not None and i >= steps:
            break
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    if validate:
        bare_validation(model, dm)
    return time.perf_counter() - start


def minimal_module(model: nn.Module, manual: bool):
    import lightning.pytorch as pl

    class Minimal(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.automatic_optimization = model, not manual

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.model(x), y)
            if self.automatic_optimization:
                return loss
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()

        def configure_optimizers(self):
            return torch.optim.Adam(self.model.parameters(), lr=1e-3)

    return Minimal()


def lightning_epoch(dm: MNISTDataModule, manual: bool, model_name: str = "lenet300", steps: int | None = None) -> float:
    """The Lightning floor: a minimal LightningModule and a bare Trainer, same model, data and optimizer."""
    import lightning.pytorch as pl

    torch.manual_seed(0)
    module = minimal_module(build(model_name, dm), manual)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start


def prunelab_epoch(
    dm: MNISTDataModule,
    validate: bool,
    model_name: str = "lenet300",
    steps: int | None = None,
    progress: int | None = None,
    loop: str = "lean",
    callbacks: list | None = None,
    epochs: int = 1,
) -> float:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from prunelab.config.groups import conf_dir
    from prunelab.config.register import register_resolvers
    from prunelab.runner.build import prepare
    from prunelab.runner.round import run_round

    register_resolvers()
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "data=mnist",
                f"model={model_name}",
                "logger=csv",
                f"trainer.max_epochs={epochs}",
                f"data.batch_size={dm.batch_size}",
                f"training_loop={loop}",
            ],
        )
        with open_dict(cfg):
            cfg.trainer.enable_progress_bar = progress is not None
            cfg.progress_bar_refresh = progress or 1
            cfg.logger.csv.save_dir = tmp
            cfg.data.root = data_dir()
            if steps is not None:
                cfg.trainer.limit_train_batches = steps
                cfg.trainer.limit_val_batches = min(steps, 5) if validate else 0
            if not validate:
                cfg.trainer.limit_val_batches = 0
                cfg.monitor.metric = None
        ctx = prepare(cfg, Path(tmp))
        ctx.dm = dm  # the same tensors as the bare loop
        from prunelab.runner.build import build_loggers

        ctx.loggers = build_loggers(cfg)
        ctx.extra_callbacks = list(callbacks or [])
        return run_round(ctx, 0)["fit_seconds"]


class BareStepper:
    """A bare loop advanced one step at a time: its own model, Adam and loader (the bare loop's batch order)."""

    def __init__(self, dm: MNISTDataModule, model_name: str):
        torch.manual_seed(0)
        self.model = build(model_name, dm)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(0)
        self.batches = iter(loader)
        self.seconds: list[float] = []

    def step(self) -> None:
        start = time.perf_counter()
        with torch.enable_grad():
            x, y = next(self.batches)
            self.opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(self.model(x), y).backward()
            self.opt.step()
        self.seconds.append(time.perf_counter() - start)


def interleaved(
    dm: MNISTDataModule, model_name: str = "lenet300", steps: int | None = None, validate: bool = False
) -> tuple[float, float]:
    """A prunelab round's throughput against the bare loop's, their steps interleaved: a callback runs one bare step
    after each prunelab step (and, with ``validate``, the bare validation pass and per-class figures after the last
    one, before the round's own validation). Returns (whole fit, per step): the bare loop's time over the time of
    everything else in ``Trainer.fit`` (setup, steps, validation, checkpoints, teardown), and the bare steps' time
    over the prunelab loop's time from one callback call to the next (the first step of each left out)."""
    import lightning.pytorch as pl

    bare = BareStepper(dm, model_name)
    last = (steps or len(dm.train_dataloader())) - 1
    extra: list[float] = []

    class Interleave(pl.Callback):
        def __init__(self):
            self.intervals: list[float] = []
            self.left: float | None = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.left is not None:
                self.intervals.append(time.perf_counter() - self.left)
            bare.step()
            if validate and batch_idx == last:
                start = time.perf_counter()
                bare_validation(bare.model, dm)
                extra.append(time.perf_counter() - start)
            self.left = time.perf_counter()

    probe = Interleave()
    fit = prunelab_epoch(dm, validate, model_name, steps, callbacks=[probe])
    bare_total = sum(bare.seconds) + sum(extra)
    return bare_total / (fit - bare_total), sum(bare.seconds[1:]) / sum(probe.intervals)


def interleaved_control(dm: MNISTDataModule, model_name: str = "lenet300", steps: int | None = None) -> float:
    """The same estimator on two bare loops (the null: 1.0 up to cache effects of interleaving)."""
    a, b = BareStepper(dm, model_name), BareStepper(dm, model_name)
    for _ in range(steps or len(dm.train_dataloader())):
        a.step()
        b.step()
    return sum(a.seconds[1:]) / sum(b.seconds[1:])


# where a training step's time goes, by the cumulative time of these functions (| separates alternatives: the
# floor's training_step is in this file) in a cProfile of Trainer.fit
PROFILE_PARTS = {
    "forward + loss (training_step)": "module.py:*(training_step)|epoch_overhead.py:*(training_step)",
    "backward": "_tensor.py:*(backward)",
    "Adam update (its math)": "adam.py:*(_single_tensor_adam)",
    "torch: accelerator check in optimizer.step": "optimizer.py:*(_accelerator_graph_capture_health_check)",
    "batch fetch (index gather)": "fetchers.py:*(__next__)",
    "callback hooks (checkpoint, pruning, ...)": "call.py:*(_call_callback_hooks)|internals.py:*(_hook)",
    "zero_grad": "optimizer.py:*(zero_grad)",
}


def profile_fit(run) -> dict[str, float]:
    """Seconds per part (PROFILE_PARTS, disjoint) of one LeNet-300-100 epoch's ``Trainer.fit`` under cProfile, for
    ``run`` (one of the epoch functions above); "rest" is the training loop itself."""
    import cProfile
    import fnmatch
    import pstats

    import lightning.pytorch as pl

    run()  # warm-up
    prof, fit = cProfile.Profile(), pl.Trainer.fit

    def profiled(self, *a, **k):
        prof.enable()
        try:
            return fit(self, *a, **k)
        finally:
            prof.disable()

    pl.Trainer.fit = profiled  # type: ignore[method-assign]
    try:
        run()
    finally:
        pl.Trainer.fit = fit  # type: ignore[method-assign]
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max(v[3] for v in stats.values())
    out = {}
    for part, pattern in PROFILE_PARTS.items():
        out[part] = sum(
            v[3]
            for k, v in stats.items()
            if any(fnmatch.fnmatch(f"{Path(k[0]).name}:{k[1]}({k[2]})", p) for p in pattern.split("|"))
        )
    out["rest: the training loop (hook dispatch, closure, progress tracking, logging)"] = total - sum(out.values())
    out["total"] = total
    return out


def print_profile(dm: MNISTDataModule) -> None:
    n = len(dm.train_dataloader())
    runs = {
        "Lightning floor": partial(lightning_epoch, dm, False),
        "prunelab round, Lightning's loop": partial(prunelab_epoch, dm, False, loop="lightning"),
        "prunelab round (lean loop)": partial(prunelab_epoch, dm, False),
    }
    parts = {name: profile_fit(run) for name, run in runs.items()}
    rows = [[part, *(1000 * p[part] / n for p in parts.values())] for part in parts["Lightning floor"]]
    print_table(
        f"P1 profile: ms per step of one LeNet-300-100 epoch's Trainer.fit under cProfile ({n} steps; the profiler "
        "inflates Python-heavy parts, compare the columns, not with the timings above)",
        ["part", *runs],
        rows,
    )


def checkpoint_tail(dm: MNISTDataModule, lightnings: bool, epochs: int) -> float:
    """Seconds from the last epoch's ``on_train_epoch_end`` to ``on_fit_end`` of a LeNet-300-100 round of ``epochs``
    20-step epochs (no validation: best and last saved every epoch): the checkpoint writes, with prunelab's
    LinkingCheckpoint or (``lightnings``) Lightning's ModelCheckpoint in its place."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from prunelab.training import fastpaths

    class Marks(pl.Callback):
        start = end = 0.0

        def on_train_epoch_end(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_fit_end(self, trainer, pl_module):
            self.end = time.perf_counter()

    marks = Marks()
    ours = fastpaths.round_checkpoint
    setattr(fastpaths, "round_checkpoint", ModelCheckpoint if lightnings else ours)  # noqa: B010
    try:
        prunelab_epoch(dm, False, "lenet300", 20, callbacks=[marks], epochs=epochs)
    finally:
        setattr(fastpaths, "round_checkpoint", ours)  # noqa: B010
    return marks.end - marks.start


def print_checkpoints(dm: MNISTDataModule, reps: int) -> None:
    rows: list[list[object]] = []
    for epochs in (1, 2):
        checkpoint_tail(dm, False, epochs)  # warm-up
        ours, theirs = [], []
        for _ in range(reps):
            theirs.append(checkpoint_tail(dm, True, epochs))
            ours.append(checkpoint_tail(dm, False, epochs))
        for name, v in (("Lightning's ModelCheckpoint", theirs), ("prunelab's RoundCheckpoint", ours)):
            rows.append([epochs, name, 1000 * statistics.median(v), f"{1000 * min(v):.1f}-{1000 * max(v):.1f}"])
    print_table(
        f"P1 checkpoint writes at an epoch's end (best and last), LeNet-300-100 round, {reps} alternating repetitions",
        ["epochs in the fit", "callback", "ms, last epoch's end to fit end (median)", "range"],
        rows,
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=["lenet300", "conv4"], choices=["lenet300", "conv4"])
    parser.add_argument("--conv-steps", type=int, default=6)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="skip the progress-bar variants")
    parser.add_argument("--profile", action="store_true", help="only the profile of a round against the floor")
    parser.add_argument("--checkpoints", action="store_true", help="only the epoch-end checkpoint writes")
    args = parser.parse_args(argv)
    dm = MNISTDataModule(root=data_dir(), batch_size=args.batch_size)
    dm.setup()
    if args.profile:
        print_profile(dm)
        return []
    if args.checkpoints:
        print_checkpoints(dm, args.reps)
        return []
    rows, results = [], []
    for model_name in args.models:
        steps = None if model_name == "lenet300" else args.conv_steps
        common = (model_name, steps)
        variants = {
            "bare PyTorch loop": partial(bare_epoch, dm, False, model_name, steps),
        }
        if model_name == "lenet300":  # the baseline of a round that validates (a full epoch only)
            variants[VAL_BASE] = partial(bare_epoch, dm, False, model_name, None, True)
        variants |= {
            "bare loop, masked model": partial(bare_epoch, dm, True, model_name, steps),
            "Lightning floor: minimal module, automatic optimization": partial(lightning_epoch, dm, False, *common),
            "Lightning floor: minimal module, manual optimization": partial(lightning_epoch, dm, True, *common),
            "prunelab round, no validation": partial(prunelab_epoch, dm, False, model_name, steps),
            "prunelab round, no validation, Lightning's loop (training_loop=lightning)": partial(
                prunelab_epoch, dm, False, model_name, steps, loop="lightning"
            ),
        }
        # ratio estimators that pair within one run (no separate baseline run): interleaved steps, and their control
        paired: dict[str, Callable[[], object]] = {
            INTERLEAVED: partial(interleaved, dm, model_name, steps),
            INTERLEAVED_VAL: partial(interleaved, dm, model_name, None, True),
            INTERLEAVED_CONTROL: partial(interleaved_control, dm, model_name, steps),
        }
        if model_name != "lenet300":  # a full epoch with its validation split only
            del paired[INTERLEAVED_VAL]
        if model_name == "lenet300":  # a full epoch with its 10% validation split; for a 6-step slice not comparable
            variants["prunelab round + validation, per-class metrics"] = partial(prunelab_epoch, dm, True, model_name)
        if model_name == "lenet300" and args.progress:
            variants["prunelab round, progress bar redrawn every step (Lightning's default)"] = partial(
                prunelab_epoch, dm, False, model_name, steps, 1
            )
            variants["prunelab round, progress bar every 25 steps (prunelab's default)"] = partial(
                prunelab_epoch, dm, False, model_name, steps, 25
            )
        variants["bare PyTorch loop"]()  # warm-up (allocator, kernels)
        base_of = {k: VAL_BASE if "+ validation" in k else "bare PyTorch loop" for k in variants}
        runs: dict[str, list[float]] = {k: [] for k in variants}
        ratios: dict[str, list[float]] = {k: [] for k in [*variants, *paired]}
        for _ in range(args.reps):
            for k, fn in variants.items():
                if k == base_of[k]:  # a baseline itself (bare loop, bare loop + validation)
                    continue
                base = variants[base_of[k]]()  # its baseline right before it: the CPU's speed drifts over seconds
                runs[base_of[k]].append(base)
                runs[k].append(fn())
                ratios[k].append(base / runs[k][-1])
            for k, measure in paired.items():
                out = measure()
                if isinstance(out, tuple):  # (whole fit, per step)
                    ratios[k].append(out[0])
                    ratios.setdefault(k + PER_STEP, []).append(out[1])
                else:
                    ratios[k].append(float(out))  # type: ignore[arg-type]
        n = steps or len(dm.train_dataloader())
        goal = 0.85 if model_name == "lenet300" else 0.90
        for k, v in runs.items():
            ratio = statistics.median(ratios[k]) if ratios[k] else 1.0
            spread = f"{min(ratios[k]):.3f}-{max(ratios[k]):.3f}" if ratios[k] else ""
            target = verdict(ratio, goal) if k.startswith("prunelab") else ""
            baseline = "" if not ratios[k] else ("bare+val" if base_of[k] == VAL_BASE else "bare")
            ms = 1000 * statistics.median(v) / n
            rows.append([model_name, n, k, ms, baseline, ratio, spread, target])
            results.append(
                {
                    "model": model_name,
                    "variant": k,
                    "ms_per_step": ms,
                    "throughput": ratio,
                    "baseline": base_of[k],
                    "ratios": ratios[k],
                }
            )
        names = [k for key in paired for k in (key, key + PER_STEP) if k in ratios]
        for k, r in ((k, ratios[k]) for k in names):
            ratio = statistics.median(r)
            target = verdict(ratio, goal) if k in (INTERLEAVED, INTERLEAVED_VAL) else ""
            rows.append([model_name, n, k, "", "bare, same run", ratio, f"{min(r):.3f}-{max(r):.3f}", target])
            results.append(
                {
                    "model": model_name,
                    "variant": k,
                    "ms_per_step": None,
                    "throughput": ratio,
                    "baseline": "bare, interleaved",
                    "ratios": r,
                }
            )
    print_table(
        f"P1 framework overhead: MNIST, batch {args.batch_size}, Adam, {torch.get_num_threads()} threads; each "
        f"variant right after its baseline, {args.reps} repetitions: median (and range) of the paired ratios "
        "(targets: prunelab >= 0.85 of its baseline on lenet300, >= 0.90 on conv4)",
        ["model", "steps", "variant", "ms/step", "baseline", "throughput vs baseline", "range", "target"],
        rows,
    )
    return results


if __name__ == "__main__":
    main()
