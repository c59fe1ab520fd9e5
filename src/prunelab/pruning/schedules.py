"""Schedules: how much to prune and when. Pure functions of the round (or of the step, for gradual ones).

A schedule speaks in overall target *sparsity* of the prunable tensors. Round 0 always trains the dense model
(the matched baseline); ``num_rounds`` counts it.
"""

from __future__ import annotations

from prunelab.errors import PrunelabError


def _check_fraction(key: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise PrunelabError(key, f"{value} is outside [0, 1)", "choose a value in [0, 1); 1.0 would remove everything")
    return value


class OneShot:
    """Train dense, prune once to ``sparsity``, retrain (two rounds).

    With ``at_init`` the only round prunes before any training (SNIP-style pruning at initialisation).
    """

    in_fit = False

    def __init__(self, sparsity: float = 0.5, at_init: bool = False):
        self.sparsity = _check_fraction("schedule.sparsity", sparsity)
        self.at_init = bool(at_init)
        self.num_rounds = 1 if self.at_init else 2

    def sparsity_at(self, round_: int) -> float:
        return self.sparsity if (self.at_init or round_ > 0) else 0.0


class Dense:
    """One round, no pruning: the dense baseline (e.g. for post-training quantization)."""

    in_fit = False
    num_rounds = 1

    def sparsity_at(self, round_: int) -> float:
        return 0.0


class Iterative:
    """Prune ``rate`` of the *remaining* weights each round: sparsity after round r is 1 - (1 - rate)^r."""

    in_fit = False

    def __init__(self, rate: float = 0.2, rounds: int = 5):
        self.rate = _check_fraction("schedule.rate", rate)
        if int(rounds) < 1:
            raise PrunelabError("schedule.rounds", f"{rounds} pruning rounds", "use at least 1")
        self.num_rounds = int(rounds) + 1

    def sparsity_at(self, round_: int) -> float:
        return 1.0 - (1.0 - self.rate) ** round_
