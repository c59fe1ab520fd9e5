"""Run every benchmark: ``python -m benchmarks`` (or ``make bench``); ``python -m benchmarks P2 P4`` runs some.

P1 epoch_overhead, P2 mask_overhead, P3 pls_vip, P4 structured_speedup, P6 populations, P7 round_to, P8 reach,
P9 cli_startup, P10 parallel_jobs.
P5 (reproduction wall times) is ``time prunelab reproduce <paper>``; see docs/performance.md.
"""

import sys

from benchmarks import (
    cli_startup,
    epoch_overhead,
    mask_overhead,
    parallel_jobs,
    pls_vip,
    populations,
    reach,
    round_to,
    structured_speedup,
)

SUITE = {
    "P1": epoch_overhead.main,
    "P2": mask_overhead.main,
    "P3": pls_vip.main,
    "P4": structured_speedup.main,
    "P6": populations.main,
    "P7": round_to.main,
    "P8": reach.main,
    "P9": cli_startup.main,
    "P10": parallel_jobs.main,
}

if __name__ == "__main__":
    chosen = [a.upper() for a in sys.argv[1:]] or list(SUITE)
    unknown = [c for c in chosen if c not in SUITE]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(SUITE)}")
    for name in chosen:
        SUITE[name]([])
