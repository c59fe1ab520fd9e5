"""Structured config schemas: a misspelled key or a wrong type fails when Hydra composes the config, naming the key.

For every option of the groups in :data:`SCHEMA_GROUPS` (``conf/<group>/<option>.yaml``) a dataclass is built from
the constructor of the option's ``_target_`` (its parameters, type hints and defaults, walking up the class chain
while a constructor passes ``**kwargs`` on) and stored in Hydra's ConfigStore as ``<group>/schema_<option>``. Each
option's YAML names it first in its defaults list, so the YAML and any override are merged onto a typed node:

    $ prunelab criterion.scpe=layer
    prunelab: error: Key 'scpe' not in 'MagnitudeSchema' ... full_key: criterion.scpe ...
    $ prunelab schedule.rounds=many
    prunelab: error: Value 'many' of type 'str' could not be converted to Integer ... full_key: schedule.rounds

Building the schemas from the code keeps them in step with it; a test checks that every option of these groups
names its schema and that the fields are typed. Nested options with their own meaning get hand-written schemas
(:class:`ImbalanceSchema`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Optional, Union

from omegaconf import MISSING, OmegaConf

SCHEMA_GROUPS = ("criterion", "schedule", "loss", "data")
_SCALARS = (int, float, bool, str)


@dataclasses.dataclass
class ImbalanceSchema:
    """``data.imbalance``: how the training split is made imbalanced (prunelab.data.imbalance)."""

    positive_class: Optional[int] = None  # noqa: UP045 (OmegaConf needs typing.Optional)
    neg_pos_ratio: Optional[float] = None  # noqa: UP045
    keep_fraction: Any = (
        None  # {class: share}; null, not {} and untyped: settable from the command line (imbalance.py checks it)
    )
    long_tail_ratio: Optional[float] = None  # noqa: UP045
    apply_to_val: bool = False


NESTED: dict[str, type] = {"imbalance": ImbalanceSchema}


def _field_type(hint: Any) -> Any:
    """The nearest type OmegaConf can validate (scalars, Optional, List of scalars); anything else is Any."""
    if hint in _SCALARS:
        return hint
    if hint is Path:
        return str
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            inner = _field_type(rest[0])
            return Any if inner is Any else Optional[inner]  # noqa: UP045
        return Any
    if origin in (list, tuple, collections.abc.Sequence):
        elem = args[0] if args else Any
        return list[elem] if elem in _SCALARS else list[Any]  # type: ignore[valid-type]  # built at run time
    return Any


def _parameters(target: Any) -> list[tuple[str, Any, Any]]:
    """(name, type hint, default) of the constructor parameters, following ``**kwargs`` up the class chain."""
    out: dict[str, tuple[Any, Any]] = {}
    chain = [c for c in target.__mro__ if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    for owner in chain:
        fn = owner.__init__ if inspect.isclass(owner) else owner
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # an annotation that cannot be evaluated: validate the key, not the type
            hints = {}
        passes_on = False
        for name, p in inspect.signature(fn).parameters.items():
            if name == "self" or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                passes_on = True
                continue
            out.setdefault(name, (hints.get(name, Any), p.default))
        if not passes_on or owner is object:
            break
    return [(n, h, d) for n, (h, d) in out.items()]


def _default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return MISSING
    if isinstance(value, (list, dict, tuple)):
        copy: Any = list(value) if isinstance(value, tuple) else value
        return dataclasses.field(default_factory=lambda: type(copy)(copy))
    if value is None or isinstance(value, (*_SCALARS, Path)):
        return str(value) if isinstance(value, Path) else value
    return None


def schema_for(target_path: str) -> type:
    """A dataclass for the constructor of ``target_path`` (``module.Class`` or ``module.function``)."""
    module, _, name = target_path.rpartition(".")
    target = getattr(importlib.import_module(module), name)
    fields: list[tuple[str, Any, Any]] = [("_target_", str, dataclasses.field(default=target_path))]
    for pname, hint, default in _parameters(target):
        if pname in NESTED:
            fields.append((pname, NESTED[pname], dataclasses.field(default_factory=NESTED[pname])))
            continue
        ftype = _field_type(hint)
        dflt = _default(default)
        if dflt is None and ftype is not Any and not str(ftype).startswith("typing.Optional"):
            ftype = Optional[ftype]  # noqa: UP045 (a None default makes the field optional)
        fields.append((pname, ftype, dflt if isinstance(dflt, dataclasses.Field) else dataclasses.field(default=dflt)))
    return dataclasses.make_dataclass(f"{name}Schema", fields)


def _target_of(yaml_path: Path, group: str) -> str | None:
    node: Any = OmegaConf.load(yaml_path)
    if "_target_" not in node and group in node:  # a `# @package _global_` option sets its group's node by name
        node = node[group]
    target = node.get("_target_") if OmegaConf.is_dict(node) else None
    return str(target) if target else None


def register(conf_root: Path) -> dict[str, type]:
    """Store ``<group>/schema_<option>`` for every option of :data:`SCHEMA_GROUPS` under ``conf_root``."""
    from hydra.core.config_store import ConfigStore

    cs, made = ConfigStore.instance(), {}
    for group in SCHEMA_GROUPS:
        for path in sorted((conf_root / group).glob("*.yaml")):
            if path.stem.startswith("_"):
                continue
            target = _target_of(path, group)
            if target is None:
                continue
            schema = schema_for(target)
            cs.store(group=group, name=f"schema_{path.stem}", node=schema, provider="prunelab")
            made[f"{group}/{path.stem}"] = schema
    return made
