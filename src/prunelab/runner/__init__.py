"""The run orchestration: context (a typed RunContext), build (objects from the config), preflight (checks before
the first step), status (lock, identity, verified rounds; shared by single runs and populations), round (fit ->
evaluate -> record -> export), run (the loop) and population (K seeds at once through the same pieces).

``run`` and ``RunInterrupted`` are imported lazily, so that the CLI can check a config (and fail on one line)
without importing torch and Lightning first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RunInterrupted", "run"]


def __getattr__(name: str) -> Any:
    if name == "run":
        from prunelab.runner.run import run

        return run
    if name == "RunInterrupted":
        from prunelab.runner.interrupt import RunInterrupted

        return RunInterrupted
    raise AttributeError(name)
