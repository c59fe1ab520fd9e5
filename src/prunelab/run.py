"""The round loop: build objects from the config, one fresh Trainer per round, skip finished rounds.

Round 0 trains the dense model; round r > 0 prunes (PruningCallback, at the start of its fit), rewinds and
retrains. After each fit the checkpoint chosen by ``monitor`` is loaded, validated and tested, and the round's
record is written; ``metrics.json`` is written last and marks the round finished. Rerunning the same command in
the same folder skips finished rounds and resumes an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf

from prunelab import results as RS
from prunelab.config import identity, run_id
from prunelab.errors import PrunelabError, describe
from prunelab.metrics import classification_metrics, worst_class
from prunelab.module import ClassifierModule, epoch_seed
from prunelab.pruning import masks as M
from prunelab.pruning import rewind as R
from prunelab.pruning import structured as S
from prunelab.pruning.callback import PruningCallback
from prunelab.pruning.groups import filter_groups
from prunelab.pruning.structure import count_flops, export_report
from prunelab.quantize import predict, quantize, serialized_bytes
from prunelab.sweep import record_attempt

log = logging.getLogger("prunelab")

warnings.filterwarnings("ignore", ".*does not have many workers.*")
logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)  # per-fit GPU/TPU/tip lines
warnings.filterwarnings("ignore", ".*LeafSpec.*")
warnings.filterwarnings("ignore", ".*overridden `transfer_batch_to_device`.*")
warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")  # a resumed round
warnings.filterwarnings("ignore", ".*the number of training batches.*")
# DDP: every rank evaluates the whole split and computes identical epoch metrics, so no cross-rank sync is needed
warnings.filterwarnings("ignore", ".*sync_dist=True.*")


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- building ---------------------------------------------------------------------------------------------------
def make(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(cfg[key])``, with Hydra's wrapped errors turned back into one-line PrunelabErrors."""
    try:
        return instantiate(cfg[key], **kwargs)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, PrunelabError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        inner = exc.__cause__ or exc
        first = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
        raise PrunelabError(
            key, f"cannot build {cfg[key].get('_target_', key)}: {first}", f"check the options under '{key}'"
        ) from exc


def build_data(cfg: DictConfig):
    dm = make(cfg, "data", _convert_="all")
    dm.setup()
    return dm


def build_model(cfg: DictConfig, dm, structured: bool = False) -> tuple[torch.nn.Module, list]:
    """The model with masks attached; for structured criteria also its filter groups (and companion masks)."""
    seed_all(cfg.seed)
    model = make(cfg, "model", input_shape=dm.input_shape, num_classes=dm.num_classes, _convert_="all")
    names = M.prunable_names(model, include=list(cfg.prune.include), exclude=list(cfg.prune.exclude))
    if cfg.prune.get("exclude_output_layer", False) and names:
        last = names[-1].rpartition(".")[0]  # the module that produces the logits
        names = [n for n in names if n.rpartition(".")[0] != last]
    if not names:
        raise PrunelabError(
            "prune.include",
            "no tensor matches the include/exclude patterns",
            "e.g. prune.include=['*.weight']",
        )
    M.attach_masks(model, names)
    if not structured:
        return model, []
    groups = filter_groups(model)
    if not groups:
        raise PrunelabError("criterion", f"{type(model).__name__} has no structurally prunable conv filters",
                            "use an unstructured criterion, or a conv model")  # fmt: skip
    M.attach_masks(model, S.companion_names(groups, model), primary=False)
    return model, groups


def load_state_file(path: Path, key: str) -> dict[str, torch.Tensor]:
    """A state_dict from a prunelab ``model.pt``, a Lightning checkpoint or a plain state_dict file."""
    if not Path(path).exists():
        raise PrunelabError(key, f"checkpoint {path} does not exist", "give the path of a .pt or .ckpt file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PrunelabError(
            key,
            f"cannot read checkpoint {path} ({type(exc).__name__})",
            "the file is truncated or not a torch checkpoint; delete it",
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a Lightning checkpoint
        return {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PrunelabError(key, f"{path} holds no state_dict", "give a prunelab model.pt or a Lightning .ckpt")
    return obj


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], key: str, path: Path) -> None:
    """Load strictly; a missing mask is allowed (plain dense weights), anything else that does not fit is an error."""
    own = model.state_dict()
    masks = M.mask_state_keys(model)
    plain = {_masked_key(k, own): v for k, v in state.items()}
    missing = [k for k in own if k not in plain and k not in masks]
    unexpected = [k for k in plain if k not in own]
    wrong = [k for k, v in plain.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = (
            (f"missing {missing[:2]}" if missing else "")
            + (f" unexpected {unexpected[:2]}" if unexpected else "")
            + (f" wrong shape {wrong[:2]}" if wrong else "")
        )
        raise PrunelabError(
            key,
            f"checkpoint {path} does not fit the model ({detail.strip()})",
            "use a checkpoint made with the same model and data config",
        )
    model.load_state_dict(plain, strict=False)
    M.apply_masks_to_weights(model)


def _masked_key(key: str, own: dict) -> str:
    """Map a dense key ``fc.weight`` onto a masked model's ``fc.parametrizations.weight.original``."""
    if key in own:
        return key
    mod, _, attr = key.rpartition(".")
    alt = f"{mod}.parametrizations.{attr}.original" if mod else f"parametrizations.{attr}.original"
    return alt if alt in own else key


def build_loggers(cfg: DictConfig, run_dir: Path) -> list[Any]:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        lg = instantiate(spec)
        loggers.append(lg)
        if name == "wandb" and RS.is_writer():  # other DDP ranks hold a dummy experiment
            lg.experiment.config.update(OmegaConf.to_container(cfg, resolve=True), allow_val_change=True)
    return loggers


def finish_loggers(loggers: list[Any], status: str) -> None:
    for lg in loggers:
        try:
            lg.finalize(status)
            if hasattr(lg, "_experiment") and lg._experiment is not None and hasattr(lg._experiment, "finish"):
                lg._experiment.finish(exit_code=0 if status == "success" else 1)
        except Exception as exc:  # never let a logger hide the run's own outcome
            log.warning("logger %s did not close cleanly: %s", type(lg).__name__, exc)


# -- checks made before any training ----------------------------------------------------------------------------
def check_run_folder(cfg: DictConfig, run_dir: Path, name: str = "run_config.yaml") -> None:
    saved = run_dir / name
    if saved.exists():
        old = OmegaConf.load(saved)
        if run_id(old) != run_id(cfg):
            diff = [k for k in identity(cfg) if identity(cfg).get(k) != identity(old).get(k)]
            raise PrunelabError(
                "hydra.run.dir",
                f"{run_dir} holds a run with a different config (differs in {', '.join(diff)})",
                "choose another folder or delete this one",
            )
    else:
        RS.atomic_write_text(saved, OmegaConf.to_yaml(cfg, resolve=True))


def round_steps(dm, cfg: DictConfig) -> int:
    """Optimizer steps in one round's fit (epochs x batches, after limit_train_batches and accumulation)."""
    batches = len(dm.train_dataloader())
    limit = cfg.trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    return batches // int(cfg.trainer.get("accumulate_grad_batches") or 1) * int(cfg.trainer.max_epochs)


def check_schedule(schedule, dm, cfg: DictConfig) -> None:
    if getattr(schedule, "in_fit", False) and schedule.end > (steps := round_steps(dm, cfg)):
        raise PrunelabError("schedule.end_step", f"end step {schedule.end} is beyond the fit's {steps} steps",
                            f"use schedule.end_step <= {steps} or more trainer.max_epochs")  # fmt: skip


def check_rewind(rewind: R.Rewind, dm, cfg: DictConfig) -> None:
    if rewind.kind != "step":
        return
    steps = round_steps(dm, cfg)
    if rewind.step > steps:
        raise PrunelabError(
            "rewind.step",
            f"step {rewind.step} is beyond round 0's {steps} training steps",
            f"use rewind.step <= {steps}",
        )


# -- one round --------------------------------------------------------------------------------------------------
def make_trainer(cfg: DictConfig, rdir: Path, callbacks: list, loggers: list) -> pl.Trainer:
    if cfg.trainer.get("enable_progress_bar", True):
        refresh = int(cfg.get("progress_bar_refresh", 25))
        if refresh < 1:
            raise PrunelabError("progress_bar_refresh", f"{refresh} is not a step count", "use an integer >= 1")
        callbacks = [*callbacks, TQDMProgressBar(refresh_rate=refresh)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(rdir))


def resume_checkpoint(rdir: Path) -> Path | None:
    """The round's last checkpoint if it can be read; an unreadable one is set aside and the round redone."""
    last = rdir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return None
    try:
        torch.load(last, map_location="cpu", weights_only=True)
        return last
    except Exception as exc:
        log.warning("checkpoint %s is unreadable (%s): redoing round %d from its start", last, exc, int(rdir.name[1:]))
        if RS.is_writer():
            shutil.move(str(rdir / "checkpoints"), str(rdir / f"checkpoints.broken-{int(time.time())}"))
        return None


def run_round(ctx: dict, r: int) -> dict:
    cfg, run_dir, module, dm = ctx["cfg"], ctx["run_dir"], ctx["module"], ctx["dm"]
    rdir = RS.round_dir(run_dir, r)
    resume = resume_checkpoint(rdir)
    if resume is None and (rdir / "checkpoints").exists() and RS.is_writer():
        shutil.rmtree(rdir / "checkpoints")
    seed_all(epoch_seed(cfg.seed, r, 0))
    module.set_round(r)
    # an in-fit (gradual) schedule keeps the last epoch: an earlier "best" one would not have the final masks
    monitor = None if getattr(ctx["schedule"], "in_fit", False) else cfg.monitor.metric
    ckpt = ModelCheckpoint(
        dirpath=str(rdir / "checkpoints"),
        filename="best-epoch{epoch:03d}",
        monitor=monitor,
        mode=cfg.monitor.mode,
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    pruner = PruningCallback(
        ctx["criterion"],
        ctx["schedule"],
        ctx["rewind"],
        r,
        run_dir / "rewind",
        cfg.seed,
        batches=lambda: iter(dm.train_dataloader()),
        groups=ctx["groups"],
        extra={"num_classes": dm.num_classes, "run_dir": str(run_dir)},
        min_filters=int(cfg.prune.get("min_filters", 1)),
    )
    trainer = make_trainer(cfg, rdir, [ckpt, pruner, *ctx["extra_callbacks"]], ctx["loggers"])
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None, weights_only=True)
    fit_s = time.perf_counter() - start
    best = Path(ckpt.best_model_path) if ckpt.best_model_path else rdir / "checkpoints" / "last.ckpt"
    if best.exists():
        load_into(module.model, load_state_file(best, "checkpoint"), "checkpoint", best)
    elif int(cfg.trainer.max_epochs) > 0:
        raise PrunelabError("trainer", f"round {r} finished without a checkpoint", "check trainer.max_epochs")
    else:  # max_epochs=0: evaluate the (pruned) weights as they are, e.g. SNIP without training
        best = rdir / "untrained"
    module.last_metrics = {}
    trainer.validate(module, datamodule=dm, verbose=False)
    val = module.last_metrics.get("val", {})
    trainer.test(module, datamodule=dm, verbose=False)
    return finish_round(ctx, r, rdir, trainer, best, fit_s, val, start)


def finish_round(
    ctx: dict,
    r: int,
    rdir: Path,
    trainer: pl.Trainer,
    best: Path,
    fit_s: float,
    val: dict,
    start: float,
    epochs: int | None = None,
    step: int | None = None,
) -> dict:
    """Evaluate, export and save a round; ``epochs``/``step`` when the fit ran outside ``trainer`` (populations)."""
    epochs = trainer.current_epoch if epochs is None else epochs
    step = trainer.global_step if step is None else step
    module, dm = ctx["module"], ctx["dm"]
    rdir.mkdir(parents=True, exist_ok=True)
    test = module.last_metrics["test"]
    probs, labels = module.test_outputs
    stats = M.sparsity_stats(module.model)
    counts = M.count_parameters(module.model)
    flops = count_flops(module.model, dm.input_shape)
    worst, worst_recall = worst_class(test, dm.class_names)
    row = {
        "round": r,
        "sparsity": stats["sparsity"],
        "target_sparsity": ctx["schedule"].sparsity_at(r),
        **counts,
        **flops,
        "best_checkpoint": best.name,
        "epochs": epochs,
        "fit_seconds": round(fit_s, 3),
        "worst_class": worst,
        "worst_class_recall": worst_recall,
        **{k: v for k, v in val.items() if k != "prune/round"},
        **test,
    }
    row["prune/round"], row["prune/sparsity"], row["prune/flops"] = r, stats["sparsity"], flops["flops"]
    if ctx.get("groups"):
        row.update(S.filter_stats(S.alive_filters(module.model, ctx["groups"])))
        row["prune/filters_removed_share"] = row["filters_removed_share"]
        if ctx["cfg"].get("export", {}).get("compact", True) and RS.is_writer():
            sample = next(iter(dm.test_dataloader()))[0][:64]
            compacted, report = export_report(module.model, ctx["groups"], sample,
                                              int(ctx["cfg"].get("export", {}).get("latency_reps", 20)))  # fmt: skip
            row.update(report)
            torch.save(compacted, rdir / "compact.pt")
    if RS.is_writer():
        torch.save(module.model.state_dict(), rdir / "model.pt")
        torch.save(M.get_masks(module.model), rdir / "masks.pt")
    last_round = r == ctx["schedule"].num_rounds - 1
    if RS.is_writer() and (last_round or ctx["cfg"].get("quantize", {}).get("rounds") == "all"):
        quantize_round(ctx, r, rdir, step)
    RS.save_predictions(rdir / "predictions.npz", probs.numpy(), labels.numpy())
    row["round_seconds"] = round(time.perf_counter() - start, 3)  # fit + evaluation + export: what a rerun saves
    per_tensor = {k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith("sparsity/")}
    RS.atomic_write_json(
        rdir / "metrics.json",
        {**row, "confusion_matrix": _confusion(probs, labels, dm), "sparsity_per_tensor": per_tensor},
    )
    numeric = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for lg in ctx["loggers"]:
        lg.log_metrics({f"round/{k}" if "/" not in k else k: v for k, v in numeric.items()}, step=step)
    return row


def quantize_round(ctx: dict, r: int, rdir: Path, step: int) -> None:
    """Evaluate post-training quantized copies of the round's model with the same metrics and saved predictions."""
    qcfg = ctx["cfg"].get("quantize") or {}
    methods = list(qcfg.get("methods") or [])
    if not methods:
        return
    dm, module = ctx["dm"], ctx["module"]
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    calibration = [b for _, b in zip(range(int(qcfg.get("calibration_batches", 8))), loader)]
    ref_probs, _ = module.test_outputs
    for method in methods:
        qmodel = quantize(module.model, method, calibration)
        probs, labels, seconds = predict(qmodel, dm.test_dataloader())
        metrics = classification_metrics(probs, labels, dm.class_names, "test", dm.positive_class)
        worst, worst_recall = worst_class(metrics, dm.class_names)
        row = {"round": r, "method": method, "sparsity": M.sparsity_stats(module.model)["sparsity"],
               "model_bytes": serialized_bytes(qmodel), "test_seconds_cpu": round(seconds, 4),
               "agreement_with_float": float((probs.argmax(1) == ref_probs.argmax(1)).float().mean()),
               "worst_class": worst, "worst_class_recall": worst_recall, **metrics}  # fmt: skip
        qdir = rdir / "quant" / method
        RS.save_predictions(qdir / "predictions.npz", probs.numpy(), labels.numpy())
        RS.atomic_write_json(qdir / "metrics.json", row)
        for lg in ctx["loggers"]:
            lg.log_metrics({f"quant/{method}/{k}": v for k, v in metrics.items()}, step=step)
        log.info("round %d %s: test acc %.4f (float agreement %.4f)", r, method, metrics["test/acc"],
                 row["agreement_with_float"])  # fmt: skip


def _confusion(probs: torch.Tensor, labels: torch.Tensor, dm) -> list[list[int]]:
    c = dm.num_classes
    idx = labels * c + probs.argmax(1)
    return torch.bincount(idx, minlength=c * c).view(c, c).tolist()


# -- the whole run ----------------------------------------------------------------------------------------------
def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or resume, or just report) the experiment described by ``cfg`` in ``run_dir``."""
    run_dir = Path(run_dir)
    if int(cfg.get("population") or 1) > 1:
        from prunelab.population_run import run_population

        return run_population(cfg, run_dir)
    if int(cfg.get("population") or 1) < 1:
        raise PrunelabError("population", f"{cfg.population} members", "use population >= 1")
    summary_path = run_dir / "summary.json"
    if summary_path.exists() and RS.read_json(summary_path).get("status") == "complete":
        summary = RS.read_json(summary_path)
        record_attempt(run_dir, "skipped", 0.0, saved_seconds=summary.get("compute_seconds", summary["wall_seconds"]))
        print(f"run already complete in {run_dir}: nothing to do")
        print(RS.format_table(RS.load_results(run_dir)))
        return summary
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(run_dir)
    started = time.perf_counter()
    before = RS.finished_rounds(run_dir)  # from an earlier, interrupted attempt
    resumed = bool(before) or any(run_dir.glob("rounds/r*/checkpoints/last.ckpt"))
    saved = RS.compute_seconds(before)
    RS.atomic_write_json(summary_path, {"status": "running", "run_id": run_id(cfg)})
    loggers: list[Any] = []
    try:
        ctx = prepare(cfg, run_dir)
        loggers = ctx["loggers"] = build_loggers(cfg, run_dir)
        rows = loop(ctx)
    except BaseException as exc:
        error = describe(exc)
        RS.atomic_write_json(summary_path, {"status": "failed", "run_id": run_id(cfg), "error": error})
        record_attempt(run_dir, "failed", time.perf_counter() - started, error=error)
        finish_loggers(loggers, "failed")
        raise
    summary = summarize(cfg, run_dir, rows, time.perf_counter() - started, ctx)
    record_attempt(run_dir, "resumed" if resumed else "completed", summary["wall_seconds"], saved_seconds=saved,
                   rounds_skipped=len(before))  # fmt: skip
    finish_loggers(loggers, "success")
    if RS.is_writer():
        print(f"run folder: {run_dir}")
        print(RS.format_table(rows))
    return summary


def _check_writable(run_dir: Path) -> None:
    probe = run_dir / ".write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PrunelabError(
            "paths.output_dir",
            f"cannot write to {run_dir} ({exc.strerror})",
            "point paths.output_dir (or PRUNELAB_OUTPUT_DIR) at a writable folder",
        ) from exc


def prepare(cfg: DictConfig, run_dir: Path) -> dict:
    """Everything that can fail on bad input happens here, before any training."""
    schedule = make(cfg, "schedule")
    rewind = make(cfg, "rewind")
    criterion = make(cfg, "criterion")
    dm = build_data(cfg)
    model, groups = build_model(cfg, dm, getattr(criterion, "structured", False))
    if hasattr(schedule, "bind"):
        if not groups:
            raise PrunelabError("schedule", "the progressive schedule prunes kernels: it needs a structured criterion",
                                "e.g. criterion=activation_energy")  # fmt: skip
        if rewind.kind != "none":
            raise PrunelabError(
                "rewind",
                f"rewind={rewind.kind} would reset the layers a progressive round freezes",
                "use rewind=none (progressive retraining continues from the trained weights)",
            )
        schedule.bind(groups)
    if cfg.get("init_weights"):
        load_into(model, load_state_file(Path(cfg.init_weights), "init_weights"), "init_weights", cfg.init_weights)
    check_rewind(rewind, dm, cfg)
    check_schedule(schedule, dm, cfg)
    check_run_folder(cfg, run_dir)
    init_path = run_dir / "rewind" / "init.pt"
    if init_path.exists():
        R.restore(model, R.load_snapshot(init_path))
    elif RS.is_writer():
        R.save_snapshot(model, init_path)
    loss = make(cfg, "loss", _convert_="all")
    if hasattr(loss, "configure"):
        loss.configure(class_counts=dm.class_counts("train"), positive_class=dm.positive_class)
    optimizer = make(cfg, "optimizer")
    try:  # a wrong optimizer option would otherwise surface inside the first fit
        optimizer(params=[torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as exc:
        raise PrunelabError("optimizer", str(exc).splitlines()[0], "check the options under 'optimizer'") from exc
    module = ClassifierModule(
        model,
        loss,
        optimizer,
        dm.class_names,
        scheduler=make(cfg, "scheduler") if cfg.get("scheduler") else None,
        positive_class=dm.positive_class,
        seed=cfg.seed,
    )
    RS.atomic_write_json(run_dir / "data.json", dm.describe())
    return {
        "cfg": cfg,
        "run_dir": run_dir,
        "dm": dm,
        "module": module,
        "schedule": schedule,
        "rewind": rewind,
        "criterion": criterion,
        "loggers": [],
        "extra_callbacks": [],
        "groups": groups,
    }


def check_kept_model(run_dir: Path, n: int) -> None:
    """The last finished round's ``model.pt`` starts the next round: if it cannot be read, that round is set aside
    (renamed ``rNN.broken-<time>``) and redone, with a warning naming the file; never silently skipped."""
    done = [r for r in range(n) if RS.round_done(run_dir, r)]
    if not done or len(done) == n or not RS.is_writer():
        return
    last = RS.round_dir(run_dir, done[-1])
    try:
        load_state_file(last / "model.pt", "checkpoint")
    except PrunelabError as exc:
        log.warning("%s: redoing round %d", exc.one_line(), done[-1])
        shutil.move(str(last), str(last.with_name(f"{last.name}.broken-{int(time.time())}")))


def loop(ctx: dict) -> list[dict]:
    run_dir, module, n = ctx["run_dir"], ctx["module"], ctx["schedule"].num_rounds
    check_kept_model(run_dir, n)
    rows = []
    for r in range(n):
        if RS.round_done(run_dir, r):
            if not RS.round_done(run_dir, r + 1):  # the next round starts from this one's kept model
                path = RS.round_dir(run_dir, r) / "model.pt"
                load_into(module.model, load_state_file(path, "checkpoint"), "checkpoint", path)
            log.info("round %d already finished: skipped", r)
            rows.append(RS.read_json(RS.round_dir(run_dir, r) / "metrics.json"))
            continue
        log.info("round %d/%d: target sparsity %.4f", r, n - 1, ctx["schedule"].sparsity_at(r))
        rows.append(run_round(ctx, r))
        RS.write_results(run_dir, n)
    return RS.write_results(run_dir, n) if RS.is_writer() else rows  # other DDP ranks: their own records


def summarize(cfg: DictConfig, run_dir: Path, rows: list[dict], wall: float, ctx: dict) -> dict:
    last = rows[-1]
    summary = {
        "status": "complete",
        "run_id": run_id(cfg),
        "name": cfg.name,
        "rounds": len(rows),
        "wall_seconds": round(wall, 2),  # this attempt
        "compute_seconds": RS.compute_seconds(rows),  # all attempts
        "final_sparsity": last["sparsity"],
        "final": last,
        "dense": rows[0],
        "classes": ctx["dm"].class_names,
    }
    RS.atomic_write_json(run_dir / "summary.json", summary)
    return summary
