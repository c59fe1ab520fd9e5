"""The kinds of structured groups (``prune.group_kinds``), without torch: the CLI checks them before any import of
torch (see :mod:`prunelab.pruning.groups` for what each kind is)."""

from __future__ import annotations

from typing import Any

from prunelab.errors import PrunelabError

KINDS = ("conv", "flatten", "linear", "residual")


def check_kinds(kinds: Any) -> tuple[str, ...]:
    """The kinds named by ``prune.group_kinds`` (a list, one name, or ``all``)."""
    values = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if values == ["all"]:
        return KINDS
    bad = [k for k in values if k not in KINDS]
    if bad or not values:
        raise PrunelabError("prune.group_kinds", f"unknown kind(s) {bad or values}",
                            f"use a list of {', '.join(KINDS)} (or [all])")  # fmt: skip
    return tuple(values)
