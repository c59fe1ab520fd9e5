"""Schedules: how much to prune and when. Pure functions of the round (or of the step, for gradual ones).

A schedule speaks in overall target *sparsity* of the prunable tensors. Round 0 always trains the dense model
(the matched baseline); ``num_rounds`` counts it. Every schedule derives from :class:`Schedule`, whose class
attributes say what kind it is, so callers never probe with ``getattr``/``hasattr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prunelab.errors import PrunelabError
from prunelab.pruning.stopping import StopRule


class Schedule:
    """What every schedule answers. ``in_fit``: masks change inside a fit, at steps (gradual); ``progressive``: each
    round prunes one layer and later layers stay frozen (bound to the model's filter groups by :meth:`bind`)."""

    in_fit: bool = False
    progressive: bool = False
    freeze: bool = False  # progressive schedules: later layers frozen while a layer retrains
    num_rounds: int = 1
    target_key: str = "schedule"  # the config key that sets how much is pruned (named in errors)
    stop: StopRule | None = None  # iterative schedules: schedule.stop_when (prunelab.pruning.stopping)

    def sparsity_at(self, round_: int) -> float:
        raise NotImplementedError

    @property
    def step_share(self) -> float:
        """One schedule step's sparsity (prune.ratios are rates per step: prunelab.pruning.allocation)."""
        return self.sparsity_at(self.num_rounds - 1)

    def bind(self, groups: Sequence[Any]) -> None:
        """Learn the model's structure (progressive schedules); the others need none."""

    def update_at(self, step: int) -> bool:
        """Whether masks are recomputed before optimizer step ``step`` (in-fit schedules only)."""
        return False

    def sparsity_at_step(self, step: int) -> float:
        return self.sparsity_at(0)

    def layer_at(self, round_: int) -> str | None:
        """The layer a progressive round prunes."""
        return None

    def last_step(self) -> int:
        """The last optimizer step at which an in-fit schedule changes masks (0 for the others)."""
        return 0


def _check_fraction(key: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise PrunelabError(key, f"{value} is outside [0, 1)", "choose a value in [0, 1); 1.0 would remove everything")
    return value


class OneShot(Schedule):
    """Train dense, prune once to ``sparsity``, retrain (two rounds).

    With ``at_init`` the only round prunes before any training (SNIP-style pruning at initialisation).
    """

    target_key = "schedule.sparsity"

    def __init__(self, sparsity: float = 0.5, at_init: bool = False):
        self.sparsity = _check_fraction("schedule.sparsity", sparsity)
        self.at_init = bool(at_init)
        self.num_rounds = 1 if self.at_init else 2

    def sparsity_at(self, round_: int) -> float:
        return self.sparsity if (self.at_init or round_ > 0) else 0.0


class Dense(Schedule):
    """One round, no pruning: the dense baseline (e.g. for post-training quantization)."""

    num_rounds = 1

    def sparsity_at(self, round_: int) -> float:
        return 0.0


class Iterative(Schedule):
    """Prune ``rate`` of the *remaining* weights each round: sparsity after round r is 1 - (1 - rate)^r."""

    target_key = "schedule.rate"

    def __init__(self, rate: float = 0.2, rounds: int = 5, stop_when: Any = None):
        self.rate = _check_fraction("schedule.rate", rate)
        if int(rounds) < 1:
            raise PrunelabError("schedule.rounds", f"{rounds} pruning rounds", "use at least 1")
        self.num_rounds = int(rounds) + 1
        self.stop = StopRule.parse(stop_when)  # stop early once class damage breaks a rule

    def sparsity_at(self, round_: int) -> float:
        return 1.0 - (1.0 - self.rate) ** round_

    @property
    def step_share(self) -> float:
        return self.rate


class Gradual(Schedule):
    """Zhu & Gupta 2017 ("To prune, or not to prune") cubic schedule, applied inside one fit.

    Every ``frequency`` optimizer steps from ``begin_step`` to ``end_step`` the masks are recomputed for
    ``s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin))^3``; at ``end_step`` the sparsity is
    ``final_sparsity`` and stays there. One round (the fit that prunes); Hooker et al. 2019 used this schedule.
    """

    in_fit = True
    num_rounds = 1
    target_key = "schedule.final_sparsity"

    def __init__(
        self,
        final_sparsity: float = 0.5,
        begin_step: int = 0,
        end_step: int = 1000,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
    ):
        self.final = _check_fraction("schedule.final_sparsity", final_sparsity)
        self.initial = _check_fraction("schedule.initial_sparsity", initial_sparsity)
        self.begin, self.end, self.frequency = int(begin_step), int(end_step), int(frequency)
        if self.end <= self.begin or self.begin < 0:
            raise PrunelabError(
                "schedule.end_step",
                f"end {self.end} must be after begin {self.begin} >= 0",
                "e.g. begin_step=0 end_step=1000",
            )
        if self.frequency < 1:
            raise PrunelabError("schedule.frequency", f"{frequency} must be >= 1", "e.g. 100 steps")

    def sparsity_at(self, round_: int) -> float:
        return self.final

    def sparsity_at_step(self, step: int) -> float:
        t = min(max(step, self.begin), self.end)
        return self.final + (self.initial - self.final) * (1 - (t - self.begin) / (self.end - self.begin)) ** 3

    def last_step(self) -> int:
        return self.end

    def update_at(self, step: int) -> bool:
        """Masks change at begin, every ``frequency`` steps after it, and at ``end`` exactly."""
        if step < self.begin or step > self.end:
            return False
        return (step - self.begin) % self.frequency == 0 or step == self.end


class Progressive(Schedule):
    """Layer-by-layer simplification with progressive retraining (Osaku et al. 2021; docs/methods.md, our reading).

    Round 0 trains the dense model; round l (1..L) prunes the kernels (filters) of the l-th structurally prunable
    conv only, then retrains with convs 1..l+1 (and their BatchNorms) trainable and every later layer frozen.
    In each layer either the ``rate`` share of its kernels with the lowest relevance is removed, or, with
    ``threshold``, every kernel scoring below it (the human-ratings criterion scores keep = 1, drop = 0).
    Needs a structured criterion; ``bind`` is called with the model's filter groups.
    """

    progressive = True
    target_key = "schedule.rate"

    def __init__(self, rate: float | None = 0.5, threshold: float | None = None, freeze: bool = True):
        if (rate is None) == (threshold is None):
            raise PrunelabError("schedule.rate", "set exactly one of rate and threshold", "e.g. rate=0.5")
        self.rate = None if rate is None else _check_fraction("schedule.rate", rate)
        self.threshold = None if threshold is None else float(threshold)
        self.freeze = bool(freeze)  # False: retrain the whole model each round (the comparison baseline)
        self.layers: list[str] = []
        self.num_rounds = 1

    def bind(self, groups: Sequence[Any]) -> None:
        self.layers = [g.key for g in groups]
        self.num_rounds = 1 + len(self.layers)

    def layer_at(self, round_: int) -> str | None:
        return self.layers[round_ - 1] if 0 < round_ <= len(self.layers) else None

    def sparsity_at(self, round_: int) -> float:
        """Nominal share of the pruned layers' kernels removed so far (reported, not used to select)."""
        return (
            0.0
            if round_ == 0 or self.rate is None
            else self.rate * min(round_, len(self.layers)) / max(1, len(self.layers))
        )
