"""The run identity: what a config *means*, hashed into the run id that names its folder.

OpenLTH's rule (its ``Desc.hashname``): the hash covers the hyperparameters that change results, and a key whose
value equals its default leaves the hash, so adding a key with a default never renames a run. prunelab's form:

- **names, not code paths**: a ``_target_`` (and any value that is a dotted path into prunelab, such as
  ``criterion.fn``) is hashed as its last component, the class or function name. Moving a class to another module
  renames nothing. (A test keeps these names unique among what prunelab ships.) Paths outside prunelab (your own
  classes, ``torch.optim.Adam``) are hashed in full.
- **defaults leave**: below a ``_target_``, a key equal to the constructor's default; elsewhere, a key equal to
  its value in ``conf/config.yaml`` (or, for a group whose default option has no ``_target_``, such as
  ``quantize``, that option's YAML). An empty mapping is null. Defaults are read from code only for prunelab's
  classes and the targets that prunelab's configs name: a recorded config can never make prunelab import its code.
- **meaning, from the objects**: an unstructured criterion (``structured = False``) is not affected by
  ``prune.group_kinds``, and ``prune.normalize`` ``none`` is what ``auto`` means for it; ``rewind.masks_from``
  counts by the content of the masks it names, not by its path.
- ``run_id_ignore`` lists keys that do not change results (display, data location).

:func:`same_meaning` is the check a run folder makes before it is reused: every key compared, a key missing on
one side standing for its default. Two configs with the same id but different values (a default changed between
versions) are therefore refused, never mixed. The shared round-0 key (:mod:`prunelab.runner.share`) hashes
:func:`canonical` values with :func:`digest` too.

Folders named by the ids before this rule are adopted once (:mod:`prunelab.runner.migrate`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from prunelab.config.groups import conf_dir
from prunelab.config.names import code_name, is_prunelab_path

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
    "threads",
    "monitor",
    "init_weights",
    "quantize",
    "converge",
    "training_loop",
    "population",
    "class_tolerance",
    "class_metrics",
    "calibrate",
    "budget",
)


_NO_DEFAULT = object()
OWN_KEYS: dict[str, Any] = {"slice_head": False}  # prunelab's keys inside a _target_ node (model.slice_head), not
# constructor parameters: left out of the identity at these defaults, and of the constructor call (instantiate.make)


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` that a YAML file under ``conf/`` names."""
    found = set()
    for path in conf_dir().rglob("*.yaml"):
        found.update(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.MULTILINE))
    return frozenset(found)


@functools.cache
def _code(target: str) -> Any:
    """The class or function behind ``target`` when prunelab may import it to read its defaults, else None."""
    if not (is_prunelab_path(target) or target in shipped_targets()):
        return None
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _plain_default(value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, dict)):
        try:  # plain data only: a default holding objects cannot equal a config value
            json.dumps(value)
        except (TypeError, ValueError):
            return _NO_DEFAULT
        return value
    return _NO_DEFAULT


@functools.cache
def target_defaults(target: str) -> dict[str, Any]:
    """The constructor defaults of ``target`` (following ``**kwargs`` up the class chain), plain values only."""
    from prunelab.config.schemas import NESTED, _parameters

    code = _code(target)
    if code is None:
        return {}
    out = {}
    for name, _hint, default in _parameters(code):
        if name in NESTED:
            out[name] = _NestedDefaults(name)
        elif default is not inspect.Parameter.empty and _plain_default(default) is not _NO_DEFAULT:
            out[name] = _plain_default(default)
    return out


class _NestedDefaults:
    """A nested option with a schema of its own (``data.imbalance``): its fields' defaults."""

    def __init__(self, name: str) -> None:
        import dataclasses

        from prunelab.config.schemas import NESTED

        fields = dataclasses.fields(NESTED[name])
        self.values = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


@functools.cache
def _yaml_defaults() -> dict[str, Any]:
    """The defaults of the keys without a ``_target_`` above them (see the module docstring)."""
    root: Any = OmegaConf.to_container(OmegaConf.load(conf_dir() / "config.yaml"))
    out = {k: v for k, v in root.items() if k not in ("defaults", "hydra")}
    for entry in root.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                path = conf_dir() / str(group) / f"{option}.yaml"
                node: Any = OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else None
                if isinstance(node, dict) and "_target_" not in node and "defaults" not in node:
                    out[str(group)] = node
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as values: 0 and 0.0 are, True and 1 are not, None and {} are."""
    a, b = (None if x == {} else x for x in (a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _canon(value: Any, defaults: Any, drop: bool) -> Any:
    """Names instead of code paths; with ``drop``, keys at their default left out."""
    if isinstance(value, dict):
        if not value:
            return None
        target = value.get("_target_")
        if isinstance(target, str):
            defaults = {**OWN_KEYS, **target_defaults(target)}
        elif isinstance(defaults, _NestedDefaults):
            defaults = defaults.values
        out = {}
        for key, item in value.items():
            default = defaults.get(key, _NO_DEFAULT) if isinstance(defaults, dict) else _NO_DEFAULT
            canon = _canon(item, default if isinstance(default, (dict, _NestedDefaults)) else None, drop)
            if drop and default is not _NO_DEFAULT and _same(canon, _canon(_plain_nested(default), default, drop)):
                continue
            out[key] = canon
        return out
    if isinstance(value, list):
        return [_canon(item, None, drop) for item in value]
    if isinstance(value, str):
        return code_name(value)
    return value


def _plain_nested(default: Any) -> Any:
    return default.values if isinstance(default, _NestedDefaults) else default


def _criterion_meaning(ident: dict[str, Any], cfg: dict[str, Any]) -> None:
    """What ``prune`` keys mean depends on the criterion: the criterion class says whether it is structured."""
    prune, criterion = ident.get("prune"), cfg.get("criterion")
    if not isinstance(prune, dict):
        return
    kinds = prune.get("group_kinds")
    if isinstance(kinds, str) and kinds not in ("auto", "all"):
        prune["group_kinds"] = [kinds]  # one kind is the list of it
    target = criterion.get("_target_") if isinstance(criterion, dict) else None
    code = _code(str(target)) if isinstance(target, str) else None
    if code is not None and getattr(code, "structured", None) is False:
        prune.pop("group_kinds", None)  # one score per weight: the kinds change nothing
        if prune.get("normalize") == "none":
            prune["normalize"] = "auto"  # what auto means for an unstructured criterion


def _masks_meaning(ident: dict[str, Any], plain: dict[str, Any]) -> None:
    rewind, asked = ident.get("rewind"), plain.get("rewind")
    if isinstance(rewind, dict):
        rewind.pop("masks_sha1", None)  # the recorded pin of the same content
    if isinstance(rewind, dict) and isinstance(asked, dict) and asked.get("masks_from"):  # content, not path
        from prunelab.runs.masks_from import identity_value

        rewind["masks_from"] = identity_value(asked, plain.get("seed"), plain.get("model"))


def _plain(cfg: DictConfig | ListConfig | dict, keys: tuple[str, ...]) -> dict[str, Any]:
    """The resolved values of ``keys`` (and of ``run_id_ignore``), only: resolving the whole root would resolve
    ``hydra.run.dir``, which holds the run id."""
    if not isinstance(cfg, (DictConfig, dict)):
        raise TypeError("a run config is a mapping")
    out = {}
    for key in (*keys, "run_id_ignore", "seed", "model"):
        if key in cfg:
            value = cfg[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return out


def canonical(cfg: DictConfig | ListConfig | dict, keys: tuple[str, ...] = IDENTITY_KEYS, drop: bool = True) -> dict:
    """The values of ``keys`` as the identity sees them (``drop=False``: defaults kept, for comparisons)."""
    plain, roots = _plain(cfg, keys), _yaml_defaults()
    ident: dict[str, Any] = {}
    for key in keys:
        if key not in plain or key in ("run_id_ignore",):
            continue
        ident[key] = _canon(plain[key], roots.get(key), drop)
    _criterion_meaning(ident, plain)
    _masks_meaning(ident, plain)
    for key in list(ident):
        node = ident[key]
        if isinstance(node, dict):
            default: dict = roots[key] if isinstance(roots.get(key), dict) else {}
            for k in [k for k in node if k in default]:
                if drop and _same(node[k], _canon(default[k], None, drop)):
                    del node[k]
            if drop and not node and "_target_" not in (plain.get(key) or {}):
                del ident[key]
        elif drop and key in roots and _same(node, roots[key]):
            del ident[key]
    for dotted in plain.get("run_id_ignore", []) or []:
        _drop(ident, str(dotted))
    return ident


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def identity(cfg: DictConfig | ListConfig | dict) -> dict[str, Any]:
    """What defines a run: :func:`canonical` of the identity keys, defaults left out."""
    return canonical(cfg)


def digest(value: Any, length: int = 10) -> str:
    """The SHA-1 of a canonical value (sorted JSON), ``length`` hex digits."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


def run_id(cfg: DictConfig | ListConfig | dict) -> str:
    """A stable 10-hex-digit hash of :func:`identity` (pinned by a test so it cannot drift silently)."""
    return digest(identity(cfg))


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def differences(a: DictConfig | ListConfig | dict, b: DictConfig | ListConfig | dict) -> list[str]:
    """The dotted keys whose values differ between two configs' identities, a key missing on one side standing
    for its default (empty: the same run). Stricter than comparing ids: a key both sides give at different values
    differs even where each value was its version's default."""
    full = [_flat(canonical(x, drop=False)) for x in (a, b)]
    kept = [_flat(canonical(x)) for x in (a, b)]
    out = []
    for key in sorted(set(full[0]) | set(full[1])):
        if key in full[0] and key in full[1]:
            differ = not _same(full[0][key], full[1][key])
        else:
            differ = key in kept[0] or key in kept[1]  # given on one side only, at a value that is not a default
        if differ:
            out.append(key)
    return out
