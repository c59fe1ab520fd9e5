"""``schedule.stop_when``: stop an iterative schedule once class damage breaks a rule (issue 29, item 4).

Two kinds of rule, both read from the rounds' records (so a resumed run, which reads the same verified records,
reaches the same decision):

- ``on: tolerance`` (the default): a round fails when ``damage/passes_tolerance`` is false, i.e. some class's accuracy
  gap to the dense round exceeds the mean gap by more than ``class_tolerance`` (beyond the noise floor);
  ``on: tolerance_own`` uses the stricter ``damage/passes_own``;
- ``on: <metric>`` with ``delta``: a round fails when that recorded metric (higher is better, e.g.
  ``test/recall/pneumonia`` or ``val/recall_worst``) is below its round-0 value by more than ``delta``.

The run stops after ``patience`` consecutive failing rounds (round 0, the dense model, never fails). FairPrune
(Wu et al. 2022) stops when a bias metric has not improved for a number of rounds; "Balancing Act"
(Hashemizadeh et al. 2023) states its success criterion as the epsilon tolerance used here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prunelab.errors import PrunelabError

KEY = "schedule.stop_when"
VERDICTS = {"tolerance": "damage/passes_tolerance", "tolerance_own": "damage/passes_own"}
# recorded figures where higher is better: the ones a "drops by more than delta" rule can watch
HIGHER_IS_BETTER = ("acc", "recall", "precision", "specificity", "f1", "auroc", "auroc_pos", "recall_worst")


@dataclass(frozen=True)
class StopRule:
    on: str = "tolerance"
    delta: float = 0.0
    patience: int = 1

    @classmethod
    def parse(cls, spec: Any) -> StopRule | None:
        """``None``, a bare ``tolerance`` / ``tolerance_own`` / metric name, or ``{on, delta, patience}``."""
        if spec is None:
            return None
        if isinstance(spec, str):
            spec = {"on": spec}
        if not hasattr(spec, "keys"):
            raise PrunelabError(KEY, f"{spec!r} is not a rule", "e.g. schedule.stop_when={on:tolerance,patience:1}")
        unknown = sorted(set(spec.keys()) - {"on", "delta", "patience"})
        if unknown:
            raise PrunelabError(f"{KEY}.{unknown[0]}", "is not a stop_when setting", "use on, delta and patience")
        on, delta, patience = spec.get("on", "tolerance"), spec.get("delta", 0.0), spec.get("patience", 1)
        if not isinstance(on, str) or not on:
            raise PrunelabError(f"{KEY}.on", f"{on!r} is not a rule", "tolerance, tolerance_own or a metric name")
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta < 0:
            raise PrunelabError(f"{KEY}.delta", f"{delta!r} is not a drop >= 0", "e.g. delta=0.05")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise PrunelabError(f"{KEY}.patience", f"{patience!r} is not a round count >= 1", "e.g. patience=1")
        return cls(str(on), float(delta), int(patience))

    def check_metric(self, recorded: Iterable[str]) -> None:
        """Refuse a metric name no round records, or one where higher is not better (before any training)."""
        if self.on in VERDICTS:
            return
        stage, _, rest = self.on.partition("/")
        metric = rest.split("/")[0].removesuffix("_macro")
        if self.on not in set(recorded) or stage not in ("val", "test") or metric not in HIGHER_IS_BETTER:
            raise PrunelabError(
                f"{KEY}.on",
                f"{self.on!r} is not a recorded val/ or test/ figure where higher is better",
                "use tolerance, tolerance_own, or e.g. test/recall/<class>, val/recall_worst, test/acc",
            )

    def failing(self, row: dict, dense: dict) -> bool:
        if row.get("round", 0) == 0:
            return False
        if self.on in VERDICTS:
            verdict = row.get(VERDICTS[self.on])
            if verdict is None:
                raise PrunelabError(KEY, f"round {row.get('round')} has no class-damage verdict", "check the schedule")
            return not verdict
        return float(row[self.on]) < float(dense[self.on]) - self.delta

    def decision(self, rows: Sequence[dict]) -> dict | None:
        """``{"after_round", "reason"}`` when the last ``patience`` rounds all fail, else None."""
        if len(rows) <= self.patience:
            return None
        last = rows[-self.patience :]
        if not all(self.failing(r, rows[0]) for r in last):
            return None
        r = int(rows[-1]["round"])
        if self.on in VERDICTS:
            what = f"{VERDICTS[self.on]} was false"
        else:
            what = f"{self.on} fell more than {self.delta:g} below round 0's {float(rows[0][self.on]):.4f}"
        span = f"round {r}" if self.patience == 1 else f"rounds {r - self.patience + 1}..{r}"
        return {"after_round": r, "reason": f"{what} in {span} (schedule.stop_when, patience {self.patience})"}
