"""Run folders named by the old run ids (before issue 28) move to their new names, once, in one logged step.

Until issue 28 the run id hashed the ``_target_`` module paths, so moving a class renamed every run. The id now
hashes what a config means (:mod:`prunelab.config.identity`); the folders that earlier prunelab versions made are found
under their old id and adopted:

- :func:`legacy_run_id` is the old id, computed exactly as before. It reads the ``_target_`` paths as they were
  when the old ids were last made (:data:`LEGACY_PATHS`, frozen: a prunelab class is named by its class name, so
  the table maps that name back to its old path; this table never changes again).
- :func:`adopt` runs before a run takes its folder: when the folder is empty and a sibling is named by the old id
  and its recorded config has the old id of this request (exactly the check the old prunelab made before reusing
  a folder), the sibling is renamed to the new id. The old record is kept as ``run_config.legacy.yaml``, the
  request's resolved config becomes ``run_config.yaml``, ``summary.json`` names the new id, and
  ``migrated.json`` says what happened. One line in the log names both folders.

Shared round-0 folders (``shared/round0/<key>``) are a cache: their keys changed (round0/2) and they are not
migrated; a run whose round 0 is not in the cache trains it once and publishes it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prunelab.runner import run_folder
from prunelab.runs import files as results

log = logging.getLogger("prunelab")

# The module path of every prunelab class or function a shipped config named when the old ids were made
# (prunelab 7bdddc4), by its name. Frozen: later moves do not touch it.
LEGACY_PATHS = {
    "CIFAR10DataModule": "prunelab.data.cifar.CIFAR10DataModule",
    "DigitsDataModule": "prunelab.data.digits.DigitsDataModule",
    "ISIC2016DataModule": "prunelab.data.isic.ISIC2016DataModule",
    "MedMNISTDataModule": "prunelab.data.medmnist.MedMNISTDataModule",
    "FashionMNISTDataModule": "prunelab.data.mnist.FashionMNISTDataModule",
    "MNISTDataModule": "prunelab.data.mnist.MNISTDataModule",
    "ClassDependentLoss": "prunelab.losses.ClassDependentLoss",
    "CrossEntropy": "prunelab.losses.CrossEntropy",
    "AlexNetSmallHead": "prunelab.models.alexnet.AlexNetSmallHead",
    "ConvNet": "prunelab.models.convnets.ConvNet",
    "LeNet5": "prunelab.models.convnets.LeNet5",
    "MLP": "prunelab.models.mlp.MLP",
    "ResNet": "prunelab.models.resnet.ResNet",
    "VGG": "prunelab.models.vgg.VGG",
    "WideResNet": "prunelab.models.wide_resnet.WideResNet",
    "ActivationEnergy": "prunelab.pruning.criteria.activations.ActivationEnergy",
    "HumanRatings": "prunelab.pruning.criteria.activations.HumanRatings",
    "L1Filter": "prunelab.pruning.criteria.filters.L1Filter",
    "RandomFilter": "prunelab.pruning.criteria.filters.RandomFilter",
    "SNIP": "prunelab.pruning.criteria.gradients.SNIP",
    "TaylorFilter": "prunelab.pruning.criteria.gradients.TaylorFilter",
    "GroupScore": "prunelab.pruning.criteria.group_score.GroupScore",
    "Magnitude": "prunelab.pruning.criteria.magnitude.Magnitude",
    "MagnitudeIncrease": "prunelab.pruning.criteria.magnitude_increase.MagnitudeIncrease",
    "PLSVIP": "prunelab.pruning.criteria.pls_vip.PLSVIP",
    "Random": "prunelab.pruning.criteria.random.Random",
    "Rewind": "prunelab.pruning.rewind.Rewind",
    "Dense": "prunelab.pruning.schedules.Dense",
    "Gradual": "prunelab.pruning.schedules.Gradual",
    "Iterative": "prunelab.pruning.schedules.Iterative",
    "OneShot": "prunelab.pruning.schedules.OneShot",
    "Progressive": "prunelab.pruning.schedules.Progressive",
    "bn_scale": "prunelab.pruning.importances.bn_scale.bn_scale",
    "fpgm": "prunelab.pruning.importances.fpgm.fpgm",
}
# prunelab names shipped after 7bdddc4: no old run id can name them (tests/test_identity.py checks the union)
LATER_NAMES = frozenset(
    {
        "CEAG",
        "Equalized",
        "Distill",
        "PerformanceWeighted",
        "PerClassTaylor",
        "ClassCount",
        "FairPrune",
        "FairGRAPE",
        "PerClassSNIP",
        "PerClassActivation",
    }
)
_LEGACY_UNSTRUCTURED = frozenset({"Magnitude", "MagnitudeIncrease", "Random", "SNIP"})
_LEGACY_KINDS = ("conv", "flatten", "linear", "residual")
_LEGACY_KEYS = (
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
_LEGACY_DEFAULTS: dict[str, Any] = {
    "prune.group_kinds": ["conv"],
    "prune.normalize": "none",
    "prune.ratios": {},
    "prune.max_layer_sparsity": None,
    "prune.round_to": None,
    "rewind.masks_from": None,
    # keys added after 7bdddc4 (issue 29): at their defaults they were not there when the old ids were made
    "model.slice_head": False,
    "data.classes": None,
    "schedule.stop_when": None,
}
_LEGACY_NULL_IS_EMPTY = ("prune.ratios", "data.imbalance.keep_fraction")


def _old_path(value: Any) -> Any:
    """A prunelab code path as it was spelled when the old ids were made."""
    if isinstance(value, dict):
        return {k: _old_path(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_old_path(v) for v in value]
    if isinstance(value, str) and value.startswith("prunelab."):
        return LEGACY_PATHS.get(value.rsplit(".", 1)[-1], value)
    return value


def _node(tree: dict, dotted: str) -> tuple[Any, str]:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    return node, leaf


def _legacy_identity(cfg: Any) -> dict[str, Any]:
    """The run identity as prunelab 7bdddc4 computed it (prunelab.config.identity then)."""
    plain: dict[str, Any] = {}
    for key in (*_LEGACY_KEYS, "converge", "training_loop", "population", "run_id_ignore"):
        if key in cfg:  # these keys only: the whole root would resolve hydra.run.dir, which holds the run id
            value = cfg[key]
            plain[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    ident = {k: _old_path(plain[k]) for k in _LEGACY_KEYS if k in plain}
    if plain.get("converge"):
        ident["converge"] = _old_path(plain["converge"])
    if plain.get("training_loop", "lean") != "lean":
        ident["training_loop"] = str(plain["training_loop"])
    if int(plain.get("population") or 1) > 1:
        ident["population"] = int(plain["population"])
    for dotted in _LEGACY_NULL_IS_EMPTY:
        node, leaf = _node(ident, dotted)
        if isinstance(node, dict) and leaf in node and node[leaf] is None:
            node[leaf] = {}
    _legacy_defaults(ident)
    for dotted in plain.get("run_id_ignore", []) or []:
        node, leaf = _node(ident, str(dotted))
        if isinstance(node, dict):
            node.pop(leaf, None)
    return ident


def _legacy_defaults(ident: dict[str, Any]) -> None:
    prune, criterion = ident.get("prune"), ident.get("criterion")
    if isinstance(prune, dict) and isinstance(prune.get("group_kinds"), str) and prune["group_kinds"] in _LEGACY_KINDS:
        prune["group_kinds"] = [prune["group_kinds"]]
    target = str(criterion.get("_target_", "")) if isinstance(criterion, dict) else ""
    if isinstance(prune, dict) and target.startswith("prunelab.") and target.rsplit(".", 1)[-1] in _LEGACY_UNSTRUCTURED:
        prune.pop("group_kinds", None)
        if prune.get("normalize") == "auto":
            prune["normalize"] = "none"
    rewind = ident.get("rewind")
    if isinstance(rewind, dict) and rewind.get("masks_from"):
        from prunelab.runs.masks_from import identity_value

        rewind["masks_from"] = identity_value(rewind, ident.get("seed"), ident.get("model"))
    if isinstance(rewind, dict):
        rewind.pop("masks_sha1", None)
    for dotted, default in _LEGACY_DEFAULTS.items():
        parent, _, leaf = dotted.rpartition(".")
        node = ident.get(parent)
        if isinstance(node, dict) and node.get(leaf) == default:
            node.pop(leaf, None)


def legacy_run_id(cfg: Any) -> str:
    """The run id an earlier prunelab (before issue 28) gave this config."""
    blob = json.dumps(_legacy_identity(cfg), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def adopt(
    cfg: DictConfig, run_dir: Path, config_name: str = "run_config.yaml", ident: str | None = None
) -> Path | None:
    """Rename the folder an earlier prunelab made for this config (its old run id, in the same parent) to
    ``run_dir``; returns the old folder, or None when there is none (or ``run_dir`` already holds a run).
    ``config_name``: the folder's recorded config (``population_config.yaml`` for a population folder)."""
    from prunelab.config.identity import run_id

    run_dir = Path(run_dir)
    old_id, new_id = legacy_run_id(cfg), ident or run_id(cfg)
    old = run_dir.parent / old_id
    if old_id == run_dir.name or not run_folder.empty(run_dir) or not (old / config_name).is_file():
        return None
    try:
        recorded = OmegaConf.load(old / config_name)
    except Exception:  # unreadable: not adopted; the old folder stays as it is
        return None
    if legacy_run_id(recorded) != old_id:
        return None  # it holds another config's run (the old prunelab would have refused it too)
    return _move(cfg, old, run_dir, (old_id, new_id), config_name)


def _move(cfg: DictConfig, old: Path, run_dir: Path, ids: tuple[str, str], config_name: str) -> Path:
    old_id, new_id = ids
    with run_folder.folder_lock(old, wait=False):
        if run_dir.exists():  # only the CLI's log of this command (still open): it continues in the adopted folder
            for item in run_dir.iterdir():
                if item.name != ".lock":
                    if (old / item.name).exists():
                        os.replace(old / item.name, old / f"{Path(item.name).stem}.before-{new_id}.log")
                    os.replace(item, old / item.name)
            (run_dir / ".lock").unlink(missing_ok=True)
            run_dir.rmdir()
        legacy = Path(config_name)
        os.replace(old / config_name, old / f"{legacy.stem}.legacy{legacy.suffix}")
        results.atomic_write_text(old / config_name, OmegaConf.to_yaml(cfg, resolve=True))
        summary = results.read_json_or_none(old / "summary.json") if (old / "summary.json").exists() else None
        if isinstance(summary, dict):
            results.atomic_write_json(old / "summary.json", {**summary, "run_id": new_id})
        note = {"from": old_id, "to": new_id, "why": "run ids hash what a config means, not module paths (28)"}
        results.atomic_write_json(old / "migrated.json", note)
        os.replace(old, run_dir)
    log.warning("run folder %s moved to %s (its old run id; prunelab no longer hashes module paths)", old, run_dir)
    return old
