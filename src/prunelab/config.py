"""Where the configs live, the run-identity resolver, and config helpers.

The configs sit in ``conf/`` at the repository root; a wheel ships them as ``prunelab/conf`` (pyproject's
force-include), so an installed prunelab finds them without the source tree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from prunelab.pruning.kinds import KINDS, UNSTRUCTURED_TARGETS

# Top-level keys that define what a run computes; their resolved values name its folder (OpenLTH's rule).
IDENTITY_KEYS = (
    "data",
    "model",
    "criterion",
    "schedule",
    "rewind",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "prune",
    "seed",
    "monitor",
    "init_weights",
    "quantize",
)


def conf_dir() -> Path:
    """The config directory: packaged copy first, then the source tree's ``conf/``."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent.parent / "conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"prunelab configs not found next to {here} (reinstall prunelab)")


def config_groups() -> dict[str, list[str]]:
    """Every config group (folder under conf/, nested ones as ``a/b``) and its options (YAML names)."""
    root, out = conf_dir(), {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        opts = sorted(f.stem for f in folder.glob("*.yaml") if not f.stem.startswith("_"))
        if opts and not folder.relative_to(root).as_posix().startswith("hydra"):  # hydra/launcher: Hydra's own
            out[folder.relative_to(root).as_posix()] = opts
    return out


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


# Keys added after runs existed, left out of the identity while they hold the value that reproduces earlier runs
DEFAULTS_OUT_OF_ID: dict[str, Any] = {
    "prune.group_kinds": ["conv"],
    "prune.normalize": "none",
    "prune.ratios": {},
    "prune.max_layer_sparsity": None,
    "prune.round_to": None,
    "rewind.masks_from": None,
}


# Mappings whose default is null so that Hydra's command line can set them (an empty mapping is closed to new keys
# in Hydra's struct mode); null is the empty mapping they held before, and names the same runs
NULL_IS_EMPTY = ("prune.ratios", "data.imbalance.keep_fraction")


def _null_as_empty(ident: dict[str, Any]) -> None:
    for dotted in NULL_IS_EMPTY:
        *parents, leaf = dotted.split(".")
        node: Any = ident
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] is None:
            node[leaf] = {}


def _drop_legacy_defaults(ident: dict[str, Any]) -> None:
    """Keys added later leave the identity at the value earlier runs had; ``prune.group_kinds`` also leaves it for
    unstructured criteria, which it does not affect."""
    prune, criterion = ident.get("prune"), ident.get("criterion")
    if isinstance(prune, dict) and isinstance(prune.get("group_kinds"), str) and prune["group_kinds"] in KINDS:
        prune["group_kinds"] = [prune["group_kinds"]]  # one name is the list of it
    if isinstance(prune, dict) and isinstance(criterion, dict) and criterion.get("_target_") in UNSTRUCTURED_TARGETS:
        prune.pop("group_kinds", None)
        if prune.get("normalize") == "auto":  # what auto means for an unstructured criterion
            prune["normalize"] = "none"
    rewind = ident.get("rewind")
    if isinstance(rewind, dict) and rewind.get("masks_from"):  # the masks' content, not the folder's path
        from prunelab.pruning.source import identity_value

        rewind["masks_from"] = identity_value(rewind, ident.get("seed"), ident.get("model"))
    if isinstance(rewind, dict):
        rewind.pop("masks_sha1", None)
    for dotted, default in DEFAULTS_OUT_OF_ID.items():
        parent, _, leaf = dotted.rpartition(".")
        node = ident.get(parent)
        if isinstance(node, dict) and node.get(leaf) == default:
            node.pop(leaf, None)


def identity(cfg: DictConfig | ListConfig | dict) -> dict[str, Any]:
    """The resolved values that define a run, minus the keys listed in ``run_id_ignore``."""
    if not isinstance(cfg, (DictConfig, dict)):
        raise TypeError("a run config is a mapping")
    ident = {}
    for key in IDENTITY_KEYS:
        if key in cfg:
            value = cfg[key]
            ident[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if cfg.get("converge"):  # absent or null: the run id of every earlier run is unchanged
        value = cfg["converge"]
        ident["converge"] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    if cfg.get("training_loop", "lean") != "lean":  # Lightning's own loop: its own folder, never the lean loop's runs
        ident["training_loop"] = str(cfg["training_loop"])
    if int(cfg.get("population") or 1) > 1:  # a population job's folder; its members (population=1) keep their ids
        ident["population"] = int(cfg["population"])
    _null_as_empty(ident)
    _drop_legacy_defaults(ident)
    for dotted in cfg.get("run_id_ignore", []) or []:
        _drop(ident, str(dotted))
    return ident


def run_id(cfg: DictConfig | ListConfig | dict) -> str:
    """A stable 10-hex-digit hash of :func:`identity` (pinned by a test so it cannot drift silently)."""
    blob = json.dumps(identity(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _resolver(*, _root_: DictConfig) -> str:
    return run_id(_root_)


def _group_resolver(name: str) -> str:
    """W&B group: the experiment name; in a multirun, the sweep (its folder) too, so one sweep is one group."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if hc.mode is not None and hc.mode.name == "MULTIRUN":
            folder = Path(str(hc.sweep.dir)).name
            return name if folder == name else f"{name}@{folder}"[:128]
    except Exception:  # no Hydra runtime (tests composing directly)
        pass
    return name


def register_resolvers() -> None:
    """The ``prunelab_id`` resolver and the structured config schemas (:mod:`prunelab.schemas`); idempotent."""
    if not OmegaConf.has_resolver("prunelab_id"):
        OmegaConf.register_new_resolver("prunelab_id", _resolver)
    if not OmegaConf.has_resolver("prunelab_group"):
        OmegaConf.register_new_resolver("prunelab_group", _group_resolver)
    global _SCHEMAS_REGISTERED
    if not _SCHEMAS_REGISTERED:
        from prunelab.schemas import register

        register(conf_dir())
        _SCHEMAS_REGISTERED = True


_SCHEMAS_REGISTERED = False
