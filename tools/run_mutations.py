# ruff: noqa: E501  (each mutation is one row: the file, the text, its replacement, the test that must catch it)
"""The mutations issue 32 lists (and a few more), each applied to a copy of the tree, and the test that must catch
it run there: a row per mutation, "fails (caught)" or "PASSES (not caught)".

    python tools/run_mutations.py [name ...]
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
M_ALL = [
    (
        "Entezari reads the dense level",
        "src/prunelab/analysis/papers/entezari.py",
        "for j in range(1, d.shape[1])",
        "for j in range(0, d.shape[1])",
        "test_entezari_never_reads_the_dense_level_and_judges_every_pruned_one",
    ),
    (
        "one-sided p for the wrong side",
        "src/prunelab/analysis/claims.py",
        'return float(stats.t.sf(t, df) if side == "greater" else stats.t.cdf(t, df))',
        'return float(stats.t.cdf(t, df) if side == "greater" else stats.t.sf(t, df))',
        "test_intervals_are_calibrated_on_nulls_and_find_effects",
    ),
    (
        "sign-flip p for the wrong side",
        "src/prunelab/analysis/claims.py",
        'extreme = means >= obs - tol if side == "greater" else means <= obs + tol',
        'extreme = means <= obs + tol if side == "greater" else means >= obs - tol',
        "test_sign_flip_and_permutation_p_are_exact",
    ),
    (
        "J1 margin at -1 point",
        "src/prunelab/analysis/papers/jordao.py",
        '"paired t and sign-flip over seeds",\n        0.0,\n        "greater",\n        6,\n        margin=0.0,',
        '"paired t and sign-flip over seeds",\n        -0.01,\n        "greater",\n        6,\n        margin=0.0,',
        "test_jordao_margins_are_the_papers_words",
    ),
    (
        "J1 margin at -2 points",
        "src/prunelab/analysis/papers/jordao.py",
        '"paired t and sign-flip over seeds",\n        0.0,\n        "greater",\n        6,\n        margin=0.0,',
        '"paired t and sign-flip over seeds",\n        -0.02,\n        "greater",\n        6,\n        margin=0.0,',
        "test_jordao_margins_are_the_papers_words",
    ),
    (
        "H1 margin at -2 points",
        "src/prunelab/analysis/papers/hooker.py",
        '        -0.01,\n        "greater",\n        0.0,',
        '        -0.02,\n        "greater",\n        0.0,',
        "test_hooker_flat_top1_fails_when_top1_drops_by_more_than_a_point",
    ),
    (
        "non-disjoint null pairs",
        "src/prunelab/analysis/papers/hooker.py",
        "rest = [i for i in range(len(null)) if i not in a]",
        "rest = list(range(len(null)))",
        "test_hooker_null_draws_pair_disjoint_null_populations",
    ),
    (
        "E7 against the mean of the others",
        "src/prunelab/analysis/papers/entezari.py",
        'm["green"]["fnr"] - np.min([o["fnr"] for o in others], 0)',
        'm["green"]["fnr"] - np.mean([o["fnr"] for o in others], 0)',
        "test_entezari_lowest_fnr_is_against_the_best_other_scenario",
    ),
    (
        "Hooker counts against the fractional null mean",
        "src/prunelab/analysis/papers/hooker.py",
        "low = null_interval(observed - math.ceil(mean - 1e-9), diffs, n=k)",
        "low = null_interval(observed - mean, diffs, n=k)",
        "test_hooker_counts_are_compared_with_the_null_as_whole_counts",
    ),
    (
        "accuracy match without its lower bound",
        "src/prunelab/analysis/papers/hooker.py",
        "if iv.low >= -MATCHED and iv.high <= MATCHED:",
        "if iv.high <= MATCHED:",
        "test_hooker_table_says_whether_the_null_is_accuracy_matched",
    ),
    (
        "Hooker lists every null sub-population (C(60, 30) ran out of memory)",
        "src/prunelab/analysis/papers/hooker.py",
        "if total <= ENUMERATE_UP_TO:",
        "if True:",
        "test_hooker_null_subsets_are_drawn_without_listing_them_at_the_declared_size",
    ),
    (
        "MAX_SPLITS = 20",
        "src/prunelab/analysis/papers/hooker.py",
        "MAX_SPLITS = 300",
        "MAX_SPLITS = 20",
        "test_hooker_null_p_can_reach_the_holm_level",
    ),
    (
        "Holm without the multiplier",
        "src/prunelab/analysis/claims.py",
        "running = max(running, min(1.0, (len(order) - rank) * float(raw[i])))",
        "running = max(running, min(1.0, float(raw[i])))",
        "test_holm_adjusts_the_secondaries_and_not_the_primary",
    ),
    (
        "margin ignored (did not hold only on the wrong side)",
        "src/prunelab/analysis/claims.py",
        "excluded, beyond = iv.high < t + m, iv.low > t",
        "excluded, beyond = iv.high < t, iv.low > t",
        "test_decide_holds_rejects_and_stays_inconclusive",
    ),
    (
        "the exact p ignored",
        "src/prunelab/analysis/claims.py",
        "ps = [p for p in (iv.p, iv.p_exact) if p is not None and not math.isnan(p)]",
        "ps = [p for p in (iv.p,) if p is not None and not math.isnan(p)]",
        "test_a_p_above_the_level_blocks_held_even_when_the_interval_clears",
    ),
    (
        "a rule that always says held",
        "src/prunelab/analysis/claims.py",
        "    values = (iv.effect, iv.low, iv.high)\n    if iv.n < claim.min_n",
        "    return HELD\n    values = (iv.effect, iv.low, iv.high)\n    if iv.n < claim.min_n",
        "test_entezari_rules_fail_on_a_null_and_hold_on_an_effect",
    ),
    (
        "Hooker judged at the highest level again",
        "src/prunelab/analysis/papers/hooker.py",
        "lo, hi, moderate = LOW, AT, MODERATE",
        "lo, hi, moderate = LOW, max(levels), MODERATE",
        "test_hooker_claims_are_judged_at_the_declared_90_percent",
    ),
    (
        "H7 not gated by H5",
        "src/prunelab/analysis/papers/hooker.py",
        "if done[needs].verdict == HELD or done[key].verdict != HELD:",
        "if True:",
        "test_hooker_pie_hardness_is_scored_by_held_out_models_and_gated_by_h5",
    ),
    (
        "E6 'some level' without Bonferroni",
        "src/prunelab/analysis/claims.py",
        "None if iv.p is None else min(1.0, iv.p * k), iv.null,\n        None if iv.p_exact is None else min(1.0, iv.p_exact * k), iv.mde,",
        "iv.p, iv.null,\n        iv.p_exact, iv.mde,",
        "test_over_levels_every_needs_each_level_and_some_is_bonferroni",
    ),
]
M = [m for m in M_ALL if m[0] in sys.argv[1:]] or M_ALL
out = []
tmp = tempfile.mkdtemp(prefix="mutations-")
for name, path, old, new, test in M:
    work = os.path.join(tmp, "repo")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(".venv", ".git", "outputs", "__pycache__"))
    f = os.path.join(work, path)
    s = Path(f).read_text()
    if old not in s:
        out.append(f"| {name} | MUTATION NOT APPLIED ({path}: text not found) | |")
        print(out[-1], flush=True)
        continue
    Path(f).write_text(s.replace(old, new, 1))
    env = {
        **os.environ,
        "PYTHONPATH": os.path.join(work, "src"),
        "PRUNELAB_DATA_DIR": os.environ.get("PRUNELAB_DATA_DIR", os.path.join(REPO, "..", "shared", "data")),
    }
    tests = "tests/test_claims.py"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"{tests}::{test}"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    caught = r.returncode != 0
    out.append(f"| {name} | `{test}` | {'fails (caught)' if caught else 'PASSES (not caught)'} |")
    print(out[-1], flush=True)
shutil.rmtree(tmp, ignore_errors=True)
sys.exit(0 if all("caught" in line and "not caught" not in line for line in out) else 1)
