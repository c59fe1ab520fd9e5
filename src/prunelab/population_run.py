"""``population=K``: one job trains K seeds of one config at once and writes K ordinary run folders.

The job's own folder is a *population folder*: ``summary.json`` (``"kind": "population"``, the members and their
status), ``population_config.yaml``, and ``members/<run id>/``: one complete run folder per member, named by the
member's own run id, i.e. the folder a single run with ``seed=<seed + k>`` would get, with the same files (rounds,
metrics, predictions, quantized rows, masks, logs) and ``.hydra/overrides.yaml`` naming its seed, so
``prunelab report`` and the paper tables treat members exactly as single runs.

Members are trained with :mod:`prunelab.population` (stacked state, one step for all). For MLPs the members'
weights, masks and predictions are bitwise those of K single runs (tested); evaluation, quantization and saving
then run per member through the same code as a single run. Supported: single-round schedules (gradual, dense),
models without BatchNorm, element-wise optimizers, data-free criteria, no LR scheduler, full training epochs,
one device; anything else fails before training with a one-line error naming the key.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from prunelab import results as RS
from prunelab.config import run_id
from prunelab.errors import PrunelabError, describe
from prunelab.population import Population, train_epoch
from prunelab.sweep import record_attempt

log = logging.getLogger("prunelab")


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
    from prunelab.run import make

    def no(key: str, what: str, fix: str) -> None:
        raise PrunelabError(key, f"population training does not support {what}", fix)

    schedule, criterion, trainer = make(cfg, "schedule"), make(cfg, "criterion"), cfg.trainer
    if schedule.num_rounds != 1:
        no("population", f"{schedule.num_rounds}-round schedules", "use population=1, or a gradual/dense schedule")
    if criterion.needs_data:
        no("population", "data-dependent criteria", "use population=1, or a data-free criterion (magnitude)")
    if getattr(criterion, "structured", False):
        no("population", "structured (filter) pruning", "use population=1")
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


def _write_overrides(mc: DictConfig, folder: Path) -> None:
    """``.hydra/overrides.yaml`` as Hydra would have written it for a single run of this member."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except Exception:  # not inside a Hydra job (the Python API): nothing to record
        return
    kept = [o for o in task if not o.lstrip("+~").startswith(("seed=", "population="))]
    RS.atomic_write_text(folder / ".hydra" / "overrides.yaml", OmegaConf.to_yaml([*kept, f"seed={mc.seed}"]))


def _member_loggers(mc: DictConfig, folder: Path) -> list[Any]:
    from prunelab.run import build_loggers

    with open_dict(mc):
        for spec in (mc.get("logger") or {}).values():
            if spec is not None and "save_dir" in spec:
                spec.save_dir = str(folder)
    return build_loggers(mc, folder)


def run_population(cfg: DictConfig, run_dir: Path) -> dict:
    """Train (or skip, if complete) the K members of ``cfg``; returns the population summary."""
    from prunelab.run import check_run_folder

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if summary_path.exists() and RS.read_json(summary_path).get("status") == "complete":
        summary = RS.read_json(summary_path)
        record_attempt(run_dir, "skipped", 0.0, saved_seconds=summary.get("compute_seconds", 0.0))
        print(f"population already complete in {run_dir}: nothing to do")
        return summary
    check_supported(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_folder(cfg, run_dir, "population_config.yaml")
    started = time.perf_counter()
    members = member_configs(cfg, run_dir)
    RS.atomic_write_json(summary_path, {"status": "running", "kind": "population", "run_id": run_id(cfg)})
    try:
        rows = _train_and_finish(members)
    except BaseException as exc:
        error = describe(exc)
        RS.atomic_write_json(summary_path, {"status": "failed", "kind": "population", "run_id": run_id(cfg),
                                            "error": error})  # fmt: skip
        record_attempt(run_dir, "failed", time.perf_counter() - started, error=error)
        raise
    wall = time.perf_counter() - started
    finals = [r["final"] for r in rows]
    objective = str(cfg.get("objective", "test/acc"))
    values = [f[objective] for f in finals if f.get(objective) is not None]
    summary = {
        "status": "complete",
        "kind": "population",
        "run_id": run_id(cfg),
        "members": [str(folder.relative_to(run_dir)) for _, folder in members],
        "seeds": [int(mc.seed) for mc, _ in members],
        "wall_seconds": round(wall, 2),
        "compute_seconds": round(sum(r.get("compute_seconds", 0.0) for r in rows), 3),
        "final": {objective: sum(values) / len(values)} if values else {},
    }
    RS.atomic_write_json(summary_path, summary)
    record_attempt(run_dir, "completed", wall)
    print(f"population folder: {run_dir} ({len(members)} members)")
    return summary


def _train_and_finish(members: list[tuple[DictConfig, Path]]) -> list[dict]:
    from prunelab.run import prepare, summarize

    todo, results = [], {}
    for mc, folder in members:
        summary = folder / "summary.json"
        if summary.exists() and RS.read_json(summary).get("status") == "complete":
            results[str(folder)] = RS.read_json(summary)
            continue
        if folder.exists():  # an interrupted member: population training restarts it from its start
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        todo.append((mc, folder, prepare(mc, folder)))
    if todo:
        _train(todo)
    for mc, folder, ctx in todo:
        rows = RS.write_results(folder, 1)
        summary = summarize(mc, folder, rows, ctx["wall_seconds"], ctx)
        summary["population"] = {"size": len(members), "trained_with": len(todo)}
        RS.atomic_write_json(folder / "summary.json", summary)
        record_attempt(folder, "completed", ctx["wall_seconds"], population=len(todo))
        results[str(folder)] = summary
    return [results[str(folder)] for _, folder in members]


def _train(todo: list[tuple[DictConfig, Path, dict]]) -> None:
    """One stacked fit for every member, then evaluation and saving per member (as ``run_round`` does)."""
    from prunelab.module import epoch_seed
    from prunelab.pruning.callback import PruningCallback
    from prunelab.run import finish_loggers, finish_round, make_trainer, seed_all

    cfg0, _, ctx0 = todo[0]
    schedule = ctx0["schedule"]
    modules = [ctx["module"] for _, _, ctx in todo]
    seeds = [int(ctx["dm"].seed) for _, _, ctx in todo]
    dm0 = ctx0["dm"]
    for _, _, ctx in todo[1:]:
        if not torch.equal(ctx["dm"].x_train, dm0.x_train):
            raise PrunelabError("population", "members see different training data", "use population=1")
    pruners = [
        PruningCallback(ctx["criterion"], ctx["schedule"], ctx["rewind"], 0, folder / "rewind", int(mc.seed),
                        groups=ctx["groups"], extra={"num_classes": ctx["dm"].num_classes, "run_dir": str(folder)})
        for mc, folder, ctx in todo
    ]  # fmt: skip
    for m in modules:
        m.set_round(0)
        m.model.train()
    seed_all(epoch_seed(int(cfg0.seed), 0, 0))
    pop = Population([m.model for m in modules])
    optimizer = modules[0].optimizer_factory(params=list(pop.params.values()))
    in_fit = getattr(schedule, "in_fit", False)
    monitor = None if in_fit else cfg0.monitor.metric
    better = (lambda a, b: a > b) if cfg0.monitor.mode == "max" else (lambda a, b: a < b)
    best = [(None, None, -1)] * len(todo)  # (value, state, epoch) per member
    history: list[list[tuple[int, dict]]] = [[] for _ in todo]

    def on_step(step: int) -> None:
        if in_fit and schedule.update_at(step):
            target = schedule.sparsity_at_step(step)
            pop.update_masks(lambda k, member: pruners[k].prune(member, target=target, rewind=False), optimizer)

    x, y = dm0.x_train, dm0.y_train
    transform = dm0.train_dataloader().dataset.transform
    if transform is not None:
        raise PrunelabError("data.augment", "population training does not support training transforms",
                            "use population=1")  # fmt: skip
    start = time.perf_counter()
    step = 0
    for epoch in range(int(cfg0.trainer.max_epochs)):
        step, loss_sum, correct = train_epoch(
            pop, optimizer, lambda k, logits, t: modules[k].loss_fn(logits, t), x, y, dm0.batch_size, seeds, epoch,
            on_step=on_step, step=step, per_member_loss=True,
        )  # fmt: skip
        for k, (module, member) in enumerate(zip(modules, pop.sync_to_members())):
            if not torch.isfinite(loss_sum[k]):
                raise PrunelabError("optimizer.lr", f"training diverged (non-finite loss) in member {k}, epoch "
                                    f"{epoch}", "lower optimizer.lr")  # fmt: skip
            metrics = {"train/loss": float(loss_sum[k]) / len(y), "train/acc": float(correct[k]) / len(y),
                       "prune/round": 0.0, "epoch": float(epoch)}  # fmt: skip
            val = _validate(module, todo[k][2]["dm"])
            metrics.update(val)
            history[k].append((step - 1, metrics))
            value = val.get(monitor) if monitor is not None else None
            if value is not None and (best[k][0] is None or better(value, best[k][0])):
                best[k] = (value, copy.deepcopy(member.state_dict()), epoch)
    fit_share = (time.perf_counter() - start) / len(todo)
    for k, ((mc, folder, ctx), module) in enumerate(zip(todo, modules)):
        member_start = time.perf_counter() - fit_share
        kept = "population-last"
        if best[k][1] is not None:
            module.model.load_state_dict(best[k][1])
            kept = f"population-best-epoch{best[k][2]:03d}"
        _write_overrides(mc, folder)
        loggers = ctx["loggers"] = _member_loggers(mc, folder)
        try:
            for s, metrics in history[k]:
                for lg in loggers:
                    lg.log_metrics(metrics, step=s)
            rdir = RS.round_dir(folder, 0)
            trainer = make_trainer(mc, rdir, [], loggers)
            module.last_metrics = {}
            trainer.validate(module, datamodule=ctx["dm"], verbose=False)
            val = module.last_metrics.get("val", {})
            trainer.test(module, datamodule=ctx["dm"], verbose=False)
            finish_round(ctx, 0, rdir, trainer, Path(kept), fit_share, val, member_start,
                         epochs=int(mc.trainer.max_epochs), step=step)  # fmt: skip
        except BaseException:
            finish_loggers(loggers, "failed")
            raise
        finish_loggers(loggers, "success")
        ctx["wall_seconds"] = time.perf_counter() - member_start


@torch.no_grad()
def _validate(module, dm) -> dict[str, float]:
    """The per-epoch validation a Lightning fit runs, with the module's own metric code."""
    was = module.model.training
    module.model.eval()
    module.on_validation_epoch_start()
    for batch in dm.val_dataloader():
        module._gather("val", batch)
    out = module._finish("val") if module._gathered["val"] else {}
    module.model.train(was)
    return out
