"""One round: fit (resuming from the round's last checkpoint), evaluate the kept checkpoint, record, export.

Round 0 trains the dense model; round r > 0 prunes (PruningCallback, at the start of its fit), rewinds and
retrains. After the fit the checkpoint chosen by ``monitor`` is loaded, validated and tested, and the round's
files are written; ``metrics.json`` is written last, with the size and SHA-1 of every other file of the round, and
marks the round finished (see :mod:`prunelab.runner.run_folder`). Populations reuse :func:`evaluate` and
:func:`record_round` for each member.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.allocation import Allocation
from prunelab.pruning.budget import Budget
from prunelab.pruning.budget import cost as budget_cost
from prunelab.pruning.callback import PruningCallback
from prunelab.pruning.cost import count_flops, export_report
from prunelab.runner import class_damage, preflight
from prunelab.runner.build import load_into, load_state_file, make_trainer, seed_all
from prunelab.runner.context import RunContext
from prunelab.runs import files as results
from prunelab.runs.compact import kept_record
from prunelab.training import fastpaths
from prunelab.training.metrics import classification_metrics, safe_name, worst_class
from prunelab.training.module import epoch_seed
from prunelab.training.quantize import predict, quantize, serialized_bytes

log = logging.getLogger("prunelab")


def resume_checkpoint(rdir: Path) -> tuple[Path | None, int | None]:
    """The round's last checkpoint and the epoch it holds, if it can be read; an unreadable one is set aside and the
    round redone: (None, None)."""
    last = rdir / "checkpoints" / "last.ckpt"
    if not last.exists():
        if (rdir / "checkpoints").exists() and results.is_writer():
            shutil.rmtree(rdir / "checkpoints")  # only "best" files of an attempt killed before its first save
        return None, None
    try:
        return last, int(results.load_tensors(last, "checkpoint").get("epoch", -1))
    except PrunelabError as exc:
        log.warning("%s: redoing round %d from its start", exc.message, int(rdir.name[1:]))
        if results.is_writer():
            shutil.move(str(rdir / "checkpoints"), str(rdir / f"checkpoints.broken-{int(time.time())}"))
        return None, None


def load_kept_model(ctx: RunContext, r: int) -> None:
    """Start the next round from round ``r``'s kept model (verified by its checksum)."""
    path = results.round_dir(ctx.run_dir, r) / "model.pt"
    load_into(ctx.module.model, load_state_file(path, "checkpoint"), "checkpoint", path)


def run_round(ctx: RunContext, r: int) -> dict:
    cfg, dm, module = ctx.cfg, ctx.dm, ctx.module
    rdir = results.round_dir(ctx.run_dir, r)
    resume, resumed_epoch = resume_checkpoint(rdir)
    seed_all(epoch_seed(cfg.seed, r, 0))
    module.set_round(r)
    # an in-fit (gradual) schedule keeps the last epoch: an earlier "best" one would not have the final masks
    ckpt = fastpaths.round_checkpoint(
        dirpath=str(rdir / "checkpoints"),
        filename="best-epoch{epoch:03d}",
        monitor=None if ctx.schedule.in_fit else cfg.monitor.metric,
        mode=cfg.monitor.mode,
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    pruner = make_pruner(ctx, r)
    stop, overrides = convergence(cfg, r, ctx.num_rounds - 1)
    overrides.update(rewind_budget(ctx, r))
    trainer = make_trainer(cfg, rdir, [ckpt, pruner, *ctx.extra_callbacks, *stop], ctx.loggers, **overrides)
    start = time.perf_counter()
    begin_logging(ctx, r, resumed_epoch)
    if resume is None:  # select masks -> rewind (a resumed round's checkpoint holds both; the fit restores them)
        module.to(trainer.strategy.root_device)  # where the fit will run: scores computed as they were in it
        pruner.prune_round(module.model)
        keep_criterion_stats(ctx, rdir)
    attach_dense_round(ctx, r, trainer.strategy.root_device)  # losses that learn from round 0 (training.teachers)
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
    fit_s = time.perf_counter() - start
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else rdir / "checkpoints" / "last.ckpt"
    if best.exists():
        load_into(module.model, load_state_file(best, "checkpoint"), "checkpoint", best)
    elif int(cfg.trainer.max_epochs) > 0:
        raise PrunelabError("trainer", f"round {r} finished without a checkpoint", "check trainer.max_epochs")
    else:  # max_epochs=0: evaluate the (pruned) weights as they are, e.g. SNIP without training
        best = rdir / "untrained"
    val = evaluate(ctx, trainer)
    return record_round(
        ctx,
        r,
        trainer,
        best.name,
        fit_s,
        val,
        start,
        stopped=stop[0].stopped_epoch if stop else None,
        loop=fastpaths.loop_used(trainer, lean=cfg.training_loop == "lean"),
    )


def begin_logging(ctx: RunContext, r: int, resumed_epoch: int | None) -> None:
    """Tell the loggers that keep a journal (W&B) where this process starts: round ``r``, from its start (None) or
    after the epoch of the checkpoint it resumes."""
    for lg in ctx.loggers:
        if hasattr(lg, "begin_round"):
            lg.begin_round(r, resumed_epoch)


def make_pruner(ctx: RunContext, r: int) -> PruningCallback:
    """The round's pruning callback: criterion, schedule, rewind, snapshots, allocation and budget."""
    cfg, dm = ctx.cfg, ctx.dm
    return PruningCallback(
        ctx.criterion,
        ctx.schedule,
        ctx.rewind,
        r,
        results.SnapshotFolder(ctx.run_dir / "rewind"),
        cfg.seed,
        batches=lambda: iter(dm.train_dataloader()),
        groups=ctx.groups,
        extra={"num_classes": dm.num_classes, "run_dir": str(ctx.run_dir)},
        min_filters=int(cfg.prune.min_filters),
        allocation=Allocation.from_config(cfg.prune, ctx.criterion.structured),
        budget=Budget.from_config(cfg.get("budget")),
        input_shape=dm.input_shape,
    )


def keep_criterion_stats(ctx: RunContext, rdir: Path) -> None:
    """What the criterion measured while selecting the round's masks (e.g. its ranking's stability across batches),
    kept with the round (``criterion.json``): a resumed round does not select again."""
    stats = getattr(ctx.criterion, "last_stats", None)
    if stats and results.is_writer():
        results.atomic_write_json(rdir / "criterion.json", stats)


def attach_dense_round(ctx: RunContext, r: int, device: Any) -> None:
    """A loss that acts after pruning (``loss=ceag|equalized|distill|pw``) gets round 0's model, read from its
    ``model.pt`` after the round's files are checked against their recorded checksums (never recomputed), and the
    training split; round 0 itself trains with plain cross-entropy. The loss's round state is reset here, and a
    resumed round's checkpoint restores it when the fit starts."""
    loss: Any = ctx.module.loss_fn
    if not hasattr(loss, "attach"):
        return
    if r == 0:
        loss.release()
        return
    row, problem = results.verify_round(ctx.run_dir, 0)
    if row is None:
        raise PrunelabError(
            "loss", f"round 0 of {ctx.run_dir} is not intact ({problem or 'missing'})", "rerun: prunelab redoes it"
        )
    teacher = copy.deepcopy(ctx.module.model)
    path = results.round_dir(ctx.run_dir, 0) / "model.pt"
    load_into(teacher, load_state_file(path, "checkpoint"), "checkpoint", path)
    teacher.to(device)
    batches = ((x.to(device), y.to(device)) for x, y in ctx.dm.train_eval_dataloader())
    loss.attach(teacher, batches)


def rewind_budget(ctx: RunContext, r: int) -> dict[str, Any]:
    """``rewind=step`` with ``budget: continue``: a round after 0 trains what round 0 had left after step k, and the
    LR schedule resumes where round 0's was at step k (Frankle et al. 2020). Both in whole epochs: the round trains
    round 0's epochs from the one holding step k (``T - k`` steps rounded up to that epoch's start), because
    Lightning validates and checkpoints at epoch ends, so steps after the last full epoch would be trained but
    never validated nor kept; epoch-interval schedulers resume at that epoch."""
    rewind = ctx.rewind
    if not rewind.continues_budget or r == 0:
        ctx.module.schedule_offset = 0
        return {}
    epochs = int(ctx.cfg.trainer.max_epochs)
    per_epoch = max(1, preflight.round_steps(ctx.dm, ctx.cfg) // max(1, epochs))
    ctx.module.schedule_offset = rewind.step // per_epoch
    return {"max_epochs": epochs - ctx.module.schedule_offset}


CONVERGE_ROUNDS = ("first", "all", "first_and_last")


def converges(rounds: str, r: int, last: int) -> bool:
    """Whether round ``r`` (of ``0..last``) trains to convergence under ``converge.rounds``: ``first`` round 0,
    ``all`` every round, ``first_and_last`` round 0 and the final round (iterative pruning's steps keep
    ``trainer.max_epochs``; the model every claim reads is fine-tuned to convergence, as the dense one is)."""
    return r == 0 or rounds == "all" or (rounds == "first_and_last" and r == last)


def convergence(cfg, r: int, last: int) -> tuple[list, dict[str, Any]]:
    """With ``converge`` (the rounds ``converge.rounds`` names, :func:`converges`): stop when ``monitor.metric`` has
    not improved by more than ``min_delta`` for ``patience`` validation epochs (at most ``max_epochs``); the kept
    epoch is the best one."""
    dense = cfg.get("converge")
    if not dense or not converges(dense.get("rounds", "first"), r, last):
        return [], {}
    stop = EarlyStopping(
        monitor=cfg.monitor.metric,
        mode=cfg.monitor.mode,
        patience=int(dense.patience),
        min_delta=float(dense.get("min_delta", 0.0)),
        check_finite=True,
    )
    return [stop], {"max_epochs": int(dense.max_epochs)}


def evaluate(ctx: RunContext, trainer: pl.Trainer) -> dict[str, float]:
    """Validate and test the module's current weights; returns the validation metrics (test ones stay on it)."""
    ctx.module.last_metrics = {}
    trainer.validate(ctx.module, datamodule=ctx.dm, verbose=False)
    val = ctx.module.last_metrics.get("val", {})
    trainer.test(ctx.module, datamodule=ctx.dm, verbose=False)
    return val


def round_row(ctx: RunContext, r: int, kept: str, fit_s: float, val: dict, epochs: int) -> dict[str, Any]:
    """The round's record: sparsity, parameters, FLOPs, validation and test metrics, worst class."""
    model, dm = ctx.module.model, ctx.dm
    test = ctx.module.last_metrics["test"]
    stats, flops = masking.sparsity_stats(model), count_flops(model, dm.input_shape)
    worst, worst_recall = worst_class(test, dm.class_names)
    row = {
        "round": r,
        "sparsity": stats["sparsity"],
        "target_sparsity": ctx.schedule.sparsity_at(r),
        **masking.count_parameters(model),
        **flops,
        "best_checkpoint": kept,
        "epochs": epochs,
        "fit_seconds": round(fit_s, 3),
        "worst_class": worst,
        "worst_class_recall": worst_recall,
        **{k: v for k, v in val.items() if k != "prune/round"},
        **test,
    }
    row["prune/round"], row["prune/sparsity"], row["prune/flops"] = r, stats["sparsity"], flops["flops"]
    if ctx.groups:
        row.update(units.unit_stats(units.alive_units(model, ctx.groups)))
        row["prune/units_removed_share"] = row["units_removed_share"]
    row.update(budget_fields(ctx, r))
    stats = results.read_json_or_none(results.round_dir(ctx.run_dir, r) / "criterion.json")
    if isinstance(stats, dict):  # written when the round's masks were selected (a resumed round keeps it)
        row.update({f"criterion/{k}": v for k, v in stats.items()})
    lam = getattr(ctx.module.loss_fn, "multipliers", None)
    if lam is not None and r > 0:  # constrained losses: the round's final Lagrange multipliers, one per class
        row.update({f"loss/multiplier/{safe_name(c)}": float(v) for c, v in zip(dm.class_names, lam.tolist())})
    return row


def budget_fields(ctx: RunContext, r: int) -> dict[str, Any]:
    """With ``budget.target``: the round's goal and the cost it reached (prunelab.pruning.budget)."""
    budget = Budget.from_config(ctx.cfg.get("budget"))
    if budget is None:
        return {}
    dense0 = ctx.schedule.sparsity_at(0) == 0
    k, rounds = (r, ctx.num_rounds - 1) if dense0 else (r + 1, ctx.num_rounds)
    goal = budget.goal(k, rounds)
    groups = ctx.groups if ctx.criterion.structured else None
    achieved = budget_cost(ctx.module.model, budget.target, ctx.dm.input_shape, groups)
    return {
        "budget/target": budget.target,
        "budget/value": budget.value,
        "budget/goal": goal,
        "budget/achieved": achieved,
        "budget/within_tolerance": bool(abs(achieved - goal) <= budget.tolerance),
    }


def record_round(
    ctx: RunContext,
    r: int,
    trainer: pl.Trainer,
    kept: str,
    fit_s: float,
    val: dict,
    start: float,
    epochs: int | None = None,
    step: int | None = None,
    stopped: int | None = None,
    loop: str | None = None,
) -> dict:
    """Save the round's files and record (``epochs``/``step`` when the fit ran outside ``trainer``: populations;
    ``stopped``: the epoch early stopping ended a ``converge`` round at, 0 if it ran to ``max_epochs``; ``loop``: the
    training loop that ran the fit's epochs, :func:`prunelab.training.fastpaths.loop_used`, or ``population``)."""
    epochs = trainer.current_epoch if epochs is None else epochs
    step = trainer.global_step if step is None else step
    rdir = results.round_dir(ctx.run_dir, r)
    rdir.mkdir(parents=True, exist_ok=True)
    row = round_row(ctx, r, kept, fit_s, val, epochs)
    if stopped is not None:
        row["converged"] = stopped > 0  # False: max_epochs was reached while the monitor still improved
    if ctx.groups and ctx.cfg.export.compact and results.is_writer():
        row.update(export_round(ctx, rdir))
    if results.is_writer():
        results.atomic_save_torch(ctx.module.model.state_dict(), rdir / "model.pt")
        results.atomic_save_torch(masking.get_masks(ctx.module.model), rdir / "masks.pt")
    if results.is_writer() and ctx.groups:  # prunelab.runs.compact.load_compact rebuilds the compact model from it
        record = kept_record(ctx.module.model, ctx.groups, ctx.dm.input_shape, ctx.dm.num_classes)
        results.atomic_write_json(rdir / "kept.json", record)
    if results.is_writer() and (r == ctx.num_rounds - 1 or ctx.cfg.quantize.rounds == "all"):
        quantize_round(ctx, r, rdir, step)
    probs, labels = test_outputs(ctx)
    results.save_predictions(rdir / "predictions.npz", probs.numpy(), labels.numpy())
    if ctx.module.val_outputs is not None:  # post-hoc recalibration fits on them (calibrate=thresholds), never on test
        val_probs, val_labels = ctx.module.val_outputs
        results.save_predictions(rdir / "val_predictions.npz", val_probs.numpy(), val_labels.numpy())
    row["round_seconds"] = round(time.perf_counter() - start, 3)  # fit + evaluation + export: what a rerun saves
    stats = masking.sparsity_stats(ctx.module.model)
    per_tensor = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("sparsity/")}
    kept_files = results.round_files(rdir) + (sorted((ctx.run_dir / "rewind").glob("step*.pt")) if r == 0 else [])
    files = results.record_files(ctx.run_dir, kept_files) if results.is_writer() else {}
    row.update(class_damage.fields(ctx, r, probs.numpy(), labels.numpy()))
    row.update(class_damage.calibration(ctx, rdir, probs.numpy(), labels.numpy()))
    record = {
        **row,
        "confusion_matrix": confusion(probs, labels, ctx.dm),
        "sparsity_per_tensor": per_tensor,
        "files": files,
    }
    if loop is not None:
        record["training_loop"] = loop
    record["data_fingerprint"] = ctx.dm.fingerprint  # a lost data.json can be rebuilt only from matching data
    results.atomic_write_json(rdir / "metrics.json", record)
    log_round(ctx, row, probs, labels, step)
    return record


def log_round(ctx: RunContext, row: dict, probs: Any, labels: Any, step: int) -> None:
    """The round's summary, once per round, as ``round/<key>`` (the module logs the per-epoch ``val/`` and the
    ``test/`` figures itself), with ``prune/sparsity`` as its x-axis; W&B also gets the per-class table and the
    confusion matrix (:mod:`prunelab.training.loggers`)."""
    numeric = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numeric.update({k: float(v) for k, v in row.items() if k.startswith("damage/") and isinstance(v, bool)})
    summary = {k if k.startswith("prune/") else f"round/{k}": v for k, v in numeric.items()}
    summary.update({"prune/sparsity": float(row["sparsity"]), "prune/round": float(row["round"])})
    for lg in ctx.loggers:
        lg.log_metrics(summary, step=step)
        if hasattr(lg, "log_round_media"):
            lg.log_round_media(row, list(ctx.dm.class_names), labels.tolist(), probs.argmax(1).tolist(), step)


def export_round(ctx: RunContext, rdir: Path) -> dict[str, Any]:
    """Compact the structured model physically, check its outputs and time it (the round keeps ``kept.json``, from
    which prunelab.runs.compact.load_compact rebuilds the compact model: no pickled module is saved)."""
    sample = next(iter(ctx.dm.test_dataloader()))[0][:64]
    reps = int(ctx.cfg.export.latency_reps)
    _, report = export_report(ctx.module.model, ctx.groups, sample, reps)
    return report


def quantize_round(ctx: RunContext, r: int, rdir: Path, step: int) -> None:
    """Evaluate post-training quantized copies of the round's model with the same metrics and saved predictions."""
    qcfg = ctx.cfg.quantize
    methods = list(qcfg.get("methods") or [])
    if not methods:
        return
    dm, module = ctx.dm, ctx.module
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    calibration = [b for _, b in zip(range(int(qcfg.calibration_batches)), loader)]
    ref_probs, _ = test_outputs(ctx)
    for method in methods:
        qmodel = quantize(module.model, method, calibration)
        probs, labels, seconds = predict(qmodel, dm.test_dataloader())
        metrics = classification_metrics(probs, labels, dm.class_names, "test", dm.positive_class)
        worst, worst_recall = worst_class(metrics, dm.class_names)
        row = {
            "round": r,
            "method": method,
            "sparsity": masking.sparsity_stats(module.model)["sparsity"],
            "model_bytes": serialized_bytes(qmodel),
            "test_seconds_cpu": round(seconds, 4),
            "agreement_with_float": float((probs.argmax(1) == ref_probs.argmax(1)).float().mean()),
            "worst_class": worst,
            "worst_class_recall": worst_recall,
            **metrics,
            **class_damage.quantized_fields(ctx, r, ref_probs.numpy(), probs.numpy(), labels.numpy()),
        }
        qdir = rdir / "quant" / method
        results.save_predictions(qdir / "predictions.npz", probs.numpy(), labels.numpy())
        results.atomic_write_json(qdir / "metrics.json", row)
        for lg in ctx.loggers:
            lg.log_metrics({f"quant/{method}/{k}": v for k, v in metrics.items()}, step=step)
        log.info(
            "round %d %s: test acc %.4f (float agreement %.4f)",
            r,
            method,
            metrics["test/acc"],
            row["agreement_with_float"],
        )


def test_outputs(ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
    if ctx.module.test_outputs is None:
        raise RuntimeError("the round was not tested: no test predictions")
    return ctx.module.test_outputs


def confusion(probs: torch.Tensor, labels: torch.Tensor, dm: Any) -> list[list[int]]:
    c = dm.num_classes
    idx = labels * c + probs.argmax(1)
    return torch.bincount(idx, minlength=c * c).view(c, c).tolist()
