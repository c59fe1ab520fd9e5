"""The kinds of structured groups (``prune.group_kinds``), without torch: the CLI checks them before any import of
torch (see :mod:`prunelab.pruning.groups` for what each kind is)."""

from __future__ import annotations

from typing import Any

from prunelab.errors import PrunelabError

KINDS = ("conv", "flatten", "linear", "residual")


def check_kinds(kinds: Any, scorable: tuple[str, ...] = KINDS) -> tuple[str, ...]:
    """The kinds named by ``prune.group_kinds``: a list, one name, ``all`` (every kind) or ``auto`` (every kind
    the criterion can score: ``scorable``)."""
    values = [kinds] if isinstance(kinds, str) else list(kinds or [])
    if values == ["all"]:
        return KINDS
    if values == ["auto"]:
        return tuple(scorable)
    bad = [k for k in values if k not in KINDS]
    if bad or not values:
        raise PrunelabError(
            "prune.group_kinds",
            f"unknown kind(s) {bad or values}",
            f"use a list of {', '.join(KINDS)}, all, or auto (all it can score)",
        )
    return tuple(values)


NORMALIZERS = ("auto", "none", "mean", "max", "l2")


def check_allocation(prune: Any) -> None:
    """``prune.normalize``, ``prune.ratios`` and ``prune.max_layer_sparsity`` (see prunelab.pruning.allocation)."""
    how = prune.get("normalize", "none")
    if how not in NORMALIZERS:
        raise PrunelabError("prune.normalize", f"unknown normaliser {how!r}", f"use one of {', '.join(NORMALIZERS)}")
    for pattern, rate in dict(prune.get("ratios") or {}).items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
            raise PrunelabError(
                f"prune.ratios.{pattern}",
                f"{rate!r} is not a share in [0, 1)",
                "e.g. prune.ratios={'classifier.*': 0.1}",
            )
    step = prune.get("round_to")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        raise PrunelabError(
            "prune.round_to",
            f"{step!r} is not a unit count >= 1",
            "e.g. prune.round_to=8, or null to keep counts as the ranking leaves them",
        )
    cap = prune.get("max_layer_sparsity")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0.0 < float(cap) <= 1):
        raise PrunelabError(
            "prune.max_layer_sparsity",
            f"{cap!r} is not a share in (0, 1]",
            "e.g. prune.max_layer_sparsity=0.9, or null for no cap",
        )
