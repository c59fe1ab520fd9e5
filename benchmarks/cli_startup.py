"""P9: how fast the CLI answers. CPU seconds (user + system, of the child process) of ``prunelab --version``,
``--help``, ``list criterion`` and a config error (a misspelled key), against ``python -c pass`` measured in the
same loop (interleaved, median of ``--reps``). Target (issue 31): under 0.5 s of CPU for ``--version`` and ``list``.

    python -m benchmarks.cli_startup [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "prunelab --version": ["-m", "prunelab", "--version"],
    "prunelab --help": ["-m", "prunelab", "--help"],
    "prunelab list criterion": ["-m", "prunelab", "list", "criterion"],
    "prunelab schedule.rat=0.5 (typo)": ["-m", "prunelab", "schedule.rat=0.5"],
}
TARGET_S = 0.5


def cpu_seconds(args: list[str]) -> float:
    """User + system CPU of one child process running ``python args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str]) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="benchmarks.cli_startup")
    parser.add_argument("--reps", type=int, default=5)
    reps = parser.parse_args(argv).reps
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(reps):
        for name, args in COMMANDS.items():
            times[name].append(cpu_seconds(args))
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians["python -c pass"]
    print(f"P9 CLI start-up: CPU seconds, median of {reps} (interleaved); target < {TARGET_S} s for --version/list")
    print(f"{'command':<36} {'cpu s':>7} {'- python -c pass':>17}")
    for name, value in medians.items():
        mark = ""
        if name in ("prunelab --version", "prunelab list criterion"):
            mark = "  meets" if value < TARGET_S else "  short"
        print(f"{name:<36} {value:7.3f} {value - base:17.3f}{mark}")
    return medians


if __name__ == "__main__":
    main(sys.argv[1:])
