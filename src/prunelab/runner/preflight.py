"""The checks that need the built objects (data, model, schedule, optimizer), made by
:func:`prunelab.runner.build.prepare` before the first training step; the checks on the config alone are
:mod:`prunelab.config.checks`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prunelab.config.checks import MIN_CLASS_EXAMPLES, cfg_get, is_int, population_size
from prunelab.errors import PrunelabError
from prunelab.pruning.budget import Budget, check_reachable


# -- checks on built objects ---------------------------------------------------------------------------------------
def check_progressive(groups: list) -> None:
    if not groups:
        raise PrunelabError(
            "schedule",
            "the progressive schedule prunes kernels: it needs a structured criterion",
            "e.g. criterion=activation_energy",
        )


def check_round_to(cfg: DictConfig, criterion: Any) -> None:
    """``prune.round_to`` rounds kept unit counts: structured criteria only."""
    if cfg_get(cfg, "prune.round_to") is not None and not criterion.structured:
        raise PrunelabError(
            "prune.round_to",
            "rounds the number of kept filters/neurons: it needs a structured criterion",
            "use e.g. criterion=l1_filter, or prune.round_to=null",
        )


def check_controls(rewind: Any, criterion: Any, schedule: Any) -> None:
    """Another run's masks are installed between rounds; the rewind checks the rest itself."""
    if rewind.masks_from and schedule.in_fit:
        raise PrunelabError(
            "rewind.masks_from",
            f"masks are taken between rounds; the {type(schedule).__name__} prunes inside a fit",
            "use an iterative or one-shot schedule",
        )
    rewind.check(schedule, criterion)


def check_init_weights(model: Any, path: Path) -> None:
    """``init_weights`` must be a finite, dense model: round 0 is the dense baseline."""
    import torch

    from prunelab.pruning import masks as masking

    for name, value in model.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise PrunelabError(
                "init_weights",
                f"{path} holds non-finite values (NaN or inf) in {name}",
                "give a checkpoint with finite weights",
            )
    sparsity = masking.sparsity_stats(model)["sparsity"]
    if sparsity > 0:
        raise PrunelabError(
            "init_weights",
            f"{path} holds a pruned model (sparsity {sparsity:.4f}): round 0 must be dense",
            "start from a dense checkpoint, e.g. round 0's model.pt",
        )


def check_optimizer(optimizer: Any) -> None:
    import torch

    try:  # a wrong optimizer option would otherwise surface inside the first fit
        optimizer(params=[torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as exc:
        raise PrunelabError("optimizer", str(exc).splitlines()[0], "check the options under 'optimizer'") from exc


def round_steps(dm: Any, cfg: DictConfig) -> int:
    """Optimizer steps in one round's fit (epochs x batches, after limit_train_batches and accumulation)."""
    batches = len(dm.train_dataloader())
    limit = cfg.trainer.get("limit_train_batches")
    if is_int(limit):
        batches = min(batches, limit)
    elif isinstance(limit, float):
        batches = int(batches * limit)
    return batches // int(cfg.trainer.get("accumulate_grad_batches") or 1) * int(cfg.trainer.max_epochs)


def logged_keys(dm: Any) -> set[str]:
    """Every key a round logs (validation metrics computed on a stand-in batch: the same code, so the same keys)."""
    import torch

    from prunelab.training.metrics import classification_metrics

    c = len(dm.class_names)
    probs, labels = torch.full((2 * c, c), 1.0 / c), torch.arange(2 * c) % c
    val = classification_metrics(probs, labels, dm.class_names, "val", dm.positive_class)
    return {*val, "val/loss", "train/loss", "train/acc"}


def check_built(ctx: Any) -> list[str]:
    """Checks that need the data, model and schedule; returns warnings for allowed but degenerate settings."""
    cfg, dm = ctx.cfg, ctx.dm
    if len(dm.y_val) == 0:
        raise PrunelabError(
            "data.val_fraction",
            "the validation split is empty (the monitor and every val/ metric need it)",
            "use data.val_fraction > 0, e.g. 0.1",
        )
    metric = cfg.monitor.metric
    if metric is not None and metric not in (keys := logged_keys(dm)):
        close = sorted(k for k in keys if k.split("/")[-1] in metric or metric.split("/")[-1] in k)[:3]
        raise PrunelabError(
            "monitor.metric",
            f"{metric!r} is not a metric this run logs",
            f"use e.g. {', '.join(close or ['val/acc', 'val/auroc_macro', 'val/loss'])}",
        )
    check_class_aware(ctx)
    steps = round_steps(dm, cfg)
    if ctx.rewind.snapshot_step is not None and ctx.rewind.snapshot_step > steps:
        raise PrunelabError(
            "rewind.step",
            f"step {ctx.rewind.step} is beyond round 0's {steps} training steps",
            f"use rewind.step <= {steps}",
        )
    if ctx.schedule.in_fit and cfg.get("converge"):
        raise PrunelabError(
            "converge",
            "a schedule that prunes during the fit cannot stop early",
            "use converge=null with schedule=gradual (every level trains the same epochs)",
        )
    if ctx.schedule.in_fit and ctx.schedule.last_step() > steps:
        raise PrunelabError(
            "schedule.end_step",
            f"end step {ctx.schedule.last_step()} is beyond the fit's {steps} steps",
            f"use schedule.end_step <= {steps} or more trainer.max_epochs",
        )
    if not ctx.criterion.structured:
        check_targets_keep_weights(ctx)
    counts = dm.class_counts("train").tolist()
    warnings = (
        []
        if getattr(dm, "official", None) is not False
        else [
            f"data: {dm.source()} is not the official {dm.dataset_name} release (md5 or split sizes differ): results "
            "are not comparable with published ones"
        ]
    )
    return warnings + [
        f"data: class {dm.class_names[c]!r} has only {n} training example(s)"
        for c, n in enumerate(counts)
        if n < MIN_CLASS_EXAMPLES
    ]


def check_class_aware(ctx: Any) -> None:
    """criterion.classes, losses that need a dense round, budgets and stop rules: checks on the built objects."""
    cfg, dm = ctx.cfg, ctx.dm
    if getattr(ctx.criterion, "classes", None) is not None:  # criterion.classes: class indices of this data
        from prunelab.pruning.criteria.class_aware import check_classes

        check_classes(ctx.criterion.classes, dm.num_classes)
    if hasattr(ctx.criterion, "check_sets"):  # fairprune: two class sets
        ctx.criterion.check_sets(dm.num_classes)
    if getattr(ctx.module.loss_fn, "needs_dense", False) and (
        ctx.schedule.in_fit or ctx.schedule.sparsity_at(0) != 0 or ctx.num_rounds < 2
    ):
        raise PrunelabError(
            "loss",
            f"{type(ctx.module.loss_fn).__name__} acts on rounds after a dense round 0: this schedule has none",
            "use schedule=iterative or schedule=one_shot (not at_init), or another loss",
        )
    budget = Budget.from_config(cfg.get("budget"))
    if budget is not None:  # a value no rate can reach is refused before any training
        groups = ctx.groups if ctx.criterion.structured else []
        check_reachable(ctx.module.model, budget, dm.input_shape, groups, int(cfg.prune.min_filters))
    if ctx.schedule.stop is not None:  # schedule.stop_when names a figure every round records
        ctx.schedule.stop.check_metric({k.replace("val/", s, 1) for k in logged_keys(dm) for s in ("val/", "test/")})


def check_targets_keep_weights(ctx: Any) -> None:
    """No round may remove every prunable weight, nor (when the criterion prunes the same share of every tensor)
    every weight of a layer: such a layer no longer passes anything on, and the model's output no longer depends
    on its input. (Emptying a bias tensor is allowed: Entezari & Saukh prune biases too.)"""
    from prunelab.pruning import masks as masking

    sizes = {n: m.numel() for n, m in masking.get_masks(ctx.module.model, primary_only=True).items()}
    total = sum(sizes.values())
    for r in range(ctx.schedule.num_rounds):
        target = ctx.schedule.sparsity_at(r)
        emptied = [n for n, k in sizes.items() if n.endswith("weight") and k - round(target * k) < 1]
        if total - round(target * total) < 1 or (ctx.criterion.scope == "layer" and emptied):
            where = f"every weight of {emptied[0]}" if emptied and ctx.criterion.scope == "layer" else "every weight"
            raise PrunelabError(
                ctx.schedule.target_key,
                f"round {r}'s target sparsity {target:.6f} removes {where}",
                "use a lower rate, fewer rounds or a lower final sparsity",
            )


def check_masks_source(ctx: Any) -> None:
    """``rewind.masks_from``: the source run is found, holds every round this run needs, and its masks fit this
    model (names and shapes); binds the resolved folder to ``ctx.rewind``."""
    from prunelab.pruning import masks as masking
    from prunelab.runs import masks_from as source

    cfg, rewind = ctx.cfg, ctx.rewind
    if population_size(cfg) > 1:
        raise PrunelabError(
            "rewind.masks_from",
            "a population trains several seeds at once; each needs its own source run",
            "use population=1 (a seed sweep)",
        )
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    run_dir = source.resolve(rewind.masks_from, int(cfg.seed), model_cfg)
    source.check(run_dir, ctx.num_rounds)
    own = masking.get_masks(ctx.module.model)
    theirs = source.load(run_dir, ctx.num_rounds - 1)
    wrong = sorted(set(own) ^ set(theirs)) or [n for n in own if own[n].shape != theirs[n].shape]
    if wrong:
        raise PrunelabError(
            "rewind.masks_from",
            f"{run_dir}'s masks do not fit this model ({wrong[0]} differs)",
            "give a run of the same model and prune settings",
        )
    rewind.source = functools.partial(source.load, run_dir)  # round -> the source run's masks of that round
