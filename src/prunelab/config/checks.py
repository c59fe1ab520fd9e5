"""The one validation pass over a composed config, before any job: every check that needs the config alone, so
bad input fails on one line naming the key and the fix, before anything is trained or written.

:func:`check_config` runs in the CLI for every variant of a sweep before launching, and in the job (once per
process: a job the CLI runs in-process checks only what depends on its machine). Torch is not imported here,
except where a check builds a schedule or rewind to ask it (plain Python objects). The checks that need built
objects (data, model, optimizer) are :mod:`prunelab.runner.preflight`'s.
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prunelab.errors import PrunelabError
from prunelab.pruning.kinds import check_allocation, check_kinds

# torch, the metrics and the masks are imported inside the checks that need built objects: check_config runs in
# the CLI before any job, and a bad option should fail there without waiting for torch to import.
# prunelab.training.quantize.METHODS (a test keeps them equal)
QUANTIZE_METHODS = ("fp16", "dynamic_int8", "static_int8")

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
MAX_SEED = 2**63 - 1
MIN_CLASS_EXAMPLES = 5  # fewer training examples in a class is allowed, but recorded as a warning


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(cfg: DictConfig, key: str, low: int, fix: str) -> int:
    value = cfg_get(cfg, key)
    if not is_int(value) or value < low:
        raise PrunelabError(key, f"{value!r} is not an integer >= {low}", fix)
    return int(value)


def cfg_get(cfg: DictConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def population_size(cfg: DictConfig) -> int:
    value = cfg.get("population", 1)
    if not is_int(value) or value < 1:
        raise PrunelabError("population", f"{value!r} members", "use population >= 1 (1 = one ordinary run)")
    return int(value)


def _missing(node: Any, prefix: str = "") -> list[str]:
    """Keys whose value is ``???`` (without resolving interpolations: hydra's own are resolved only in a job)."""
    out = []
    if isinstance(node, DictConfig):
        for key in node:  # int keys stay ints ({class: share} mappings)
            if not isinstance(key, (str, int)) or key == "hydra":
                continue
            if OmegaConf.is_missing(node, key):
                out.append(f"{prefix}{key!s}")
            elif not OmegaConf.is_interpolation(node, key):
                out += _missing(node._get_node(key), f"{prefix}{key!s}.")
    return out


# Configs this process has checked already (their content without Hydra's node): the job that the CLI launched in
# its own process checks only what depends on the machine, instead of validating the same config twice
_CHECKED: set[str] = set()


def check_config(cfg: DictConfig, machine: bool = True) -> None:
    """Checks on the composed config alone (types, ranges, names); raises a PrunelabError. ``machine=False`` leaves
    out what depends on the machine the job runs on (a GPU): the CLI checks a sweep before a launcher may send its
    jobs to other machines (SLURM, Ray), and each job checks that part itself before any work. A config checked
    once in this process is not checked again (only the machine part)."""
    key = _content_key(cfg)
    if key not in _CHECKED:
        _check_content(cfg)
        _CHECKED.add(key)
    _check_device(cfg, machine)


def _content_key(cfg: DictConfig) -> str:
    import hashlib

    plain: Any = OmegaConf.to_container(cfg, resolve=False)  # unresolved: nothing here needs Hydra's runtime
    plain.pop("hydra", None)
    return hashlib.sha1(repr(sorted(plain.items(), key=lambda kv: str(kv[0]))).encode()).hexdigest()


def _check_content(cfg: DictConfig) -> None:
    missing = _missing(cfg)
    if missing:
        raise PrunelabError(missing[0], "has no value (??? in its config file)", f"set it: {missing[0]}=<value>")
    name = str(cfg.get("name", ""))
    if not SAFE_NAME.fullmatch(name) or name in (".", "..") or len(name) > 200:
        raise PrunelabError(
            "name",
            f"{name!r} is not a single safe folder name",
            "use up to 200 letters, digits, '.', '_', '+' and '-' (no '/' or '..')",
        )
    _check_seeds(cfg)
    _check_paths(cfg)
    _check_trainer(cfg)
    _check_scope(cfg)
    _check_rewind(cfg)
    _check_model(cfg)
    int_at_least(cfg, "data.batch_size", 1, "e.g. data.batch_size=128")
    if cfg_get(cfg, "data.eval_batch_size") is not None:
        int_at_least(cfg, "data.eval_batch_size", 1, "e.g. data.eval_batch_size=1000")
    int_at_least(cfg, "progress_bar_refresh", 1, "e.g. progress_bar_refresh=25")
    every = cfg_get(cfg, "progress_log_seconds")
    if every is not None and (isinstance(every, bool) or not isinstance(every, (int, float)) or every < 0):
        raise PrunelabError(
            "progress_log_seconds", f"{every!r} is not a number of seconds >= 0", "e.g. progress_log_seconds=30"
        )
    if not isinstance(cfg.get("share_round0", True), bool):
        raise PrunelabError(
            "share_round0",
            f"{cfg.get('share_round0')!r} is not true or false",
            "use share_round0=true (reuse an identical run's round 0) or false",
        )
    if cfg.training_loop not in ("lean", "lightning"):
        raise PrunelabError(
            "training_loop",
            f"{cfg.get('training_loop')!r} is not a training loop",
            "use training_loop=lean (the default) or training_loop=lightning",
        )
    _check_lists(cfg)
    _check_loggers(cfg)
    _check_monitor(cfg)
    _check_converge(cfg)
    _check_objective(cfg)
    _check_quantize(cfg)
    _check_imbalance(cfg)
    if cfg_get(cfg, "prune.group_kinds") is not None:
        check_kinds(cfg_get(cfg, "prune.group_kinds"))
    _check_allocation(cfg)
    _check_class_metrics(cfg)
    _check_budget(cfg)
    _check_slice_head(cfg)
    _check_built(cfg)


# cheap to build: no model, and a data module's constructor only checks its arguments (files are read in setup);
# schedule and rewind are built above
BUILT_BEFORE_LAUNCH = ("criterion", "loss", "data")


def _check_built(cfg: DictConfig) -> None:
    """Build the criterion and the loss with their own constructors, whose range checks are the only copy of each
    rule (``criterion.num_batches=0``, ``loss.epsilon=-1``, ``data.val_fraction=1.5``, ...): a sweep fails before its
    first job, not in the
    job that reaches the bad value. Last of the checks: these imports bring in torch, which a typo should not wait
    for."""
    for key in BUILT_BEFORE_LAUNCH:
        _built(cfg, key)


def _check_slice_head(cfg: DictConfig) -> None:
    if not cfg_get(cfg, "model.slice_head"):
        return
    if not cfg_get(cfg, "data.classes"):
        raise PrunelabError(
            "model.slice_head",
            "needs data.classes: the classes to slice the classifier to",
            "e.g. data.classes=[3,5,8]",
        )
    if not cfg.get("init_weights"):
        raise PrunelabError(
            "model.slice_head",
            "needs init_weights: the dense model trained on every class whose classifier is sliced",
            "set init_weights=<a full-class run's rounds/r00/model.pt>",
        )


def _check_budget(cfg: DictConfig) -> None:
    from prunelab.pruning.budget import Budget

    budget = Budget.from_config(cfg.get("budget"))
    schedule = _built(cfg, "schedule")
    if budget is None or schedule is None:
        return
    if schedule.in_fit or schedule.progressive or (schedule.num_rounds == 1 and schedule.sparsity_at(0) == 0):
        raise PrunelabError(
            "budget.target",
            f"{type(schedule).__name__} schedules cannot search a rate per round",
            "use schedule=iterative or schedule=one_shot with a budget",
        )
    if cfg_get(cfg, "rewind.masks_from"):
        raise PrunelabError("budget.target", "rewind.masks_from copies another run's masks", "leave budget.target=null")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_class_metrics(cfg: DictConfig) -> None:
    eps = cfg.get("class_tolerance", 0.02)
    if not _number(eps) or eps < 0:
        raise PrunelabError(
            "class_tolerance", f"{eps!r} is not an accuracy gap >= 0", "e.g. class_tolerance=0.02 (two points)"
        )
    if cfg.get("calibrate", "none") not in ("none", "thresholds", None):
        raise PrunelabError(
            "calibrate",
            f"{cfg.get('calibrate')!r} is not a recalibration",
            "use calibrate=none or calibrate=thresholds",
        )
    node = cfg.get("class_metrics") or {}
    null = node.get("null_seed")
    if null is not None and (not is_int(null) or not 0 <= null <= MAX_SEED):
        raise PrunelabError(
            "class_metrics.null_seed", f"{null!r} is not an integer in 0..2^63-1", "e.g. class_metrics.null_seed=1000"
        )
    if null is not None and null == cfg.get("seed"):
        raise PrunelabError(
            "class_metrics.null_seed",
            f"is the run's own seed ({null}): the floor needs a second dense model",
            "choose another seed, e.g. class_metrics.null_seed=" + str(int(null) + 1000),
        )
    bins = node.get("ece_bins", 15)
    if not is_int(bins) or bins < 1:
        raise PrunelabError("class_metrics.ece_bins", f"{bins!r} is not a bin count >= 1", "e.g. 15")
    below = node.get("uncertain_below", 0.9)
    if not _number(below) or not 0 < below <= 1:
        raise PrunelabError("class_metrics.uncertain_below", f"{below!r} is not a probability in (0, 1]", "e.g. 0.9")


# Options that are lists of strings: a bare string would be read as a list of its characters
STRING_LISTS = {
    "prune.include": "[*.weight]",
    "prune.exclude": "[classifier.*]",
    "quantize.methods": "[fp16]",
    "run_id_ignore": "[data.path]",
}


def _check_lists(cfg: DictConfig) -> None:
    for key, example in STRING_LISTS.items():
        value = cfg_get(cfg, key)
        if value is None:
            continue
        items = list(value) if OmegaConf.is_list(value) else None
        if items is None or not all(isinstance(v, str) for v in items):
            raise PrunelabError(
                key,
                f"{value!r} is not a list of names (a bare string would be read as a list of its characters)",
                f"use brackets, quoted for the shell: '{key}={example}'",
            )


def _wandb_key() -> bool:
    """A W&B API key in the environment or in ~/.netrc (where ``wandb login`` stores it)."""
    import netrc
    import os

    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _check_loggers(cfg: DictConfig) -> None:
    import os

    wandb = (cfg.get("logger") or {}).get("wandb")
    online = wandb is not None and wandb.get("offline") is False and os.environ.get("WANDB_MODE") != "offline"
    if online and not _wandb_key():
        raise PrunelabError(
            "logger.wandb.offline",
            "false logs to W&B live, but no W&B API key is set (WANDB_API_KEY or `wandb login`)",
            "log offline (logger.wandb.offline=true, the default; `wandb sync` uploads later) or "
            "run `wandb login` first",
        )


def _check_allocation(cfg: DictConfig) -> None:
    prune = cfg.get("prune") or {}
    check_allocation(prune)
    raw = prune.get("normalize", "none") in ("none", "auto")
    custom = not raw or bool(prune.get("ratios")) or prune.get("max_layer_sparsity") is not None
    schedule = _built(cfg, "schedule")
    progressive = bool(schedule is not None and schedule.progressive)
    if prune.get("round_to") is not None and progressive:
        raise PrunelabError(
            "prune.round_to",
            "the progressive schedule removes a set share of one layer's kernels",
            "leave prune.round_to=null with schedule=progressive",
        )
    if custom and progressive:
        raise PrunelabError(
            "prune.ratios",
            "the progressive schedule prunes one layer at a time by its own rate",
            "leave prune.normalize, prune.ratios and prune.max_layer_sparsity at their defaults",
        )


def _check_seeds(cfg: DictConfig) -> None:
    seed = cfg.get("seed")
    if not is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise PrunelabError("seed", f"{seed!r} is not an integer in 0..2^63-1", "e.g. seed=0")
    members = population_size(cfg)
    if seed + members - 1 > MAX_SEED:
        raise PrunelabError(
            "seed",
            f"population={members} from seed {seed} needs seeds beyond 2^63-1",
            f"use seed <= {MAX_SEED - members + 1}",
        )
    threads = cfg.get("threads")
    if threads is not None and (not is_int(threads) or threads < 1):
        raise PrunelabError("threads", f"{threads!r} is not a thread count", "use threads=1 (or more), or threads=null")
    split_seed = cfg_get(cfg, "data.split_seed")
    if split_seed is not None and (not is_int(split_seed) or not 0 <= split_seed <= MAX_SEED):
        raise PrunelabError("data.split_seed", f"{split_seed!r} is not an integer in 0..2^63-1", "e.g. 0")


def _check_paths(cfg: DictConfig) -> None:
    """An empty path (an environment variable set but empty, e.g. ``PRUNELAB_OUTPUT_DIR=$SCRATCH`` with SCRATCH
    unset) would put run folders at the file system's root or the data root in the working directory."""
    for key, var in (("paths.output_dir", "PRUNELAB_OUTPUT_DIR"), ("paths.data_dir", "PRUNELAB_DATA_DIR")):
        try:
            value = cfg_get(cfg, key)
        except Exception:  # an interpolation only Hydra's runtime resolves
            continue
        if value is not None and not str(value).strip():
            raise PrunelabError(
                key,
                f"is empty (the {var} environment variable is set but empty?)",
                f"unset {var}, or set it (or {key}=<folder>) to a folder",
            )


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (
    "64-true",
    "64",
    "32-true",
    "32",
    "16-mixed",
    "16",
    "bf16-mixed",
    "bf16",
    "16-true",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)  # Lightning 2.x's names


def _check_device(cfg: DictConfig, machine: bool = True) -> None:
    """Accelerator and precision, as Lightning would refuse them inside the first fit (with a traceback)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ACCELERATORS:
        raise PrunelabError(
            "trainer.accelerator", f"{accelerator!r} is not an accelerator", f"use one of {', '.join(ACCELERATORS)}"
        )
    if accelerator in ("gpu", "cuda") and machine:
        import torch

        if not torch.cuda.is_available():
            raise PrunelabError(
                "trainer.accelerator",
                f"{accelerator} asked for, but this machine has no CUDA GPU",
                "use trainer.accelerator=auto (or cpu), or run on a machine with a GPU",
            )
    precision = cfg.trainer.get("precision", "32-true")
    if precision is not None and str(precision) not in PRECISIONS:
        raise PrunelabError(
            "trainer.precision",
            f"{precision!r} is not a precision Lightning knows",
            "use 32-true (the default), 16-mixed or bf16-mixed",
        )
    clip = cfg.trainer.get("gradient_clip_val")
    number = isinstance(clip, (int, float)) and not isinstance(clip, bool)
    if clip is not None and not (number and math.isfinite(clip) and clip > 0):
        raise PrunelabError(
            "trainer.gradient_clip_val",
            f"{clip!r} is not a positive number (Lightning ignores values <= 0 without a word)",
            "use null (no clipping) or a value > 0, e.g. 1.0",
        )


def _check_scope(cfg: DictConfig) -> None:
    scope = cfg_get(cfg, "criterion.scope")
    if scope is not None and scope not in ("global", "layer"):
        raise PrunelabError(
            "criterion.scope",
            f"{scope!r} is not a scope",
            "use criterion.scope=global (one ranking) or layer (the same share per layer)",
        )
    if scope == "layer" and cfg_get(cfg, "prune.max_layer_sparsity") is not None:
        raise PrunelabError(
            "prune.max_layer_sparsity",
            "caps layers of a global ranking; with criterion.scope=layer "
            "every layer is pruned to the same share and the cap would be ignored",
            "leave prune.max_layer_sparsity=null, or use criterion.scope=global",
        )


def _built(cfg: DictConfig, key: str) -> Any:
    """The object ``cfg[key]`` builds (a schedule or a rewind: plain Python, no torch needed), so that the checks
    ask it what it is instead of matching its ``_target_``; None without a ``_target_``."""
    node = cfg.get(key)
    if not (OmegaConf.is_dict(node) and "_target_" in node):
        return None
    from prunelab.config.instantiate import make

    return make(cfg, key)


def _continues_budget(cfg: DictConfig) -> bool:
    """``rewind.continues_budget``, asked of the rewind the config builds."""
    rewind = _built(cfg, "rewind")
    return bool(rewind is not None and rewind.continues_budget)


def _check_rewind(cfg: DictConfig) -> None:
    """What the rewind says about the schedule (its own :meth:`~prunelab.pruning.rewind.Rewind.check`)."""
    rewind, schedule = _built(cfg, "rewind"), _built(cfg, "schedule")
    if rewind is not None and schedule is not None:
        rewind.check(schedule)


def _check_model(cfg: DictConfig) -> None:
    hidden = cfg_get(cfg, "model.hidden")
    if hidden is None:
        return
    widths = list(hidden) if OmegaConf.is_list(hidden) else None
    if widths is None or not all(is_int(w) and w >= 1 for w in widths):
        raise PrunelabError("model.hidden", f"{hidden!r} is not a list of layer widths >= 1", "e.g. model.hidden=[64]")


def _check_trainer(cfg: DictConfig) -> None:
    int_at_least(
        cfg,
        "trainer.max_epochs",
        0,
        "use trainer.max_epochs >= 1 (0 evaluates the untrained model; -1, train forever, is not allowed)",
    )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = cfg.trainer.get(key)
        if value is None:
            continue
        ok = (is_int(value) and value >= 1) or (isinstance(value, float) and 0.0 < value <= 1.0)
        if not ok:
            raise PrunelabError(
                f"trainer.{key}",
                f"{value!r} leaves no batches"
                if value in (0, 0.0)
                else f"{value!r} is neither a batch count >= 1 nor a share in (0, 1]",
                f"use trainer.{key}=null (all batches), a count >= 1 or a share in (0, 1]",
            )
    if cfg.trainer.get("accumulate_grad_batches") is not None:
        int_at_least(cfg, "trainer.accumulate_grad_batches", 1, "e.g. trainer.accumulate_grad_batches=1")


def _check_monitor(cfg: DictConfig) -> None:
    mode = cfg_get(cfg, "monitor.mode")
    if mode not in ("min", "max"):
        raise PrunelabError("monitor.mode", f"{mode!r} is not min or max", "use monitor.mode=max (or min for a loss)")
    metric = cfg_get(cfg, "monitor.metric")
    if metric is not None and not isinstance(metric, str):
        raise PrunelabError("monitor.metric", f"{metric!r} is not a metric name", "e.g. monitor.metric=val/acc")


def _check_quantize(cfg: DictConfig) -> None:
    quantize = cfg.get("quantize") or {}
    methods = list(quantize.get("methods") or [])
    unknown = [m for m in methods if m not in QUANTIZE_METHODS]
    if unknown:
        raise PrunelabError(
            "quantize.methods", f"unknown method {unknown[0]!r}", f"use any of {', '.join(QUANTIZE_METHODS)}"
        )
    if methods:
        int_at_least(cfg, "quantize.calibration_batches", 1, "static int8 needs calibration batches: e.g. 8")
    if quantize.get("rounds", "last") not in ("last", "all"):
        raise PrunelabError("quantize.rounds", f"{quantize.get('rounds')!r} is not last or all", "use last or all")


def _check_imbalance(cfg: DictConfig) -> None:
    imbalance = cfg_get(cfg, "data.imbalance") or {}
    keep = imbalance.get("keep_fraction")
    if keep is not None and not (OmegaConf.is_dict(keep) and all(is_int(k) for k in keep)):
        raise PrunelabError(
            "data.imbalance.keep_fraction",
            f"{keep!r} is not a mapping of class index to share",
            "e.g. 'data.imbalance.keep_fraction={3: 0.1, 5: 0.5}' (quoted for the shell)",
        )
    rules = {
        "neg_pos_ratio": ("> 0", lambda v: v > 0, "e.g. 5.0 (five negatives per positive)"),
        "long_tail_ratio": (">= 1", lambda v: v >= 1, "e.g. 10 (head class 10x the tail class)"),
    }
    for key, (bound, ok, fix) in rules.items():
        value = imbalance.get(key)
        if value is None:
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and ok(value)):
            raise PrunelabError(f"data.imbalance.{key}", f"{value!r} is not a finite number {bound}", fix)


def _check_converge(cfg: DictConfig) -> None:
    dense = cfg.get("converge")
    if dense is None:
        return
    if not hasattr(dense, "keys") or set(dense.keys()) - {"max_epochs", "patience", "min_delta", "rounds"}:
        raise PrunelabError(
            "converge",
            f"{dense!r} is not a mapping of max_epochs, patience, min_delta, rounds",
            "e.g. converge='{max_epochs: 60, patience: 5, min_delta: 0.0, rounds: first}'",
        )
    if dense.get("rounds", "first") not in ("first", "all", "first_and_last"):
        raise PrunelabError(
            "converge.rounds",
            f"{dense.get('rounds')!r} is not first, all or first_and_last",
            "use converge.rounds=first (the dense round), all (every round) or first_and_last (the dense and the "
            "final round)",
        )
    if _continues_budget(cfg) and dense.get("rounds", "first") != "first":
        raise PrunelabError(
            "rewind.budget",
            f"continue trains round 0's remaining steps; converge.rounds={dense.get('rounds')} trains "
            "pruned rounds until they stop improving",
            "use rewind.budget=restart or converge.rounds=first",
        )
    int_at_least(cfg, "converge.max_epochs", 1, "e.g. converge.max_epochs=60")
    int_at_least(cfg, "converge.patience", 1, "e.g. converge.patience=5")
    delta = dense.get("min_delta", 0.0)
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not math.isfinite(delta) or delta < 0:
        raise PrunelabError("converge.min_delta", f"{delta!r} is not a finite number >= 0", "e.g. 0.0")
    if cfg.monitor.metric is None:
        raise PrunelabError(
            "converge", "training to convergence needs a monitor metric", "set monitor.metric (e.g. val/acc)"
        )
    if population_size(cfg) > 1:
        raise PrunelabError(
            "converge",
            "populations train every member for the same epochs",
            "use population=1 (one job per seed) or converge=null",
        )


def _check_objective(cfg: DictConfig) -> None:
    objective = str(cfg.objective)
    if objective.startswith("test/") and not cfg.tune_on_test:
        raise PrunelabError(
            "objective",
            f"{objective!r} would let a sweeper tune on the test set",
            f"use objective=val/{objective[5:]} (or tune_on_test=true to opt in; runs are marked)",
        )
