"""The run orchestration: context (a typed RunContext), build (objects from the config), preflight (checks before
the first step), status (lock, identity, verified rounds; shared by single runs and populations), round (fit ->
evaluate -> record -> export), run (the loop) and population (K seeds at once through the same pieces)."""

from prunelab.runner.interrupt import RunInterrupted
from prunelab.runner.run import run

__all__ = ["RunInterrupted", "run"]
