"""How often each paper's rules say ``held`` when nothing is there: every rule fed many synthetic nulls (the
generators of tests/test_claims.py), the false-held rate per claim and for the whole family, each with its exact
(Clopper-Pearson) 95% upper bound. Writes docs/calibration.md (generated; stamped with the commit and command).

    python tools/calibrate_claims.py [--hooker 400] [--entezari 1000] [--hooker-declared 0] [--out docs/calibration.md]

``--hooker-declared N`` adds N draws at the sizes Hooker's declaration runs (``hooker.SPEC["seeds"]`` models per
level, a null of twice that): the null's sub-populations are then drawn one by one, not listed (``null_subsets``).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_claims import K, _entezari, _hooker  # noqa: E402

from prunelab.analysis.claims import HELD  # noqa: E402
from prunelab.analysis.papers import entezari, hooker  # noqa: E402


def upper(k: int, n: int) -> float:
    """Exact one-sided 95% upper bound of a binomial rate with k events in n draws."""
    return 1.0 if k == n else float(stats.beta.ppf(0.95, k + 1, n - k))


def calibrate(evaluate, draws: int, skip: tuple[str, ...] = ()) -> tuple[dict[str, int], int]:
    held: dict[str, int] = {}
    family = 0
    for i in range(draws):
        results = [r for r in evaluate(i) if r.claim.key not in skip]
        for r in results:
            held[r.claim.key] = held.get(r.claim.key, 0) + (r.verdict == HELD)
        family += any(r.verdict == HELD for r in results)
    return held, family


def table(name: str, held: dict[str, int], family: int, draws: int, note: str) -> list[str]:
    lines = [f"## {name}", "", note, "", "| claim | false held | rate | 95% upper bound |", "|---|---|---|---|"]
    for key, k in held.items():
        lines.append(f"| {key} | {k} of {draws} | {k / draws:.3f} | {upper(k, draws):.3f} |")
    lines.append(f"| any claim (family) | {family} of {draws} | {family / draws:.3f} | {upper(family, draws):.3f} |")
    return [*lines, ""]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="tools/calibrate_claims.py")
    parser.add_argument("--hooker", type=int, default=400)
    parser.add_argument("--entezari", type=int, default=1000)
    parser.add_argument("--hooker-declared", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "calibration.md")
    args = parser.parse_args(argv)
    start = time.time()
    h_held, h_family = calibrate(
        lambda i: hooker.evaluate(*_hooker(10_000 + i, effect=False, n=1000)), args.hooker, skip=("H1",)
    )
    k = int(hooker.SPEC["seeds"])
    d_held, d_family = calibrate(
        lambda i: hooker.evaluate(*_hooker(30_000 + i, effect=False, n=1000, k=k)), args.hooker_declared, skip=("H1",)
    )
    e_held, e_family = calibrate(
        lambda i: entezari.evaluate(_entezari(np.random.default_rng(20_000 + i), False)), args.entezari
    )
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    lines = [
        "# Calibration of the claim rules on synthetic nulls",
        "",
        f"Written by `python tools/calibrate_claims.py --hooker {args.hooker} --entezari {args.entezari}"
        f"{f' --hooker-declared {args.hooker_declared}' if args.hooker_declared else ''}` at commit "
        f"{commit.stdout.strip() or '?'} on {datetime.date.today().isoformat()} ({time.time() - start:.0f} s). Not "
        "edited by hand. Each draw is a synthetic population study in which no claim is true (the generators of "
        "`tests/test_claims.py`); a rule is calibrated when its false-held rate stays at or below its level "
        "(one-sided 2.5% for the primary claim; the Holm family at 2.5%). The bound is the exact binomial 95% upper "
        "bound.",
        "",
        *table(
            "Hooker et al. (H2-H8)",
            h_held,
            h_family,
            args.hooker,
            f"{K} dense models, a null of {2 * K}, {K} models per level, 1000 test examples, 10 classes; every level "
            "drawn from "
            "the dense distribution, the quantized population with 5 damaged classes but no pruning effect. H1 "
            "(top-1 unchanged) is true on these nulls and is left out.",
        ),
        *(
            table(
                "Hooker et al. (H2-H8) at the declared sizes",
                d_held,
                d_family,
                args.hooker_declared,
                f"{k} dense models, a null of {2 * k}, {k} models per level (the sizes `prunelab reproduce hooker` "
                "runs), 1000 test examples, 10 classes, the same generator: the null's sub-populations of "
                f"{k} are drawn one by one (C({2 * k}, {k}) is too many to list), as in the reproduction.",
            )
            if args.hooker_declared
            else []
        ),
        *table(
            "Entezari & Saukh (E1-E8)",
            e_held,
            e_family,
            args.entezari,
            "12 seeds, 6 pruned levels; all four scenarios drawn from one distribution.",
        ),
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
