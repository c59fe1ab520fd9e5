"""Class damage per round against the run's own dense round, beside a dense-vs-dense noise floor (issue 29).

Every round's record gets :func:`prunelab.training.damage.damage_fields` of its test predictions against round 0's
(``damage/...``), and the epsilon-tolerance verdicts (``class_tolerance``). One dense model makes seed noise look
like damage, so with ``class_metrics.null_seed`` the run also trains a second dense model that differs only in its
seed (``<run>/null/``, round 0 of the same config with ``seed=null_seed``; shared through the round-0 store, so a
sweep trains it once, and a run whose seed is the null seed supplies it for free). The same fields between the two
dense models are the floor (``floor/...``), recorded beside every round's figures; the tolerance verdicts allow for
it. Without a null seed the records say ``damage/has_floor: false``.

Damage needs a dense round 0 to compare with: schedules that prune during the fit or at initialisation have none,
and their rounds carry no ``damage/`` fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from prunelab.errors import PrunelabError
from prunelab.runner.context import RunContext
from prunelab.runs import files as results
from prunelab.training import calibrate, damage

log = logging.getLogger("prunelab")

NULL_DIR = "null"
PREFIXES = ("damage/", "floor/", "calibrated/")


def settings(cfg: DictConfig) -> dict[str, Any]:
    """``class_metrics`` with its defaults (null seed, ECE bins, uncertainty threshold) and ``class_tolerance``."""
    node = cfg.get("class_metrics") or {}
    return {
        "null_seed": node.get("null_seed"),
        "ece_bins": int(node.get("ece_bins", 15)),
        "uncertain_below": float(node.get("uncertain_below", 0.9)),
        "tolerance": float(cfg.get("class_tolerance", 0.02)),
    }


def has_dense_round(ctx: RunContext) -> bool:
    """Round 0 is a dense model trained by this run's schedule (nothing pruned before or during its fit)."""
    return not ctx.schedule.in_fit and ctx.schedule.sparsity_at(0) == 0


def null_config(cfg: DictConfig) -> DictConfig:
    """The run's config with the null seed as its seed (and no null seed of its own)."""
    null = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    assert isinstance(null, DictConfig)
    with open_dict(null):
        null.seed = int(cfg.class_metrics.null_seed)
        null.class_metrics.null_seed = None
        null.population = 1
    return null


def prepare_floor(ctx: RunContext, train_round0: Callable[[RunContext], Any]) -> None:
    """Make the null dense model's test predictions available (``ctx.null_probs``): read from ``<run>/null/`` when
    its round 0 is finished and intact, otherwise trained there first by ``train_round0`` (the run's own round-0
    code: it resumes the round's last checkpoint, or copies the round from the round-0 store)."""
    seed = settings(ctx.cfg)["null_seed"]
    if seed is None or ctx.null_probs is not None or not has_dense_round(ctx):
        return
    null_dir = ctx.run_dir / NULL_DIR
    row, problem = results.verify_round(null_dir, 0)
    if row is None:
        if problem:
            log.warning("%s: %s: the null model is trained again", null_dir, problem)
        _train_null(ctx, null_dir, train_round0)
    probs, labels = results.load_predictions(results.round_dir(null_dir, 0) / "predictions.npz")
    ctx.null_probs = (probs, labels)


def _train_null(ctx: RunContext, null_dir: Path, train_round0: Callable[[RunContext], Any]) -> None:
    from prunelab.runner import build, run_folder

    cfg = null_config(ctx.cfg)
    print(f"class_metrics.null_seed={cfg.seed}: training the dense model of the noise floor in {null_dir}", flush=True)
    null = build.prepare(cfg, null_dir)
    if results.is_writer():
        results.atomic_write_json(null_dir / "data.json", null.dm.describe())
        results.atomic_write_text(null_dir / "null_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    run_folder.init_snapshot(null_dir, null.module.model)
    train_round0(null)


def dense_probs(ctx: RunContext) -> np.ndarray:
    """Round 0's test probabilities (read once from its ``predictions.npz``)."""
    if ctx.dense_probs is None:
        probs, _ = results.load_predictions(results.round_dir(ctx.run_dir, 0) / "predictions.npz")
        ctx.dense_probs = probs
    return ctx.dense_probs


def fields(ctx: RunContext, r: int, probs: Any, labels: Any) -> dict[str, Any]:
    """The ``damage/`` (and ``floor/``) fields of round ``r``'s test predictions (empty without a dense round)."""
    if not has_dense_round(ctx):
        return {}
    return _fields(ctx, probs if r == 0 else dense_probs(ctx), probs, labels)


def quantized_fields(ctx: RunContext, r: int, float_probs: Any, probs: Any, labels: Any) -> dict[str, Any]:
    """The same fields for a quantized copy of round ``r``'s model, against the dense float model (round 0)."""
    if not has_dense_round(ctx):
        return {}
    return _fields(ctx, float_probs if r == 0 else dense_probs(ctx), probs, labels)


def _fields(ctx: RunContext, dense: Any, probs: Any, labels: Any) -> dict[str, Any]:
    dense, probs = np.asarray(dense, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    opts = settings(ctx.cfg)
    names = list(ctx.dm.class_names)
    kw = {"ece_bins": opts["ece_bins"], "uncertain_below": opts["uncertain_below"]}
    out = damage.damage_fields(dense, probs, labels, names, **kw)
    floor = None
    if ctx.null_probs is not None:
        null, null_labels = ctx.null_probs
        if not np.array_equal(null_labels, labels):
            raise PrunelabError(
                "class_metrics.null_seed",
                f"the null model in {ctx.run_dir / NULL_DIR} was tested on other examples",
                f"delete {ctx.run_dir / NULL_DIR}: prunelab trains it again",
            )
        floor = damage.damage_fields(dense, np.asarray(null, dtype=np.float64), labels, names, "floor", **kw)
        out.update(floor)
    out.update(damage.tolerance_fields(out, floor, opts["tolerance"]))
    return out


def calibration(ctx: RunContext, rdir: Path, probs: Any, labels: Any) -> dict[str, Any]:
    """With ``calibrate=thresholds``: the round's test metrics after thresholds fitted on its validation predictions
    (``val_predictions.npz``) alone (:mod:`prunelab.training.calibrate`)."""
    if str(ctx.cfg.get("calibrate") or "none") != "thresholds":
        return {}
    path = rdir / "val_predictions.npz"
    if not path.exists():
        raise PrunelabError("calibrate", f"{path} is missing: no validation predictions to fit on", "rerun the round")
    val = results.load_predictions(path)
    return calibrate.calibrated_fields(val, probs, labels, list(ctx.dm.class_names), ctx.dm.positive_class)


def with_fields(ctx: RunContext, r: int, record: dict, probs: Any, labels: Any) -> dict:
    """``record`` with its class-damage and recalibration fields computed by this run's settings (any earlier ones
    dropped: a round 0 copied from the store was recorded by another run)."""
    kept = {k: v for k, v in record.items() if not k.startswith(PREFIXES)}
    rdir = results.round_dir(ctx.run_dir, r)
    return {**kept, **fields(ctx, r, probs, labels), **calibration(ctx, rdir, probs, labels)}
