"""Objects from the config: data, model (masks attached), criterion, schedule, rewind, loss, module, loggers,
trainers. Nothing here writes to the run folder; :func:`prepare` builds a whole :class:`RunContext` and runs the
checks that need the built objects (:mod:`prunelab.runner.preflight`)."""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prunelab.config.instantiate import make
from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.groups import KINDS, UnitGroup, check_kinds, unit_groups
from prunelab.runner import preflight
from prunelab.runner.context import RunContext
from prunelab.runs import files as results
from prunelab.training import fastpaths
from prunelab.training.console import Progress
from prunelab.training.module import ClassifierModule

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


def build_data(cfg: DictConfig) -> Any:
    dm = make(cfg, "data", _convert_="all")
    dm.setup()
    return dm


def build_model(
    cfg: DictConfig, dm: Any, structured: bool = False, scorable: tuple[str, ...] = KINDS
) -> tuple[torch.nn.Module, list[UnitGroup]]:
    """The model with masks attached; for structured criteria also its groups (``prune.group_kinds``, each a kind
    the criterion can score: ``scorable``) and their companion masks."""
    seed_all(cfg.seed)
    model = make(cfg, "model", input_shape=dm.input_shape, num_classes=dm.num_classes, _convert_="all")
    names = masking.prunable_names(model, include=list(cfg.prune.include), exclude=list(cfg.prune.exclude))
    if cfg.prune.exclude_output_layer and names:
        last = names[-1].rpartition(".")[0]  # the module that produces the logits
        names = [n for n in names if n.rpartition(".")[0] != last]
    if not names:
        included = masking.prunable_names(model, include=list(cfg.prune.include), exclude=[])
        key = "prune.exclude" if included else "prune.include"
        raise PrunelabError(
            key,
            f"no tensor matches the include patterns {list(cfg.prune.include)}"
            if not included
            else f"the exclude patterns {list(cfg.prune.exclude)} leave none of the {len(included)} included tensors",
            "e.g. prune.include=['*.weight'] prune.exclude=[]",
        )
    fastpaths.install_mask_fast_path()
    masking.attach_masks(model, names)
    if not structured:
        return model, []
    kinds = check_kinds(cfg.prune.group_kinds, scorable)
    prunable = set(names)  # a group whose producer the patterns leave out (prune.exclude, exclude_output_layer) is not
    groups = [g for g in unit_groups(model, kinds) if all(f"{p}.weight" in prunable for p in g.producers)]
    if not groups:
        raise PrunelabError(
            "prune.group_kinds",
            f"{type(model).__name__} has no structurally prunable group of kind {list(kinds)}",
            "add kinds (e.g. [all]) or use an unstructured criterion",
        )
    unsupported = sorted({g.kind for g in groups} - set(scorable))
    if unsupported:
        raise PrunelabError(
            "prune.group_kinds",
            f"the criterion cannot score {unsupported} groups",
            f"use kinds among {list(scorable)} or another criterion",
        )
    # a consumer left out of the patterns still loses the input columns of removed units: a companion mask
    consumers = sorted({f"{c}.weight" for g in groups for c in g.consumers} - prunable)
    masking.attach_masks(model, units.companion_names(groups, model) + consumers, primary=False)
    return model, groups


def fresh_model(cfg: DictConfig, dm: Any) -> torch.nn.Module:
    """The run's architecture, unmasked, initialised with ``seed + REINIT_SEED_OFFSET`` (the reinit control)."""
    from prunelab.pruning.rewind import REINIT_SEED_OFFSET

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:  # the run's own random streams are left where they were
        seed_all(int(cfg.seed) + REINIT_SEED_OFFSET)
        return make(cfg, "model", input_shape=dm.input_shape, num_classes=dm.num_classes, _convert_="all")
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def load_state_file(path: Path | str, key: str) -> dict[str, torch.Tensor]:
    """A state_dict from a prunelab ``model.pt``, a Lightning checkpoint or a plain state_dict file."""
    path = Path(path)
    if not path.exists():
        raise PrunelabError(key, f"checkpoint {path} does not exist", "give the path of a .pt or .ckpt file")
    from prunelab.runs.files import load_tensors

    obj = load_tensors(path, key, "give a complete .pt or .ckpt file of weights")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):  # a Lightning checkpoint
        return {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PrunelabError(key, f"{path} holds no state_dict", "give a prunelab model.pt or a Lightning .ckpt")
    return obj


def sliced_head(state: dict[str, torch.Tensor], model: torch.nn.Module, dm: Any) -> dict[str, torch.Tensor]:
    """``model.slice_head``: a full-class checkpoint's classifier rows (and biases) cut to ``data.classes``, in their
    order: every tensor whose first dimension is the dataset's class count where the model's is the subset's."""
    full, rows = len(dm.all_class_names), dm.class_indices
    own, out, sliced = model.state_dict(), dict(state), []
    for k, v in state.items():
        target = own.get(masking.stored_key(k, own))
        if target is None or v.dim() == 0 or v.shape[0] != full or target.shape[0] != len(rows):
            continue
        if tuple(v.shape[1:]) == tuple(target.shape[1:]):
            out[k] = v[torch.tensor(rows)].clone()
            sliced.append(k)
    if not sliced:
        raise PrunelabError(
            "model.slice_head",
            f"init_weights has no classifier with {full} outputs to slice to {len(rows)} classes",
            "give the checkpoint of a model trained on all the dataset's classes",
        )
    log.info("model.slice_head: %s sliced to classes %s", ", ".join(sliced), dm.class_names)
    return out


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], key: str, path: Path | str) -> None:
    """Load strictly; a missing mask is allowed (plain dense weights), anything else that does not fit is an error."""
    own = model.state_dict()
    mask_keys = masking.mask_state_keys(model)
    plain = {masking.stored_key(k, own): v for k, v in state.items()}
    missing = [k for k in own if k not in plain and k not in mask_keys]
    unexpected = [k for k in plain if k not in own]
    wrong = [k for k, v in plain.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        found = (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        detail = " ".join(f"{label} {keys[:2]}" for label, keys in found if keys)
        raise PrunelabError(
            key,
            f"checkpoint {path} does not fit the model ({detail})",
            "use a checkpoint made with the same model and data config",
        )
    model.load_state_dict(plain, strict=False)
    masking.apply_masks_to_weights(model)


def group_choices() -> dict[str, str]:
    """The option picked in each config group (``criterion: magnitude``, ``data: mnist``, ...), flat, so W&B can
    group and filter by them (the config itself holds only ``criterion._target_``); W&B's config holds these at
    its top level and the whole resolved config under ``cfg``. Outside a Hydra job: none."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: str(v) for k, v in choices.items() if "/" not in k and v is not None and not k.startswith("hydra")}


def build_loggers(cfg: DictConfig) -> list[Any]:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        try:
            lg = instantiate(spec)
            loggers.append(lg)
            if name == "wandb" and results.is_writer():  # other DDP ranks hold a dummy experiment
                plain: Any = OmegaConf.to_container(cfg, resolve=True)
                lg.experiment.config.update({**group_choices(), "cfg": plain}, allow_val_change=True)
        except Exception as exc:  # W&B online without a key or a network, a logger option it refuses
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise PrunelabError(
                f"logger.{name}",
                f"the {name} logger could not start ({type(exc).__name__}: {first})",
                "use logger.wandb.offline=true (the default; `wandb sync` uploads later) or logger=csv",
            ) from None
    return loggers


def summarize_loggers(loggers: list[Any], values: dict[str, Any]) -> None:
    """Run-level figures (e.g. the class-safe sparsity) into a W&B run's summary; None values are left out."""
    for lg in loggers:
        experiment = getattr(lg, "_experiment", None)
        summary = getattr(experiment, "summary", None)
        if summary is None:
            continue
        for key, value in values.items():
            if value is not None:
                summary[key] = value


def finish_loggers(loggers: list[Any], status: str) -> None:
    for lg in loggers:
        try:
            lg.finalize(status)
            experiment = getattr(lg, "_experiment", None)  # W&B: close the offline run with its exit code
            if experiment is not None and hasattr(experiment, "finish"):
                experiment.finish(exit_code=0 if status == "success" else 1)
        except Exception as exc:  # never let a logger hide the run's own outcome
            log.warning("logger %s did not close cleanly: %s", type(lg).__name__, exc)


def make_trainer(cfg: DictConfig, rdir: Path, callbacks: list, loggers: list, **overrides: Any) -> pl.Trainer:
    if cfg.trainer.get("enable_progress_bar", True):
        refresh = int(cfg.progress_bar_refresh)
        if refresh < 1:
            raise PrunelabError("progress_bar_refresh", f"{refresh} is not a step count", "use an integer >= 1")
        every = float(cfg.progress_log_seconds)
        label = f"round {int(rdir.name[1:])} " if rdir.name[1:].isdigit() else ""
        callbacks = [*callbacks, Progress(refresh, every, label=label)]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(rdir), **overrides
    )
    if cfg.training_loop == "lean":
        fastpaths.install_lean_loop(trainer)
    return trainer


def prepare(cfg: DictConfig, run_dir: Path, dm: Any = None) -> RunContext:
    """Build every object of the run and check it, before any training; writes nothing."""
    schedule, rewind, criterion = make(cfg, "schedule"), make(cfg, "rewind"), make(cfg, "criterion")
    dm = build_data(cfg) if dm is None else dm
    model, groups = build_model(cfg, dm, criterion.structured, criterion.group_kinds)
    if schedule.progressive:
        preflight.check_progressive(groups)
    if hasattr(criterion, "check_groups"):  # e.g. a score function that cannot score some group
        criterion.check_groups(model, groups)
    preflight.check_controls(rewind, criterion, schedule)
    preflight.check_round_to(cfg, criterion)
    schedule.bind(groups)
    if cfg.get("init_weights"):
        path = Path(cfg.init_weights)
        state = load_state_file(path, "init_weights")
        if cfg.model.get("slice_head"):
            state = sliced_head(state, model, dm)
        load_into(model, state, "init_weights", path)
        preflight.check_init_weights(model, path)
    loss = make(cfg, "loss", _convert_="all")
    if hasattr(loss, "configure"):  # class-dependent losses need the training split's class counts
        loss.configure(class_counts=dm.class_counts("train"), positive_class=dm.positive_class)
    optimizer = make(cfg, "optimizer")
    preflight.check_optimizer(optimizer)
    scheduler = make(cfg, "scheduler") if cfg.get("scheduler") else None
    module = ClassifierModule(
        model, loss, optimizer, dm.class_names, scheduler=scheduler, positive_class=dm.positive_class, seed=cfg.seed
    )
    if cfg.monitor.get("metric"):
        module.callback_keys.add(str(cfg.monitor.metric))
    ctx = RunContext(cfg, Path(run_dir), dm, module, schedule, rewind, criterion, groups)
    if rewind.masks_from:
        preflight.check_masks_source(ctx)
    ctx.warnings = preflight.check_built(ctx)
    return ctx
