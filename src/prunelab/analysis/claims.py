"""A paper's claim as a confirmatory test (docs/reproductions.md, "How a verdict is reached").

Every row of a reproduction table is a :class:`Claim`, declared in the paper's module before any run (its
declaration is hashed and recorded when ``prunelab reproduce`` starts: :mod:`prunelab.analysis.declaration`): the
paper's wording and where it is stated, the statistic, the test, the threshold, the claimed side, the **smallest
effect of interest** (``margin``, with the words of the paper that set it), the levels it is judged at, whether it
is the paper's **primary** claim, and the minimum sample size (at least :data:`MIN_N`).

The measured :class:`Result` carries the effect, a 95% interval, a t-based p and an **exact** p (sign flips of
paired values, or permutations of two groups; a null distribution's own p for counting claims), the
minimum detectable effect at that n, and one of three verdicts. With ``t`` the threshold and ``m`` the margin:

========== =================================================== ==============================================
side       ``held``                                             ``did not hold``
========== =================================================== ==============================================
greater    95% interval above ``t`` and p <= alpha (both p's)   interval entirely below ``t + m``
less       95% interval below ``t`` and p <= alpha              interval entirely above ``t - m``
within     interval inside ``(t - m, t + m)`` (two one-sided    interval entirely outside it
           tests, TOST) and TOST p <= alpha
========== =================================================== ==============================================

Otherwise (or with fewer than ``min_n`` units) the verdict is ``inconclusive``. So "did not hold" is reachable for
a null effect: a true zero is eventually shown to be below a margin ``m > 0``. When an interval lies above ``t``
but below ``t + m``, the effect is real but smaller than the paper's wording implies: ``did not hold``.

Multiplicity (:func:`family`): one primary claim per paper, tested at one-sided alpha = 2.5%; the secondary
claims are Holm-adjusted as one family at 2.5%. The chance of any false ``held`` in a paper's section is at most
5%. ``did not hold`` is judged per claim at 95% (not adjusted).

The interval makers:

- :func:`mean_interval`: the mean of per-unit values (paired differences over seeds) with a Student t interval
  and an exact sign-flip p;
- :func:`welch_interval`: the difference of two independent groups' means, Welch-Satterthwaite t interval and a
  permutation p;
- :func:`null_interval`: an observed figure against a null distribution of the same figure (e.g. counts from
  random splits of two dense populations): effect = observed - null mean, interval = observed minus the null's
  97.5th and 2.5th percentiles, p = share of null draws at least as extreme (with the +1 correction).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
VERDICTS = (HELD, NOT_HELD, INCONCLUSIVE)
LEVEL = 0.95  # every interval is a 95% interval
ALPHA = 0.025  # one-sided: the primary claim's level, and the Holm family's level for the secondaries
POWER = 0.80  # the minimum detectable effect is the true effect found with this probability
MIN_N = 6  # below 6 paired units no exact sign-flip test reaches p < 0.025 (1/32 > 0.025)
EXACT_LIMIT = 1 << 16  # enumerate up to this many sign patterns or relabelings; beyond, a seeded Monte Carlo
MONTE_CARLO = 20000
SIDES = ("greater", "less", "within")


@dataclass(frozen=True)
class Claim:
    """One pre-stated claim (see the module docstring for the rule)."""

    key: str
    wording: str  # the paper's claim, quoted where the words are the paper's
    source: str  # where the paper states it (only what the project has read)
    statistic: str  # what the effect measures, in words
    test: str  # how the interval is made
    threshold: float
    side: str  # "greater", "less" or "within" (equivalence: |effect - threshold| < margin)
    min_n: int  # fewer units than this: inconclusive
    unit: str = "seeds"  # what n counts
    margin: float = 0.0  # the smallest effect of interest beyond the threshold (the equivalence bound for within)
    margin_reason: str = ""  # why that margin: the paper's words
    primary: bool = False  # the paper's one primary claim (tested alone at ALPHA)
    levels: str = ""  # the level(s) it is judged at: part of the claim, never of the table code

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"claim {self.key}: side must be one of {SIDES}, not {self.side!r}")
        if self.min_n < MIN_N:
            raise ValueError(f"claim {self.key}: min_n {self.min_n} < {MIN_N} (no exact test reaches p < {ALPHA})")
        if self.margin < 0 or (self.side == "within" and self.margin <= 0):
            raise ValueError(f"claim {self.key}: margin must be >= 0 (> 0 for an equivalence claim)")

    def rules(self) -> tuple[str, str]:
        """(held if, did not hold if), in words."""
        t, m = self.threshold, self.margin
        if self.side == "within":
            return f"95% interval inside ({t - m:g}, {t + m:g})", f"95% interval outside ({t - m:g}, {t + m:g})"
        if self.side == "greater":
            return f"95% interval > {t:g}", f"95% interval < {t + m:g}"
        return f"95% interval < {t:g}", f"95% interval > {t - m:g}"


@dataclass
class Interval:
    effect: float
    low: float
    high: float
    n: int
    p: float | None = None  # one-sided (TOST for within), for the claimed side against the threshold
    null: str | None = None  # the null figure, in words (counting claims)
    p_exact: float | None = None  # exact sign-flip / permutation p, same side
    mde: float | None = None  # the smallest true effect beyond the threshold found with POWER at this n


@dataclass
class Result:
    claim: Claim
    verdict: str
    interval: Interval
    notes: list[str] = field(default_factory=list)
    p_adjusted: float | None = None  # the p the verdict used: max of both p's, Holm-adjusted for secondaries

    def row(self, digits: int = 3) -> list[str]:
        """Cells of the claims table."""
        iv, fmt = self.interval, f"{{:+.{digits}f}}"
        effect = "-" if math.isnan(iv.effect) else fmt.format(iv.effect)
        ci = "-" if math.isnan(iv.low) else f"[{fmt.format(iv.low)}, {fmt.format(iv.high)}]"
        held, _ = self.claim.rules()
        role = "primary" if self.claim.primary else "secondary"
        wording = f"{self.claim.key} ({role}): {self.claim.wording} ({self.claim.source})"
        level = f" at {self.claim.levels}" if self.claim.levels else ""
        return [
            wording,
            f"{self.claim.statistic}{level}; held if {held}; margin {self.claim.margin:g}",
            effect,
            ci,
            _p(iv.p),
            _p(iv.p_exact),
            _p(self.p_adjusted),
            "-" if iv.mde is None or math.isnan(iv.mde) else f"{iv.mde:.3g}",
            iv.null or "-",
            f"{iv.n} {self.claim.unit}",
            f"**{self.verdict}**",
        ]


def _p(p: float | None) -> str:
    return "-" if p is None or math.isnan(p) else f"{p:.3g}"


def used_p(iv: Interval) -> float | None:
    """The p a verdict uses: the larger of the t-based and the exact one (both must pass)."""
    ps = [p for p in (iv.p, iv.p_exact) if p is not None and not math.isnan(p)]
    return max(ps) if ps else None


def decide(claim: Claim, iv: Interval, p: float | None = None) -> str:
    """The verdict rule, the same for every claim (see the module docstring); ``p`` defaults to :func:`used_p`."""
    values = (iv.effect, iv.low, iv.high)
    if iv.n < claim.min_n or any(math.isnan(v) for v in values):
        return INCONCLUSIVE
    p = used_p(iv) if p is None else p
    significant = p is None or p <= ALPHA
    t, m = claim.threshold, claim.margin
    if claim.side == "within":
        if iv.low > t + m or iv.high < t - m:
            return NOT_HELD
        return HELD if (iv.low > t - m and iv.high < t + m and significant) else INCONCLUSIVE
    if claim.side == "greater":
        excluded, beyond = iv.high < t + m, iv.low > t
    else:
        excluded, beyond = iv.low > t - m, iv.high < t
    if excluded:
        return NOT_HELD
    return HELD if beyond and significant else INCONCLUSIVE


def judge(claim: Claim, iv: Interval, notes: list[str] | None = None) -> Result:
    """The claim's result as if it were alone (:func:`family` adjusts a paper's secondaries)."""
    return Result(claim, decide(claim, iv), iv, list(notes or []), used_p(iv))


def over_levels(claim: Claim, per_level: dict[str, Interval], mode: str) -> tuple[Interval, list[str]]:
    """One interval for a claim judged at several levels, and a note per level.

    ``every`` (intersection-union: the claim holds at every level): no adjustment; the interval shown is a level
    where it did not hold if there is one, else the level with the weakest evidence (largest p), so
    :func:`decide` says ``held`` only if every level does. ``some`` (the claim holds at some level): Bonferroni over
    the levels (each p times their number); the interval shown is the level with the strongest evidence, or, when
    every level did not hold, the one closest to holding."""
    if mode not in ("every", "some"):
        raise ValueError(f"claim {claim.key}: mode must be 'every' or 'some', not {mode!r}")
    verdicts = {lvl: decide(claim, iv) for lvl, iv in per_level.items()}
    notes = [
        f"at {lvl}: effect {iv.effect:+.3g} [{iv.low:+.3g}, {iv.high:+.3g}], {verdicts[lvl]}"
        for lvl, iv in per_level.items()
    ]
    if not per_level:
        return Interval(math.nan, math.nan, math.nan, 0), notes

    def p_of(lvl: str) -> float:
        p = used_p(per_level[lvl])
        return 1.0 if p is None or math.isnan(p) else p

    if mode == "every":
        failed = [lvl for lvl, v in verdicts.items() if v == NOT_HELD]
        pick = failed[0] if failed else max(per_level, key=p_of)
        return per_level[pick], [f"judged at every level (intersection-union); shown: {pick}", *notes]
    k = len(per_level)
    if all(v == NOT_HELD for v in verdicts.values()):
        toward = 1 if claim.side != "less" else -1
        pick = max(per_level, key=lambda lvl: toward * (per_level[lvl].high if toward > 0 else per_level[lvl].low))
    else:
        pick = min(per_level, key=p_of)
    iv = per_level[pick]
    scaled = Interval(
        iv.effect, iv.low, iv.high, iv.n,
        None if iv.p is None else min(1.0, iv.p * k), iv.null,
        None if iv.p_exact is None else min(1.0, iv.p_exact * k), iv.mde,
    )  # fmt: skip
    return scaled, [f"judged at some level (Bonferroni over {k}: p x {k}); shown: {pick}", *notes]


def family(results: list[Result]) -> list[Result]:
    """A paper's results with multiplicity control: the primary claim at ALPHA, the secondaries Holm-adjusted
    (step-down) as one family at ALPHA. Idempotent: it recomputes from each result's own p's."""
    secondary = [i for i, r in enumerate(results) if not r.claim.primary]
    raw = {i: used_p(results[i].interval) for i in secondary}
    order = sorted((i for i in secondary if raw[i] is not None), key=lambda i: raw[i])  # type: ignore[arg-type,return-value]
    adjusted: dict[int, float | None] = {i: None for i in secondary}
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(raw[i])))  # type: ignore[arg-type]
        adjusted[i] = running
    out = []
    for i, r in enumerate(results):
        p = used_p(r.interval) if r.claim.primary else adjusted[i]
        out.append(replace(r, verdict=decide(r.claim, r.interval, p), p_adjusted=p))
    return out


def family_text(results: list[Result]) -> str:
    """The section's multiplicity statement."""
    primary = [r.claim.key for r in results if r.claim.primary]
    k = len(results) - len(primary)
    rest = (
        f"the {k} secondary claims are Holm-adjusted as one family at one-sided {ALPHA:.1%} (column p (Holm)), so "
        f"the chance of any false `held` in this section is at most {2 * ALPHA:.0%}"
        if k
        else f"there are no secondary claims, so the chance of a false `held` in this section is at most {ALPHA:.1%}"
    )
    return (
        f"Multiplicity: {', '.join(primary) or 'no claim'} is the primary claim, tested at one-sided {ALPHA:.1%}; "
        f"{rest}. `held` needs both the t-based "
        f"and the exact p at or below the level. `did not hold` is judged per claim on its 95% interval (not "
        f"adjusted). MDE: the smallest true effect beyond the threshold that this n finds with {POWER:.0%} power."
    )


def _clean(values) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[~np.isnan(arr)]


def _one_sided(t: float, df: float, side: str) -> float:
    return float(stats.t.sf(t, df) if side == "greater" else stats.t.cdf(t, df))


def _mde(se: float, df: float, side: str) -> float:
    power = POWER if side != "within" else 1 - (1 - POWER) / 2
    return float((stats.t.ppf(1 - ALPHA, df) + stats.t.ppf(power, df)) * se)


@functools.lru_cache(maxsize=64)
def _signs(n: int) -> np.ndarray:
    """Every sign pattern of n units, or MONTE_CARLO seeded ones (the first: the observed, all +1)."""
    if 2**n <= EXACT_LIMIT:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    signs = np.random.default_rng(0).choice((1.0, -1.0), size=(MONTE_CARLO, n))
    signs[0] = 1.0
    return signs


@functools.lru_cache(maxsize=64)
def _picks(total: int, k: int) -> np.ndarray:
    """Every choice of k of ``total`` pooled units as the first group, or MONTE_CARLO seeded ones (the first: the
    observed labelling)."""
    if math.comb(total, k) <= EXACT_LIMIT:
        return np.array(list(itertools.combinations(range(total), k)))
    rng = np.random.default_rng(0)
    picks = np.argsort(rng.random((MONTE_CARLO, total)), axis=1)[:, :k]
    picks[0] = np.arange(k)
    return picks


def sign_flip_p(values, threshold: float = 0.0, side: str = "greater") -> float:
    """Exact one-sided p of the mean of ``values - threshold`` over every sign pattern (seeded Monte Carlo beyond
    :data:`EXACT_LIMIT` patterns); the observed pattern counts, so p >= 2**-n."""
    d = _clean(values) - threshold
    n = len(d)
    if n == 0:
        return math.nan
    means, obs = _signs(n) @ d / n, d.mean()
    tol = 1e-12 * max(1.0, abs(obs))
    extreme = means >= obs - tol if side == "greater" else means <= obs + tol
    return float(extreme.mean())


def permutation_p(a, b, threshold: float = 0.0, side: str = "greater") -> float:
    """One-sided p of mean(a) - mean(b) against ``threshold`` over relabelings of the pooled values (a shifted by
    the threshold); exact up to :data:`EXACT_LIMIT` relabelings, else a seeded Monte Carlo with the observed one."""
    x, y = _clean(a) - threshold, _clean(b)
    pooled, k = np.concatenate([x, y]), len(x)
    if not len(x) or not len(y):
        return math.nan
    picks = _picks(len(pooled), k)
    total = pooled.sum()
    first = pooled[picks].sum(1)
    diffs = first / k - (total - first) / len(y)
    obs = x.mean() - y.mean()
    tol = 1e-12 * max(1.0, abs(obs))
    extreme = diffs >= obs - tol if side == "greater" else diffs <= obs + tol
    return float(extreme.mean())


def _tost(stat_p, threshold: float, margin: float) -> float:
    """Two one-sided tests of |effect - threshold| < margin: the larger of the two one-sided p's."""
    return max(stat_p(threshold - margin, "greater"), stat_p(threshold + margin, "less"))


def mean_interval(values, threshold: float = 0.0, side: str = "greater", margin: float = 0.0) -> Interval:
    """Mean of per-unit values (NaNs dropped) with a t interval, a one-sided t p and an exact sign-flip p against
    ``threshold`` (TOST against ``threshold ± margin`` for ``within``), and the MDE."""
    x = _clean(values)
    n = len(x)
    if n < 2:
        return Interval(float(x.mean()) if n else math.nan, math.nan, math.nan, n)
    mean, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1))

    def t_p(th: float, sd: str) -> float:
        if se == 0:  # every unit equal: decided by the sign alone
            return 0.0 if (mean > th if sd == "greater" else mean < th) else 1.0
        return _one_sided((mean - th) / se, n - 1, sd)

    def exact(th: float, sd: str) -> float:
        return sign_flip_p(x, th, sd)

    if side == "within":
        p, p_exact = _tost(t_p, threshold, margin), _tost(exact, threshold, margin)
    else:
        p, p_exact = t_p(threshold, side), exact(threshold, side)
    return Interval(mean, mean - q * se, mean + q * se, n, p, None, p_exact, _mde(se, n - 1, side))


def welch_interval(a, b, threshold: float = 0.0, side: str = "greater", margin: float = 0.0) -> Interval:
    """mean(a) - mean(b) for independent groups, Welch-Satterthwaite t interval and a permutation p;
    n = the smaller group."""
    x, y = _clean(a), _clean(b)
    n = min(len(x), len(y))
    if n < 2:
        return Interval(math.nan, math.nan, math.nan, n)
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff, se = float(x.mean() - y.mean()), math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else len(x) + len(y) - 2

    def t_p(th: float, sd: str) -> float:
        if se == 0:
            return 0.0 if (diff > th if sd == "greater" else diff < th) else 1.0
        return _one_sided((diff - th) / se, df, sd)

    def exact(th: float, sd: str) -> float:
        return permutation_p(x, y, th, sd)

    if side == "within":
        p, p_exact = _tost(t_p, threshold, margin), _tost(exact, threshold, margin)
    else:
        p, p_exact = t_p(threshold, side), exact(threshold, side)
    q = float(stats.t.ppf(0.5 + LEVEL / 2, df))
    return Interval(diff, diff - q * se, diff + q * se, n, p, None, p_exact, _mde(se, df, side))


def null_interval(observed: float, null, side: str = "greater", n: int | None = None) -> Interval:
    """``observed`` against draws of the same figure under no effect (see the module docstring). The p is the
    null distribution's own (exact given the draws); the MDE is the distance from the null mean to its 97.5th
    percentile plus the power quantile of the draws' spread."""
    draws = _clean(null)
    if not len(draws):
        return Interval(math.nan, math.nan, math.nan, 0)
    tail = (draws >= observed) if side == "greater" else (draws <= observed)
    p = (1 + int(tail.sum())) / (1 + len(draws))
    lo_q, hi_q = np.quantile(draws, [0.5 - LEVEL / 2, 0.5 + LEVEL / 2])
    mean = float(draws.mean())
    null = f"mean {mean:.3g}, 95% of draws in [{lo_q:.3g}, {hi_q:.3g}] ({len(draws)} draws)"
    reach = (hi_q - mean) if side != "less" else (mean - lo_q)
    mde = float(reach + stats.norm.ppf(POWER) * draws.std(ddof=1)) if len(draws) > 1 else math.nan
    return Interval(
        observed - mean, observed - float(hi_q), observed - float(lo_q), len(draws) if n is None else n, p, null,
        p, mde,
    )  # fmt: skip


HEADER = [
    "| claim (where the paper states it) | statistic, rule, margin | effect | 95% interval | p (t) | p (exact) | "
    "p (Holm) | MDE | null | n | verdict |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def markdown(results: list[Result]) -> list[str]:
    """The claims table: every row with its figures, not just the word, and the multiplicity statement."""
    lines = list(HEADER)
    for r in results:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r.row()) + " |")
    notes = [f"- {r.claim.key}: {n}" for r in results for n in r.notes]
    return lines + (["", *notes] if notes else []) + ["", family_text(results)]


def declared(claims: list[Claim]) -> list[str]:
    """The pre-stated rules, as a table (written before any figure)."""
    lines = [
        "| key | role | claim | statistic | level(s) | test | held if | did not hold if | margin (why) | min n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        held, not_held = c.rules()
        why = f"{c.margin:g} ({c.margin_reason})" if c.margin_reason else f"{c.margin:g}"
        lines.append(
            f"| {c.key} | {'primary' if c.primary else 'secondary'} | {c.wording} | {c.statistic} | "
            f"{c.levels or '-'} | {c.test} | {held} | {not_held} | {why} | {c.min_n} {c.unit} |"
        )
    return lines
