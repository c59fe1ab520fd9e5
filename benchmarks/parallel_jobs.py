"""P10: two one-thread jobs at once against one two-thread job after another (issue 32, item 5), for the small
models the reproductions train. Per model: the same 4-seed sweep (one pruning round, a few epochs) run

- ``sequential``: the basic launcher, ``threads=2`` (one job at a time, both cores for its intra-op threads);
- ``parallel``: ``hydra/launcher=local_parallel hydra.launcher.n_jobs=2 threads=1`` (two jobs at once);

alternating the two in each repetition, each into a fresh folder (nothing shared or skipped). Prints wall seconds,
the ratio sequential / parallel (median over repetitions) and the largest test-accuracy difference between the
two thread counts (the same seeds: float sums differ between thread counts, which is why ``threads`` is part of the
run id and a reproduction fixes it).

    python -m benchmarks.parallel_jobs [--reps 2] [--models lenet cnn3 cnn_small_bn]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {
    "lenet": ["experiment=lth_mnist", "schedule.rounds=1", "trainer.max_epochs=2"],
    "cnn3": ["experiment=entezari_red", "schedule.rounds=1", "trainer.max_epochs=3", "converge=null"],
    "cnn_small_bn": ["experiment=jordao_fashion", "schedule.rounds=1", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=0.25"],
}  # fmt: skip
SEEDS = "seed=0,1,2,3"
COMMON = ["logger=none", "trainer.enable_progress_bar=false", "share_round0=false"]
VARIANTS = {
    "sequential": ["threads=2"],
    "parallel": ["threads=1", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"],
}


def sweep(model: str, variant: str, out: Path) -> float:
    """Wall seconds of one sweep (a fresh interpreter, as a user runs it)."""
    cmd = [sys.executable, "-m", "prunelab", "-m", *MODELS[model], SEEDS, *COMMON, *VARIANTS[variant]]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, f"hydra.sweep.dir={out}"], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{model} {variant} failed:\n{proc.stderr[-2000:]}")
    return wall


def accuracies(out: Path) -> dict[str, float]:
    """Each job's final test accuracy, by seed."""
    found = {}
    for path in out.glob("*/results.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        cfg = (path.parent / "run_config.yaml").read_text()
        seed = next(line.split(":")[1].strip() for line in cfg.splitlines() if line.startswith("seed:"))
        found[seed] = float(rows[-1]["test/acc"])
    return found


def main(argv: list[str]) -> dict[str, dict]:
    parser = argparse.ArgumentParser(prog="benchmarks.parallel_jobs")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    os.environ.setdefault("PRUNELAB_DATA_DIR", str(Path("../shared/data").resolve()))
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
            accs: dict[str, dict[str, float]] = {}
            for rep in range(args.reps):
                order = list(VARIANTS) if rep % 2 == 0 else list(reversed(VARIANTS))
                for variant in order:
                    folder = Path(tmp) / f"{model}-{variant}-{rep}"
                    walls[variant].append(sweep(model, variant, folder))
                    accs[variant] = accuracies(folder)
            ratios = [s / p for s, p in zip(walls["sequential"], walls["parallel"], strict=True)]
            diff = max(abs(accs["sequential"][s] - accs["parallel"][s]) for s in accs["sequential"])
            out[model] = {
                "sequential_s": [round(w, 1) for w in walls["sequential"]],
                "parallel_s": [round(w, 1) for w in walls["parallel"]],
                "ratio": round(statistics.median(ratios), 2),
                "max_test_acc_diff_threads": round(diff, 4),
            }
            print(f"{model}: {json.dumps(out[model])}", flush=True)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
