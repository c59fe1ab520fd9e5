"""``population=K``: one job trains K seeds of one config at once and writes K ordinary run folders.

The job's own folder is a *population folder*: ``summary.json`` (``"kind": "population"``, the members and their
status), ``population_config.yaml``, and ``members/<run id>/``: one complete run folder per member, named by the
member's own run id, i.e. the folder a single run with ``seed=<seed + k>`` would get, with the same files (rounds,
metrics, predictions, quantized rows, masks, logs) and ``.hydra/overrides.yaml`` naming its seed, so
``prunelab report`` and the paper tables treat members exactly as single runs.

The population folder and every member folder go through the same status code as a single run
(:mod:`prunelab.runner.run_folder`: lock, identity, data fingerprint, verified rounds), and members are evaluated and
recorded by the same round code (:func:`prunelab.runner.round.record_round`). Members are trained with
:mod:`prunelab.population.engine` (stacked state, one step for all); for MLPs the members' weights, masks and
predictions are bitwise those of K single runs (tested). Supported: single-round schedules (gradual, dense), models
without BatchNorm, element-wise optimizers, data-free criteria, no LR scheduler, full training epochs, one device;
anything else fails before training with a one-line error naming the key.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict

from prunelab.config.identity import run_id
from prunelab.config.instantiate import make
from prunelab.errors import PrunelabError, describe
from prunelab.population.engine import Population, train_epoch
from prunelab.pruning.callback import PruningCallback
from prunelab.runner import build, migrate, run_folder
from prunelab.runner.context import RunContext
from prunelab.runner.interrupt import RunInterrupted, interruptible
from prunelab.runner.round import evaluate, record_round
from prunelab.runs import files as results
from prunelab.training.module import epoch_seed

log = logging.getLogger("prunelab")


@dataclass
class Member:
    cfg: DictConfig
    folder: run_folder.RunFolder
    ctx: RunContext
    done: list[dict]
    summary: dict = field(default_factory=dict)
    history: list[tuple[int, dict]] = field(default_factory=list)  # (step, epoch metrics) for the loggers
    best: tuple[Any, dict | None, int] = (None, None, -1)  # (monitored value, state, epoch)

    @property
    def complete(self) -> bool:
        return bool(self.done) and self.folder.read_summary().get("status") == "complete"


def member_configs(cfg: DictConfig, run_dir: Path) -> list[tuple[DictConfig, Path]]:
    """(config, folder) per member: seeds ``seed .. seed + K - 1``, each a plain single-run config."""
    out = []
    for k in range(int(cfg.population)):
        mc = copy.deepcopy(cfg)
        with open_dict(mc):
            mc.seed = int(cfg.seed) + k
            mc.population = 1
        out.append((mc, run_dir / "members" / run_id(mc)))
    return out


def check_supported(cfg: DictConfig) -> None:
    """Fail before any member folder is written when the config needs something populations do not do."""

    def no(key: str, what: str, fix: str) -> None:
        raise PrunelabError(key, f"population training does not support {what}", fix)

    schedule, criterion, trainer = make(cfg, "schedule"), make(cfg, "criterion"), cfg.trainer
    if schedule.num_rounds != 1:
        no("population", f"{schedule.num_rounds}-round schedules", "use population=1, or a gradual/dense schedule")
    if criterion.needs_data or criterion.structured:
        no("population", "data-dependent or structured criteria", "use population=1, or criterion=magnitude")
    if getattr(make(cfg, "loss"), "needs_dense", False):
        no("loss", f"loss={cfg.loss._target_.rsplit('.', 1)[-1]} (it acts on pruned rounds)", "use population=1")
    if cfg.get("scheduler"):
        no("scheduler", "learning-rate schedulers", "use population=1, or scheduler=null")
    if trainer.get("limit_train_batches") not in (None, 1, 1.0):
        no("trainer.limit_train_batches", "partial epochs", "use population=1, or limit_train_batches=null")
    if int(trainer.get("accumulate_grad_batches") or 1) != 1:
        no("trainer.accumulate_grad_batches", "gradient accumulation", "use population=1")
    if trainer.get("gradient_clip_val"):
        no("trainer.gradient_clip_val", "gradient clipping (a per-member norm)", "use population=1")
    if str(trainer.get("precision", "32-true")) not in ("32", "32-true"):
        no("trainer.precision", f"precision {trainer.precision}", "use population=1, or precision=32-true")
    if trainer.get("strategy") not in (None, "auto") or int(trainer.get("devices") or 1) != 1:
        no("trainer.strategy", "multi-process training", "use population=1 for DDP")
    if int(trainer.max_epochs) < 1:
        no("trainer.max_epochs", "untrained rounds", "use population=1")


def run_population(cfg: DictConfig, run_dir: Path, ident: str | None = None) -> dict:
    """Train (or verify and skip) the K members of ``cfg``; returns the population summary."""
    check_supported(cfg)
    with interruptible(), run_folder.folder_lock(run_dir, wait=bool(cfg.wait)):
        folder = run_folder.RunFolder(run_dir, "population_config.yaml", ident=ident)
        with folder.noted(cfg, "refused"):
            folder.check_identity(cfg)  # before anything is skipped or written
        with folder.noted(cfg, "failed"):
            members = [checked_member(mc, path) for mc, path in member_configs(cfg, run_dir)]
        if folder.read_summary().get("status") == "complete" and all(m.complete for m in members):
            folder.attempt("skipped", 0.0, saved_seconds=folder.read_summary().get("compute_seconds", 0.0))
            print(f"population already complete in {run_dir}: nothing to do ({len(members)} members verified)")
            return folder.read_summary()
        return attempt(cfg, folder, members)


def checked_member(mc: DictConfig, path: Path) -> Member:
    """A member's folder checked as a single run's would be: identity, built objects, data, verified round."""
    migrate.adopt(mc, path, ident=path.name)  # a member folder named by its old run id
    folder = run_folder.RunFolder(path, ident=path.name)  # member_configs named the folder by the member's run id
    folder.check_identity(mc)
    ctx = build.prepare(mc, path)
    folder.check_data(ctx.dm.describe())
    return Member(mc, folder, ctx, folder.verified_rounds(1))


def attempt(cfg: DictConfig, folder: run_folder.RunFolder, members: list[Member]) -> dict:
    started = time.perf_counter()
    todo = [m for m in members if not m.complete]
    try:
        folder.record(cfg, None)
        folder.set_status("running", cfg, kind="population")
        for m in todo:
            start_member(m)
        if todo:
            train(todo, population={"size": len(members), "trained_with": len(todo)})
    except BaseException as exc:
        outcome = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
        for m in todo:
            if m.folder.read_summary().get("status") != "complete":
                m.folder.set_status(outcome, m.cfg, error=describe(exc))
        folder.set_status(outcome, cfg, kind="population", error=describe(exc))
        folder.attempt(outcome, time.perf_counter() - started, error=describe(exc))
        raise
    wall = time.perf_counter() - started
    objective = str(cfg.objective)
    finals = [m.folder.read_summary().get("final", {}) for m in members]
    values = [f[objective] for f in finals if f.get(objective) is not None]
    summary = {
        "status": "complete",
        "kind": "population",
        "run_id": folder.run_id(cfg),
        "members": [str(m.folder.run_dir.relative_to(folder.run_dir)) for m in members],
        "seeds": [int(m.cfg.seed) for m in members],
        "wall_seconds": round(wall, 2),
        "compute_seconds": round(sum(m.folder.read_summary().get("compute_seconds", 0.0) for m in members), 3),
        "final": {objective: sum(values) / len(values)} if values else {},
    }
    results.atomic_write_json(folder.summary_path, summary)
    folder.attempt("completed", wall, trained=len(todo))
    print(f"population folder: {folder.run_dir} ({len(members)} members, {len(todo)} trained)")
    return summary


def start_member(m: Member) -> None:
    """An unfinished member starts from its start (population training cannot resume inside a fit)."""
    rdir = results.round_dir(m.folder.run_dir, 0)
    if rdir.exists():
        shutil.rmtree(rdir)
    m.folder.record(m.cfg, m.ctx.dm.describe(), overrides=member_overrides(m.cfg))
    run_folder.init_snapshot(m.folder.run_dir, m.ctx.module.model)
    m.folder.set_status("running", m.cfg)


def member_overrides(mc: DictConfig) -> list[str] | None:
    """The overrides Hydra would have recorded for a single run of this member (None outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    task = list(HydraConfig.get().overrides.task)
    return [*(o for o in task if not o.lstrip("+~").startswith(("seed=", "population="))), f"seed={mc.seed}"]


def train(todo: list[Member], population: dict[str, int]) -> None:
    """One stacked fit for every member, then evaluation and records per member (as a single run's round)."""
    step, fit_seconds = fit(todo)
    for m in todo:
        finish_member(m, step, fit_seconds / len(todo), population)


def fit(todo: list[Member]) -> tuple[int, float]:
    cfg0, ctx0 = todo[0].cfg, todo[0].ctx
    dm0, schedule = ctx0.dm, ctx0.schedule
    for m in todo[1:]:
        if not torch.equal(m.ctx.dm.x_train, dm0.x_train):
            raise PrunelabError("population", "members see different training data", "use population=1")
    if dm0.train_dataloader().dataset.transform is not None:
        raise PrunelabError(
            "data.augment", "population training does not support training transforms", "use population=1"
        )
    pruners = [
        PruningCallback(
            m.ctx.criterion,
            m.ctx.schedule,
            m.ctx.rewind,
            0,
            results.SnapshotFolder(m.ctx.run_dir / "rewind"),
            int(m.cfg.seed),
            groups=m.ctx.groups,
            extra={"num_classes": m.ctx.dm.num_classes, "run_dir": str(m.ctx.run_dir)},
        )
        for m in todo
    ]
    modules = [m.ctx.module for m in todo]
    for module in modules:
        module.set_round(0)
        module.model.train()
    build.seed_all(epoch_seed(int(cfg0.seed), 0, 0))
    pop = Population([module.model for module in modules])
    optimizer = modules[0].optimizer_factory(params=list(pop.params.values()))

    def on_step(step: int) -> None:
        if schedule.in_fit and schedule.update_at(step):
            target = schedule.sparsity_at_step(step)
            pop.update_masks(lambda k, member: pruners[k].prune(member, target=target, rewind=False), optimizer)

    start, step = time.perf_counter(), 0
    seeds = [int(m.ctx.dm.seed) for m in todo]
    for epoch in range(int(cfg0.trainer.max_epochs)):
        step, loss_sum, correct = train_epoch(
            pop,
            optimizer,
            lambda k, logits, t: modules[k].loss_fn(logits, t),
            dm0.x_train,
            dm0.y_train,
            dm0.batch_size,
            seeds,
            epoch,
            on_step=on_step,
            step=step,
            per_member_loss=True,
        )
        for k, member_model in enumerate(pop.sync_to_members()):
            end_of_epoch(todo[k], member_model, epoch, step, float(loss_sum[k]), int(correct[k]))
    return step, time.perf_counter() - start


def end_of_epoch(m: Member, model: torch.nn.Module, epoch: int, step: int, loss_sum: float, correct: int) -> None:
    """What a Lightning epoch end does for one member: divergence check, validation, best-epoch tracking."""
    n = len(m.ctx.dm.y_train)
    if not torch.isfinite(torch.tensor(loss_sum)):
        raise PrunelabError(
            "optimizer.lr",
            f"training diverged (non-finite loss) in member seed={m.cfg.seed}, epoch {epoch}",
            "lower optimizer.lr",
        )
    val = m.ctx.module.evaluate("val", m.ctx.dm.val_dataloader())
    m.history.append(
        (
            step - 1,
            {"train/loss": loss_sum / n, "train/acc": correct / n, "prune/round": 0.0, "epoch": float(epoch), **val},
        )
    )
    monitor = None if m.ctx.schedule.in_fit else m.cfg.monitor.metric
    value = val.get(monitor) if monitor is not None else None
    better = (lambda a, b: a > b) if m.cfg.monitor.mode == "max" else (lambda a, b: a < b)
    if value is not None and (m.best[0] is None or better(value, m.best[0])):
        m.best = (value, copy.deepcopy(model.state_dict()), epoch)


def finish_member(m: Member, step: int, fit_share: float, population: dict[str, int]) -> None:
    """Evaluate, record and summarise one member with the single-run round code."""
    member_start = time.perf_counter() - fit_share
    module, ctx = m.ctx.module, m.ctx
    kept = "population-last"
    if m.best[1] is not None:
        module.model.load_state_dict(m.best[1])
        kept = f"population-best-epoch{m.best[2]:03d}"
    loggers = ctx.loggers = build.build_loggers(member_logger_config(m))
    try:
        for s, metrics in m.history:
            for lg in loggers:
                lg.log_metrics(metrics, step=s)
        trainer = build.make_trainer(m.cfg, results.round_dir(ctx.run_dir, 0), [], loggers)
        val = evaluate(ctx, trainer)
        row = record_round(
            ctx,
            0,
            trainer,
            kept,
            fit_share,
            val,
            member_start,
            epochs=int(m.cfg.trainer.max_epochs),
            step=step,
            loop="population",
        )
    except BaseException:
        build.finish_loggers(loggers, "failed")
        raise
    build.finish_loggers(loggers, "success")
    results.write_results(ctx.run_dir, [row])
    wall = time.perf_counter() - member_start
    m.folder.complete(ctx, [row], wall, population=population)
    m.folder.attempt("completed", wall, population=population["trained_with"])


def member_logger_config(m: Member) -> DictConfig:
    """The member's logger options with its own folder as ``save_dir``."""
    mc = copy.deepcopy(m.cfg)
    with open_dict(mc):
        for spec in (mc.get("logger") or {}).values():
            if spec is not None and "save_dir" in spec:
                spec.save_dir = str(m.folder.run_dir)
    return mc
