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
    return _dataclass(target_path, spec_for(target_path)[0])


def spec_for(target_path: str) -> tuple[list[list[Any]], list[str]]:
    """The constructor's fields as plain data (name, type code, default) and the source files they come from
    (the target's module and every class whose ``__init__`` contributes: what the cache entry depends on)."""
    module, _, name = target_path.rpartition(".")
    target = getattr(importlib.import_module(module), name)
    fields = [[p, NESTED_CODE if p in NESTED else _type_code(_field_type(h)), _default_code(d)]
              for p, h, d in _parameters(target)]  # fmt: skip
    chain = [c for c in target.__mro__ if "__init__" in vars(c) and c is not object] if inspect.isclass(target) else []
    files = {inspect.getsourcefile(target)} | {inspect.getsourcefile(c) for c in chain}
    return fields, sorted(f for f in files if f)


NESTED_CODE = "nested"
_CODES: dict[str, Any] = {"int": int, "float": float, "bool": bool, "str": str, "any": Any}


def _type_code(ftype: Any) -> str:
    for code, t in _CODES.items():
        if ftype is t:
            return code
    for code, t in _CODES.items():
        if t is not Any and ftype == Optional[t]:  # noqa: UP045
            return f"optional:{code}"
        if ftype == list[t]:  # type: ignore[valid-type]
            return f"list:{code}"
    return "any"


def _from_code(code: str) -> Any:
    kind, _, inner = code.partition(":")
    if kind == "optional":
        return Optional[_CODES[inner]]  # noqa: UP045
    if kind == "list":
        return list[_CODES[inner]]  # type: ignore[valid-type]  # built at run time
    return _CODES[kind]


def _default_code(value: Any) -> dict[str, Any]:
    made = _default(value)
    if made is MISSING:
        return {"missing": True}
    if isinstance(made, dataclasses.Field):
        factory: Any = made.default_factory
        return {"factory": factory()}
    return {"value": made}


def _copier(value: Any) -> Any:
    """A default factory returning a fresh copy of a list or dict default."""
    return lambda: type(value)(value)


def _dataclass(target_path: str, fields_spec: list[list[Any]]) -> type:
    name = target_path.rpartition(".")[2]
    fields: list[tuple[str, Any, Any]] = [("_target_", str, dataclasses.field(default=target_path))]
    for pname, code, default in fields_spec:
        if code == NESTED_CODE:
            fields.append((pname, NESTED[pname], dataclasses.field(default_factory=NESTED[pname])))
            continue
        ftype = _from_code(code)
        if default.get("missing"):
            dflt: Any = dataclasses.field(default=MISSING)
        elif "factory" in default:
            dflt = dataclasses.field(default_factory=_copier(default["factory"]))
        else:
            dflt = dataclasses.field(default=default["value"])
        if default.get("value", 0) is None and ftype is not Any and not code.startswith("optional"):
            ftype = Optional[ftype]  # noqa: UP045 (a None default makes the field optional)
        fields.append((pname, ftype, dflt))
    return dataclasses.make_dataclass(f"{name}Schema", fields)


# -- the cache: building the schemas imports every option's class (torch, Lightning): ~5 s before a typo can be
# reported. schema_cache.json holds the fields of prunelab's own targets and the sha1 of each source file they come
# from; an entry is used only while those files are unchanged (else the class is imported, as without a cache).
# `python -m prunelab.config.schemas` rewrites it; a test keeps it current.
CACHE = Path(__file__).with_name("schema_cache.json")
PACKAGE = Path(__file__).resolve().parents[1]  # src/prunelab


def _sha1(path: Path) -> str:
    import hashlib

    return hashlib.sha1(path.read_bytes()).hexdigest()


def _cached_fields(target: str, cache: dict) -> list[list[Any]] | None:
    entry = cache.get(target)
    if not entry:
        return None
    for rel, digest in entry["files"].items():
        path = PACKAGE / rel
        if not path.is_file() or _sha1(path) != digest:
            return None
    return entry["fields"]


def build_cache(conf_root: Path) -> dict:
    """Every prunelab target of the schema groups: its fields and the sha1 of the files they come from."""
    out = {}
    for group in SCHEMA_GROUPS:
        for path in sorted((conf_root / group).glob("*.yaml")):
            target = None if path.stem.startswith("_") else _target_of(path, group)
            if target is None or not target.startswith("prunelab.") or target in out:
                continue
            fields, files = spec_for(target)
            inside = [Path(f).resolve() for f in files if Path(f).resolve().is_relative_to(PACKAGE)]
            out[target] = {"fields": fields, "files": {str(f.relative_to(PACKAGE)): _sha1(f) for f in inside}}
    return out


def _target_of(yaml_path: Path, group: str) -> str | None:
    node: Any = OmegaConf.load(yaml_path)
    if "_target_" not in node and group in node:  # a `# @package _global_` option sets its group's node by name
        node = node[group]
    target = node.get("_target_") if OmegaConf.is_dict(node) else None
    return str(target) if target else None


def register(conf_root: Path) -> dict[str, type]:
    """Store ``<group>/schema_<option>`` for every option of :data:`SCHEMA_GROUPS` under ``conf_root``."""
    import json

    from hydra.core.config_store import ConfigStore

    cs, made = ConfigStore.instance(), {}
    try:
        cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    except (OSError, ValueError):
        cache = {}
    for group in SCHEMA_GROUPS:
        for path in sorted((conf_root / group).glob("*.yaml")):
            if path.stem.startswith("_"):
                continue
            target = _target_of(path, group)
            if target is None:
                continue
            fields = _cached_fields(target, cache)
            schema = _dataclass(target, fields) if fields is not None else schema_for(target)
            cs.store(group=group, name=f"schema_{path.stem}", node=schema, provider="prunelab")
            made[f"{group}/{path.stem}"] = schema
    return made


if __name__ == "__main__":  # python -m prunelab.config.schemas: rewrite the cache after changing a constructor
    import json

    from prunelab.config.groups import conf_dir

    CACHE.write_text(json.dumps(build_cache(conf_dir()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {CACHE}")
