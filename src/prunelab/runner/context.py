"""RunContext: everything one run is made of, built once from the config (see :mod:`prunelab.runner.build`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from prunelab.data.base import TensorDataModule
from prunelab.pruning.criteria import Criterion
from prunelab.pruning.groups import UnitGroup
from prunelab.pruning.rewind import Rewind
from prunelab.pruning.schedules import Schedule
from prunelab.training.module import ClassifierModule


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    dm: TensorDataModule
    module: ClassifierModule
    schedule: Schedule
    rewind: Rewind
    criterion: Criterion
    groups: list[UnitGroup] = field(default_factory=list)
    loggers: list[Any] = field(default_factory=list)
    extra_callbacks: list[Any] = field(default_factory=list)  # e.g. a test's probe
    warnings: list[str] = field(default_factory=list)  # degenerate but allowed settings, recorded in the summary
    wall_seconds: float = 0.0  # population members: this member's share of the attempt
    round0_from: dict[str, Any] | None = None  # round 0 copied from the shared folder (prunelab.runner.share)
    dense_probs: Any = None  # round 0's test probabilities, once read (prunelab.runner.class_damage)
    null_probs: Any = None  # the null dense model's (probabilities, labels): the noise floor's reference

    @property
    def num_rounds(self) -> int:
        return self.schedule.num_rounds
