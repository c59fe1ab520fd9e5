"""prunelab's classes and functions named without their module, so that a run's identity survives moving them."""

from __future__ import annotations

import re

_CODE_PATH = re.compile(r"prunelab(\.[A-Za-z_]\w*)+")


def is_prunelab_path(value: str) -> bool:
    """``value`` is a dotted path into prunelab (``prunelab.training.losses.CrossEntropy``)."""
    return bool(_CODE_PATH.fullmatch(value))


def code_name(value: str) -> str:
    """A prunelab class or function named without its module (``prunelab.training.losses.CrossEntropy`` ->
    ``CrossEntropy``); any other string unchanged."""
    return value.rsplit(".", 1)[-1] if is_prunelab_path(value) else value
