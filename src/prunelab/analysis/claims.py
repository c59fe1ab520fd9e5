"""A paper's claim as a falsifiable test (docs/reproductions.md, "How a verdict is reached").

Every row of a reproduction table is a :class:`Claim`, declared in code before any run: the paper's wording and
where it is stated, the statistic, the test, the threshold, the claimed side and the minimum sample size. The
measured :class:`Result` carries the effect size, a 95% interval, a p-value where a test applies, the null figure
where the claim counts things, and one of three verdicts:

- ``held``: the whole 95% interval of the effect lies on the claimed side of the threshold (for a t interval this
  is the one-sided test at 2.5%);
- ``did not hold``: the whole interval lies on the other side;
- ``undecided (underpowered)``: the interval contains the threshold, or fewer than ``min_n`` units were measured.

So a rule can only say ``held`` when the data exclude the threshold; on data with no effect it says ``held`` in
about 2.5% of draws (tests/test_claims.py checks this on synthetic nulls, and that a true effect is found).

The three interval makers:

- :func:`mean_interval`: the mean of per-unit values (paired differences over seeds) with a Student t interval;
- :func:`welch_interval`: the difference of two independent groups' means, Welch-Satterthwaite t interval;
- :func:`null_interval`: an observed figure against a null distribution of the same figure (e.g. counts from
  random splits of two dense populations): effect = observed - null mean, interval = observed minus the null's
  97.5th and 2.5th percentiles, p = share of null draws at least as extreme (with the +1 correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

HELD, NOT_HELD, UNDECIDED = "held", "did not hold", "undecided (underpowered)"
VERDICTS = (HELD, NOT_HELD, UNDECIDED)
LEVEL = 0.95  # every interval is a 95% interval


@dataclass(frozen=True)
class Claim:
    """One pre-stated claim. The claimed side is ``effect > threshold`` (``side='greater'``) or
    ``effect < threshold`` (``side='less'``)."""

    key: str
    wording: str  # the paper's claim, quoted where the words are the paper's
    source: str  # where the paper states it
    statistic: str  # what the effect measures, in words
    test: str  # how the interval is made
    threshold: float
    side: str  # "greater" or "less"
    min_n: int  # fewer units than this: undecided (underpowered)
    unit: str = "seeds"  # what n counts

    def __post_init__(self) -> None:
        if self.side not in ("greater", "less"):
            raise ValueError(f"claim {self.key}: side must be 'greater' or 'less', not {self.side!r}")


@dataclass
class Interval:
    effect: float
    low: float
    high: float
    n: int
    p: float | None = None  # one-sided, for the claimed side against the threshold
    null: str | None = None  # the null figure, in words (counting claims)


@dataclass
class Result:
    claim: Claim
    verdict: str
    interval: Interval
    notes: list[str] = field(default_factory=list)

    def row(self, digits: int = 3) -> list[str]:
        """Cells of the claims table: claim, statistic, effect, 95% interval, p, null, n, verdict."""
        iv, fmt = self.interval, f"{{:+.{digits}f}}"
        effect = "-" if math.isnan(iv.effect) else fmt.format(iv.effect)
        ci = "-" if math.isnan(iv.low) else f"[{fmt.format(iv.low)}, {fmt.format(iv.high)}]"
        p = "-" if iv.p is None or math.isnan(iv.p) else f"{iv.p:.3g}"
        side = ">" if self.claim.side == "greater" else "<"
        wording = f"{self.claim.wording} ({self.claim.source})"
        return [
            wording,
            f"{self.claim.statistic} {side} {self.claim.threshold:g}",
            effect,
            ci,
            p,
            iv.null or "-",
            f"{iv.n} {self.claim.unit}",
            f"**{self.verdict}**",
        ]


def decide(claim: Claim, iv: Interval) -> str:
    """The verdict rule, the same for every claim (see the module docstring)."""
    values = (iv.effect, iv.low, iv.high)
    if iv.n < claim.min_n or any(math.isnan(v) for v in values):
        return UNDECIDED
    above, below = iv.low > claim.threshold, iv.high < claim.threshold
    if claim.side == "greater":
        return HELD if above else NOT_HELD if below else UNDECIDED
    return HELD if below else NOT_HELD if above else UNDECIDED


def judge(claim: Claim, iv: Interval, notes: list[str] | None = None) -> Result:
    return Result(claim, decide(claim, iv), iv, list(notes or []))


def _clean(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[~np.isnan(arr)]


def _one_sided(t: float, df: float, side: str) -> float:
    return float(stats.t.sf(t, df) if side == "greater" else stats.t.cdf(t, df))


def mean_interval(values, threshold: float = 0.0, side: str = "greater") -> Interval:
    """Mean of per-unit values (NaNs dropped) with a t interval; p is one-sided against ``threshold``."""
    x = _clean(values)
    n = len(x)
    if n < 2:
        return Interval(float(x.mean()) if n else math.nan, math.nan, math.nan, n)
    mean, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))
    if se == 0:  # every unit equal: the interval is the point, the test is decided by the sign alone
        p = 0.0 if (mean > threshold if side == "greater" else mean < threshold) else 1.0
        return Interval(mean, mean, mean, n, p)
    return Interval(mean, mean - q * se, mean + q * se, n, _one_sided((mean - threshold) / se, n - 1, side))


def welch_interval(a, b, threshold: float = 0.0, side: str = "greater") -> Interval:
    """mean(a) - mean(b) for independent groups, Welch-Satterthwaite t interval; n = the smaller group."""
    x, y = _clean(a), _clean(b)
    n = min(len(x), len(y))
    if n < 2:
        return Interval(math.nan, math.nan, math.nan, n)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff, se = float(x.mean() - y.mean()), math.sqrt(vx + vy)
    if se == 0:
        p = 0.0 if (diff > threshold if side == "greater" else diff < threshold) else 1.0
        return Interval(diff, diff, diff, n, p)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
    q = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    return Interval(diff, diff - q * se, diff + q * se, n, _one_sided((diff - threshold) / se, df, side))


def null_interval(observed: float, null, side: str = "greater", n: int | None = None) -> Interval:
    """``observed`` against draws of the same figure under no effect (see the module docstring)."""
    draws = _clean(null)
    if not len(draws):
        return Interval(math.nan, math.nan, math.nan, 0)
    tail = (draws >= observed) if side == "greater" else (draws <= observed)
    p = (1 + int(tail.sum())) / (1 + len(draws))
    lo_q, hi_q = np.quantile(draws, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])
    mean = float(draws.mean())
    null = f"mean {mean:.3g}, 95% of draws in [{lo_q:.3g}, {hi_q:.3g}] ({len(draws)} draws)"
    return Interval(
        observed - mean, observed - float(hi_q), observed - float(lo_q), len(draws) if n is None else n, p, null
    )


def markdown(results: list[Result]) -> list[str]:
    """The claims table: every row with its figures, not just the word."""
    lines = [
        "| claim (where the paper states it) | statistic, claimed side | effect | 95% interval | p (one-sided) | "
        "null | n | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r.row()) + " |")
    notes = [f"- {r.claim.key}: {n}" for r in results for n in r.notes]
    return lines + (["", *notes] if notes else [])


def declared(claims: list[Claim]) -> list[str]:
    """The pre-stated rules, as a table (written before any figure)."""
    lines = ["| key | claim | statistic | test | held if | min n |", "|---|---|---|---|---|---|"]
    for c in claims:
        side = ">" if c.side == "greater" else "<"
        lines.append(
            f"| {c.key} | {c.wording} | {c.statistic} | {c.test} | 95% interval {side} {c.threshold:g} | "
            f"{c.min_n} {c.unit} |"
        )
    return lines
