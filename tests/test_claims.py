"""Every claim rule can fail: fed a synthetic null (the claim false) it does not say ``held``; fed a synthetic true
effect it does. A rule made to always return ``held`` fails the null half of its test."""

from __future__ import annotations

import numpy as np
import pytest

from prunelab.analysis import claims
from prunelab.analysis.claims import HELD, NOT_HELD, UNDECIDED, Claim, Interval
from prunelab.analysis.papers import entezari, hooker, jordao, lth, osaku

GREATER = Claim("T", "t", "s", "x", "t", 0.0, "greater", 3)


# -- the shared rule and interval makers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("low", "high", "n", "verdict"),
    [
        (0.1, 0.3, 5, HELD),
        (-0.3, -0.1, 5, NOT_HELD),
        (-0.1, 0.3, 5, UNDECIDED),
        (0.1, 0.3, 2, UNDECIDED),
        (0.0, 0.0, 5, UNDECIDED),
    ],
)
def test_decide_needs_the_whole_interval_on_one_side(low, high, n, verdict):
    assert claims.decide(GREATER, Interval((low + high) / 2, low, high, n)) == verdict
    less = Claim("T", "t", "s", "x", "t", 0.0, "less", 3)
    assert claims.decide(less, Interval(-(low + high) / 2, -high, -low, n)) == verdict  # the mirror image


def test_nan_effect_is_undecided():
    assert claims.decide(GREATER, Interval(float("nan"), float("nan"), float("nan"), 9)) == UNDECIDED


def _held_rate(make, draws=2000) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([claims.decide(GREATER, make(rng)) == HELD for _ in range(draws)]))


def test_t_intervals_are_calibrated_on_nulls_and_find_effects():
    # no effect: held in about 2.5% of draws (the one-sided 2.5% test); a 2-sd effect with 5 seeds: most draws
    assert _held_rate(lambda r: claims.mean_interval(r.normal(0, 1, 5))) < 0.04
    assert _held_rate(lambda r: claims.welch_interval(r.normal(0, 1, 5), r.normal(0, 3, 5))) < 0.04
    assert _held_rate(lambda r: claims.mean_interval(r.normal(2, 1, 5))) > 0.8
    assert _held_rate(lambda r: claims.welch_interval(r.normal(3, 1, 5), r.normal(0, 1, 5))) > 0.8


def test_null_interval_is_calibrated():
    null = np.random.default_rng(5).normal(0, 1, 400)
    assert _held_rate(lambda r: claims.null_interval(float(r.normal(0, 1)), null, n=5)) < 0.04
    assert _held_rate(lambda r: claims.null_interval(float(r.normal(4, 1)), null, n=5)) > 0.8
    iv = claims.null_interval(3.0, np.zeros(50), n=5)
    assert (iv.effect, iv.low, iv.high) == (3.0, 3.0, 3.0) and iv.p == pytest.approx(1 / 51)


def test_an_all_zero_count_does_not_hold():
    # the old "grows with sparsity" rule passed on [0, 0, 0, 0]; a count equal to every null draw is not a finding
    assert claims.decide(GREATER, claims.null_interval(0.0, np.zeros(100), n=5)) != HELD


def test_markdown_shows_the_figures_not_just_the_word():
    result = claims.judge(GREATER, claims.mean_interval([0.5, 0.6, 0.7, 0.55]), ["a note"])
    table = "\n".join(claims.markdown([result]))
    assert "+0.588" in table and "[+" in table and "**held**" in table and "a note" in table
    assert "95% interval > 0" in "\n".join(claims.declared([GREATER]))


# -- Entezari & Saukh ------------------------------------------------------------------------------------------
def _entezari(rng, effect: bool, seeds=5, levels=7):
    def metrics(auroc, acc, fnr, fpr):
        noise = lambda: rng.normal(0, 0.01, (seeds, levels))  # noqa: E731
        return {
            "auroc": auroc + noise(),
            "acc": acc + noise(),
            "fnr": np.clip(fnr + noise(), 0.02, 0.98),
            "fpr": np.clip(fpr + noise(), 0.02, 0.98),
        }

    rise = np.linspace(0, 0.3, levels)[None]  # plain LT: FNR rises with pruning
    if not effect:  # every scenario the same model: no loss effect at all
        return {s: metrics(0.9, 0.85, 0.2 + rise, 0.1) for s in entezari.SCENARIOS}
    return {
        "red": metrics(0.90, 0.80, 0.2 + rise, 0.15),
        "blue": metrics(0.91, 0.83, 0.15 + rise / 2, 0.12),
        "black": metrics(0.93, 0.88, 0.10 + 0 * rise, 0.08),
        "green": metrics(0.92, 0.84, 0.05 + 0 * rise, 0.30),
    }


def test_entezari_rules_fail_on_a_null_and_hold_on_an_effect():
    rng = np.random.default_rng(1)
    nulls = [entezari.evaluate(_entezari(rng, False)) for _ in range(100)]
    for i, claim in enumerate(entezari.CLAIMS):
        rate = np.mean([rs[i].verdict == HELD for rs in nulls])
        assert rate < 0.08, (claim.key, rate)
    assert [r.verdict for r in entezari.evaluate(_entezari(rng, True))] == [HELD] * len(entezari.CLAIMS)


def test_entezari_collapsed_levels_are_left_out_and_counted():
    m = _entezari(np.random.default_rng(2), True)
    m["red"]["fnr"][:, -2:], m["red"]["fpr"][:, -2:] = 1.0, 0.0  # red predicts "negative" for everything
    results = entezari.evaluate(m)
    assert "10 of 30" in results[1].notes[0]  # accuracy: 5 seeds x 2 levels left out
    assert not results[0].notes  # AUROC keeps every level
    assert entezari.per_seed(np.ones((2, 3)), np.ones((2, 3), bool)).tolist() != [1.0, 1.0]


# -- Hooker et al. ---------------------------------------------------------------------------------------------
C, N = 10, 10_000


def _population(rng, labels, hard, k=5, class_acc=None, flipped=None):
    acc = np.full(C, 0.9) if class_acc is None else class_acc
    out = []
    for _ in range(k):
        right = rng.random(N) < acc[labels] * (1 - 0.7 * hard)
        wrong = (labels + rng.integers(1, C, N)) % C
        preds = np.where(right, labels, wrong)
        if flipped is not None:  # compression forgets these examples systematically
            preds[flipped] = (labels[flipped] + 1) % C
        out.append(preds)
    return np.stack(out)


def _hooker(seed: int, effect: bool):
    rng = np.random.default_rng(seed)
    labels, hard = rng.integers(0, C, N), rng.beta(0.5, 2.0, N)
    dense, null = _population(rng, labels, hard), _population(rng, labels, hard, k=10)
    if not effect:
        levels = {s: _population(rng, labels, hard) for s in (0.3, 0.7, 0.9)}
        worse = np.full(C, 0.9)
        worse[:5] = 0.6
        return dense, null, levels, labels, {"int8": _population(rng, labels, hard, class_acc=worse)}
    hit = np.full(C, 0.9)
    hit[:5] = 0.6
    flipped = np.flatnonzero(hard < 0.2)[:600]
    levels = {
        0.3: _population(rng, labels, hard),
        0.7: _population(rng, labels, hard),
        0.9: _population(rng, labels, hard, class_acc=hit, flipped=flipped),
    }
    return dense, null, levels, labels, {"int8": _population(rng, labels, hard)}


def test_hooker_rules_fail_on_a_null_and_hold_on_an_effect():
    null_verdicts = {r.claim.key: r.verdict for r in hooker.evaluate(*_hooker(0, effect=False))}
    # with nothing compressed H1 (top-1 unchanged) is true (whether 5 models show it is a question of power);
    # every other claim must not hold. H1's own null (a real drop) is the next test.
    assert null_verdicts.pop("H1") != NOT_HELD
    assert HELD not in null_verdicts.values(), null_verdicts
    effect_verdicts = {r.claim.key: r.verdict for r in hooker.evaluate(*_hooker(1, effect=True))}
    assert effect_verdicts == {c.key: HELD for c in hooker.CLAIMS}, effect_verdicts


def test_hooker_flat_top1_fails_when_top1_drops():
    dense, null, levels, labels, quant = _hooker(3, effect=False)
    rng, hard = np.random.default_rng(4), np.zeros(N)
    levels[0.7] = _population(rng, labels, hard, class_acc=np.full(C, 0.9 * 0.97))
    dense = _population(rng, labels, hard)
    result = next(r for r in hooker.evaluate(dense, null, levels, labels, quant) if r.claim.key == "H1")
    assert result.verdict == NOT_HELD


def test_hooker_null_draws_split_the_pooled_dense_models():
    rng = np.random.default_rng(0)
    labels, hard = rng.integers(0, C, 500), np.zeros(500)
    same = np.stack([labels] * 3)
    draws = hooker.null_draws(same, np.stack([labels] * 6), labels, C)
    assert len(draws["pies"]) == 20 and draws["pies"].max() == 0  # identical models: no PIE on any subset
    assert draws["pies_diff"].tolist() == [0.0] * 20
    with pytest.raises(ValueError, match="at least 6 models"):
        hooker.null_draws(same, same, labels, C)
    del hard


def test_hooker_counting_rules_are_calibrated_over_many_nulls():
    held = {c.key: 0 for c in hooker.CLAIMS}
    for seed in range(10, 22):
        for r in hooker.evaluate(*_hooker(seed, effect=False)):
            held[r.claim.key] += r.verdict == HELD
    held.pop("H1")  # true on a null (no drop)
    assert max(held.values()) <= 2, held  # about 2.5% expected: 12 draws rarely give more than one


# -- Jordao et al. and Osaku et al. ----------------------------------------------------------------------------
def test_jordao_rules_fail_on_a_null_and_hold_on_an_effect():
    rng = np.random.default_rng(0)
    flops = np.full(5, 0.5)
    dense = 0.90 + rng.normal(0, 0.003, 5)
    null = jordao.evaluate(
        dense, dense - 0.03 + rng.normal(0, 0.003, 5), dense - 0.03 + rng.normal(0, 0.003, 5), flops, flops
    )
    assert [r.verdict for r in null] == [NOT_HELD, UNDECIDED]
    good = jordao.evaluate(dense, dense + 0.005, dense - 0.02 + rng.normal(0, 0.003, 5), flops, flops)
    assert [r.verdict for r in good] == [HELD, HELD]
    unmatched = jordao.evaluate(dense, dense + 0.005, dense - 0.02, flops, flops - 0.07)
    assert unmatched[1].verdict == UNDECIDED and "not a matched comparison" in unmatched[1].notes[0]


def test_osaku_rule_fails_on_a_null_and_holds_on_an_effect():
    rng = np.random.default_rng(0)
    base = 0.86 + rng.normal(0, 0.01, 5)
    rates = [
        osaku.evaluate(base + rng.normal(0, 0.005, 5), base + rng.normal(0, 0.005, 5))[0].verdict == HELD
        for _ in range(300)
    ]
    assert np.mean(rates) < 0.06
    assert osaku.evaluate(base + 0.02 + rng.normal(0, 0.003, 5), base)[0].verdict == HELD


def test_lth_rules_fail_on_a_null_and_hold_on_an_effect():
    rng = np.random.default_rng(1)
    levels = lth.LEVELS
    null_held = 0
    for _ in range(200):
        dense = 0.978 + rng.normal(0, 0.002, 3)
        same = {lv: dense + rng.normal(0, 0.002, 3) for lv in levels}
        other = {lv: dense + rng.normal(0, 0.002, 3) for lv in levels}
        null_held += sum(r.verdict == HELD for r in lth.evaluate(dense, same, other))
    assert null_held / (200 * 4) < 0.06
    dense = 0.978 + rng.normal(0, 0.002, 3)
    ticket = {lv: dense + 0.006 + rng.normal(0, 0.0005, 3) for lv in levels}
    reinit = {lv: dense - 0.01 + rng.normal(0, 0.0005, 3) for lv in levels}
    assert [r.verdict for r in lth.evaluate(dense, ticket, reinit)] == [HELD] * 4
    worse = {lv: dense - 0.01 + rng.normal(0, 0.0005, 3) for lv in levels}  # below dense: does not hold
    assert [r.verdict for r in lth.evaluate(dense, worse, reinit)][:2] == [claims.NOT_HELD] * 2


def test_always_held_rule_is_caught(monkeypatch):
    """The falsifiability tests above depend on decide(): a rule that always says held fails them."""
    monkeypatch.setattr(claims, "decide", lambda claim, iv: HELD)
    rng = np.random.default_rng(0)
    base = 0.86 + rng.normal(0, 0.01, 5)
    assert osaku.evaluate(base, base + 0.05)[0].verdict == HELD  # the null test above would now fail


def test_classaware_rules_fail_on_a_null_and_hold_on_an_effect():
    from prunelab.analysis.papers import classaware

    rng = np.random.default_rng(3)
    held = 0
    for _ in range(200):
        base = classaware.EPSILON + rng.normal(0, 0.01, 6)  # ceag exactly at epsilon, no better than magnitude
        excess = {"magnitude": base + rng.normal(0, 0.01, 6), "ceag": base + rng.normal(0, 0.01, 6)}
        safe = {m: 0.9 * (rng.random(6) < 0.5) for m in ("magnitude", "fairgrape")}
        recall = 0.6 + rng.normal(0, 0.02, 6)
        worst = {"raw": recall, "recalibrated": recall + rng.normal(0, 0.02, 6)}
        held += sum(r.verdict == HELD for r in classaware.evaluate(excess, safe, worst))
    assert held / (200 * 4) < 0.06  # no effect: held in about 2.5% of draws at most
    excess = {"magnitude": 0.1 + rng.normal(0, 0.005, 6), "ceag": 0.005 + rng.normal(0, 0.002, 6)}
    safe = {"magnitude": np.zeros(6), "fairgrape": np.full(6, 0.9)}
    worst = {"raw": np.full(6, 0.3) + rng.normal(0, 0.01, 6), "recalibrated": np.full(6, 0.7) + rng.normal(0, 0.01, 6)}
    assert [r.verdict for r in classaware.evaluate(excess, safe, worst)] == [HELD] * 4
    excess["ceag"] = excess["magnitude"] + 0.05  # ceag worse than plain fine-tuning: C1 and C2 do not hold
    assert [r.verdict for r in classaware.evaluate(excess, safe, worst)][:2] == [claims.NOT_HELD] * 2
