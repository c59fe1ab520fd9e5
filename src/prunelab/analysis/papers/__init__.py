"""The papers prunelab reproduces, one module each: its claims (``CLAIMS``, ``evaluate``), its CPU-scale sweep
(``SPEC``: sweeps, seeds, configs, data, expected time) and its table (``table(runs, root)``). A module here with a
``SPEC`` is a paper: ``prunelab reproduce``, its help and ``docs/reproductions.md`` find it by :func:`registry`;
adding a paper is one file here plus its experiment configs."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def names() -> list[str]:
    """The paper modules' names, without importing them (``common`` holds shared table helpers)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "common" and not m.name.startswith("_"))


def registry() -> dict[str, ModuleType]:
    """Every paper module (one with a ``SPEC``), by name."""
    out = {}
    for name in names():
        module = importlib.import_module(f"{__name__}.{name}")
        if hasattr(module, "SPEC"):
            out[name] = module
    return out
