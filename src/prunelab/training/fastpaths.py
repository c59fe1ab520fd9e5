"""The gate to prunelab's fast paths, and the only door to :mod:`prunelab.training.internals`.

The fast paths (the lean epoch loop, the linking checkpoint, the lean mask property) use private Lightning and torch
names. They are taken only on the exact releases their bit-identity tests passed on (:data:`TESTED`:
``tests/test_lean_loop.py``, ``tests/test_checkpoint.py``, ``tests/test_masks.py``), and only if
:mod:`~prunelab.training.internals` imports (it is imported here, lazily, inside a ``try``). Otherwise, or with
``PRUNELAB_FAST_PATHS=0``, everything runs through the public paths, with the same results (slower on small
models: docs/performance.md P1, P2); each round's ``metrics.json`` records which loop trained it and why.
"""

from __future__ import annotations

import functools
import logging
import os
from types import ModuleType
from typing import Any

log = logging.getLogger("prunelab")

# The releases the bit-identity tests passed on, to the patch level (torch's local build tag, +cu130, aside)
TESTED = {"lightning": "2.6.6", "torch": "2.14.1"}
ENV = "PRUNELAB_FAST_PATHS"


def installed() -> dict[str, str]:
    import lightning.pytorch as pl
    import torch

    return {"lightning": pl.__version__, "torch": torch.__version__.split("+")[0]}


def closed_reason() -> str | None:
    """Why the gate is closed (None: it is open)."""
    if os.environ.get(ENV, "1") == "0":
        return f"{ENV}=0"
    for name, have in installed().items():
        if have != TESTED[name]:
            return f"{name} {have} is not the release the fast paths were checked on ({TESTED[name]})"
    return None


@functools.cache
def _load() -> tuple[ModuleType | None, str | None]:
    why = closed_reason()
    if why is not None:
        log.info("prunelab's fast paths are off: %s", why)
        return None, why
    try:
        from prunelab.training import internals
    except Exception as exc:  # a renamed or removed private name: ImportError, AttributeError, TypeError, ...
        why = f"their private imports failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        log.warning("prunelab's fast paths are off: %s; training takes the public paths", why)
        return None, why
    return internals, None


def internals() -> ModuleType | None:
    """:mod:`prunelab.training.internals`, or None where the gate is closed or its import failed."""
    return _load()[0]


def reason() -> str | None:
    """Why the fast paths are off (None: they are on)."""
    return _load()[1]


def install_lean_loop(trainer: Any) -> None:
    """Make ``trainer``'s epoch loop the lean one (where the fast paths are on; else Lightning's stays)."""
    module = internals()
    if module is not None:
        module.LeanEpochLoop.install(trainer)


def loop_used(trainer: Any, lean: bool) -> str:
    """Which loop trained ``trainer``'s fit (``lean`` asked for the lean one): ``lean``, ``lightning: <why not>``,
    ``lightning`` or ``none``."""
    module = internals()
    if module is None:
        return f"lightning: {reason()}" if lean else "lightning"
    return str(module.LeanEpochLoop.used(trainer))


def round_checkpoint(**kwargs: Any) -> Any:
    """The round's checkpoint callback: the linking one where the fast paths are on, else the public one."""
    module = internals()
    if module is not None:
        return module.LinkingCheckpoint(**kwargs)
    from prunelab.training.checkpoint import RoundCheckpoint

    return RoundCheckpoint(**kwargs)


def install_mask_fast_path() -> None:
    """Masked tensors read through the lean property (where the fast paths are on); idempotent."""
    module = internals()
    if module is None:
        return
    from prunelab.pruning import masks

    if module.lean_property not in masks.MASKED_HOOKS:
        masks.MASKED_HOOKS.append(module.lean_property)
