"""``prunelab reproduce <paper>``: one command per paper. Runs the paper's CPU-scale sweep (a Hydra multirun, so a
relaunch skips finished jobs), then writes ``<out>/report`` (the generic report) and ``<out>/paper.md``: a table
shaped like the paper's, the paper's reported numbers beside ours, and a verdict per qualitative claim. Each
paper's claims, sweeps and table live in one module of :mod:`prunelab.analysis.papers`.

    prunelab reproduce <paper> [--out DIR] [--seeds N] [--jobs J] [--sequential] [--doc FILE] [override ...]

Each paper's declaration (claims, levels, margins, seeds, sweeps, thread count) is hashed and recorded in
``<out>/declaration.json`` when the runs start; a table whose declaration changed since, or that was run with other
seeds or extra overrides, is labelled exploratory (:mod:`prunelab.analysis.declaration`). Every job trains at the
declared thread count (``threads=``, part of the run id); ``--jobs J`` runs J jobs at once (a sweep's jobs in
parallel worker processes, or a population paper's independent settings side by side), which changes no result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from prunelab.analysis import declaration
from prunelab.analysis.papers import registry
from prunelab.analysis.papers.common import disclosure
from prunelab.analysis.reproduce_doc import (
    history,
    provenance,
    record_verdicts,
    stamp,
    verdicts,
    write_rules,
    write_section,
)
from prunelab.runs.folders import find_runs

PAPERS: dict[str, dict[str, Any]] = {
    name: {**module.SPEC, "table": module.table} for name, module in registry().items()
}


def _commands(
    spec: dict, n: int, out: Path, overrides: list[str], sequential: bool, jobs: int = 1
) -> list[tuple[str, list[str]]]:
    """One Hydra multirun per entry of the paper's ``sweeps`` (a folder under ``<out>/runs`` each), at the declared
    thread count; with ``jobs`` > 1 a sweep of several jobs runs them in parallel worker processes."""
    cmds = []
    for sub, sweep in spec["sweeps"].items():
        size = n * (2 if "@2" in sweep else 1)
        sweep = [a for a in sweep if a != "@2"]
        first = next((int(a.split("=")[1]) for a in sweep if a.startswith("seed=")), 0)
        sweep = [a for a in sweep if not a.startswith("seed=")]
        if spec.get("population") and not sequential:  # one job per setting trains its seeds together
            members = [f"seed={first}", f"population={size}"]
        else:
            members = ["seed=" + ",".join(str(first + i) for i in range(size))]
        folder = out / "runs" / sub if sub else out / "runs"
        sweep = [a.replace("{runs}", str((out / "runs").resolve())) for a in sweep]  # a stage reads an earlier one
        several = (len(members) == 1 and size > 1) or any(_swept(a) for a in sweep)
        launcher = ["hydra/launcher=local_parallel", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 and several else []
        cmds.append(
            (
                sub,
                [
                    "-m",
                    *sweep,
                    *members,
                    f"threads={spec.get('threads', 1)}",
                    *launcher,
                    "logger=csv",
                    "trainer.enable_progress_bar=false",
                    f"hydra.sweep.dir={folder}",
                    f"paths.output_dir={out.resolve()}",  # every sub-sweep shares one round-0 store: <out>/shared
                    *overrides,
                ],
            )
        )
    return cmds


def _swept(arg: str) -> bool:
    """Whether an override sweeps several values (a comma outside braces and brackets: ``a=1,2``, not
    ``converge={x: 1, y: 2}``)."""
    depth = 0
    for ch in arg.partition("=")[2]:
        depth += ch in "{[("
        depth -= ch in "}])"
        if ch == "," and depth == 0:
            return True
    return False


def start_sweep(cmd: list[str]) -> int | subprocess.Popen:
    """Start ``prunelab <cmd>`` in its own process: a pid, or a Popen.

    Where the OS can fork, the process is a fork of this one after the imports every job needs (torch,
    Lightning, Hydra; no torch operation has run here, no thread started), so a sweep does not pay ~5 s of start-up
    (a paper command launches up to 10). Otherwise, or with ``PRUNELAB_REPRODUCE_FORK=0``, a fresh interpreter."""
    if not hasattr(os, "fork") or os.environ.get("PRUNELAB_REPRODUCE_FORK", "1") == "0":
        return subprocess.Popen([sys.executable, "-m", "prunelab", *cmd])
    import prunelab.runner.run  # noqa: F401  (imported once, before the fork)

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: ``prunelab <cmd>``, then leave without returning into this loop
        _child(cmd)
    return pid


def wait_sweep(proc: int | subprocess.Popen) -> int:
    """The exit status of a started sweep (-N: killed by signal N)."""
    if isinstance(proc, subprocess.Popen):
        return proc.wait()
    return os.waitstatus_to_exitcode(os.waitpid(proc, 0)[1])


def run_all(cmds: list[tuple[str, list[str]]], spec: dict, jobs: int) -> None:
    """Every sweep, in order. With ``jobs`` > 1, sweeps of one job each (a population paper's settings) run up to
    ``jobs`` at a time; a sweep that reads an earlier one's runs (``{runs}``) waits for all before it, and a sweep of
    several jobs runs alone (its jobs in parallel workers). Stops at the first sweep that fails outright."""
    running: list[int | subprocess.Popen] = []

    def settle(keep: int) -> None:
        while len(running) > keep:
            code = wait_sweep(running.pop(0))
            if code not in (0, 3):  # 3: the sweep ran but some jobs failed; the table lists them
                for other in running:
                    wait_sweep(other)
                raise SystemExit(128 - code if code < 0 else code)

    for sub, cmd in cmds:
        alone = any(a.startswith("hydra/launcher=") for a in cmd) or "{runs}" in " ".join(spec["sweeps"][sub])
        settle(0 if alone else jobs - 1)
        running.append(start_sweep(cmd))
        if alone or jobs == 1:
            settle(0)
    settle(0)


def _child(cmd: list[str]) -> NoReturn:
    import atexit
    import runpy
    import threading
    import traceback

    code = 1
    try:
        sys.argv = ["prunelab", *cmd]
        runpy.run_module("prunelab", run_name="__main__", alter_sys=True)  # as ``python -m prunelab`` runs it
        code = 0
    except SystemExit as exc:  # as the interpreter turns it into an exit status
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # whatever it is: reported like an uncaught exception, exit status 1
        traceback.print_exc()
    finally:
        try:
            # as the interpreter exits: first the threading exit hooks (a joblib/loky launcher's pool tells its
            # workers to stop there; without it multiprocessing's atexit join waits out their 300 s idle timeout)
            threading._shutdown()  # type: ignore[attr-defined]
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def history_lines(doc: Path, paper: str, text: str) -> list[str]:
    """Markdown: the earlier writes of this section and their verdicts (from ``<doc>.verdicts.jsonl``), each
    verdict that differs from this write's marked."""
    now, earlier = verdicts(text), history(doc, paper)
    if not earlier:
        return ["", "Verdict history: this is the first recorded write of this section."]
    lines = ["", "<details><summary>Verdict history (earlier writes of this section)</summary>", ""]
    for row in earlier:
        cells = []
        for key, v in sorted(row.get("verdicts", {}).items()):
            flip = key in now and now[key]["verdict"] != v["verdict"]
            cells.append(f"{key} {v['verdict']}" + (f" (**now {now[key]['verdict']}**)" if flip else ""))
        lines.append(
            f"- {row.get('written')} at {row.get('commit')} (declaration {row.get('declaration') or '-'}): "
            + ("; ".join(cells) or "no verdicts")
        )
    return [*lines, "", "</details>"]


def _fail(message: str) -> None:
    print(f"prunelab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="prunelab reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("paper", choices=sorted(PAPERS))
    parser.add_argument("--out", type=Path, default=None, help="default: outputs/reproduce/<paper>")
    parser.add_argument("--seeds", type=int, default=None, help="population size per setting")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="one job per seed, even where the paper's command trains each population at once",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="jobs at once (each at the declared thread count; results do not change): 2 on a 2-core machine",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=None,
        help="also write the table, stamped, into this Markdown file's section for the paper",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    args = parser.parse_intermixed_args(argv)
    spec = PAPERS[args.paper]
    if args.seeds is not None and args.seeds < 1:
        _fail(
            f"--seeds: {args.seeds} seeds per setting (fix: use --seeds >= 1, or leave it out for the paper's "
            f"{spec['seeds']})"
        )
    if args.jobs < 1:
        _fail(f"--jobs: {args.jobs} (fix: use --jobs 1 or more)")
    if os.environ.get("PRUNELAB_OUTPUT_DIR") == "" and args.out is None:
        _fail("PRUNELAB_OUTPUT_DIR: set but empty (fix: unset it, or give --out DIR)")
    out = args.out or Path(os.environ.get("PRUNELAB_OUTPUT_DIR") or "outputs") / "reproduce" / args.paper
    n = spec["seeds"] if args.seeds is None else args.seeds
    start = time.perf_counter()
    module = registry()[args.paper]
    recorded = declaration.record(out, module, n, args.overrides)
    run_all(_commands(spec, n, out, args.overrides, args.sequential, args.jobs), spec, args.jobs)
    _write(args, spec, module, out, recorded, start)


def _write(args: argparse.Namespace, spec: dict, module: Any, out: Path, recorded: dict, start: float) -> None:
    """The report, the paper's table with its declaration line, ``paper.md``, and the doc section (``--doc``)."""
    from prunelab.analysis.report import report

    report(out / "runs", out / "report")
    runs = find_runs(out / "runs")
    if not any(r.status == "complete" for r in runs):
        errors = {r.error for r in runs if r.error}
        raise SystemExit(f"prunelab: error: reproduce: no job of the sweep completed ({'; '.join(errors) or '?'})")
    text = spec["table"](runs, out / "runs")
    text += "\n".join([*disclosure(module), *declaration.section(recorded, module)]) + "\n"
    bad = [r for r in runs if r.status != "complete"]
    text += "\n" + provenance(spec["data"]) + "\n"
    compute = sum(float(x.get("round_seconds") or 0) for r in runs if r.status == "complete" for x in r.rows)
    text += (
        f"\n{len(runs)} runs, {len(bad)} not complete. Training and evaluation recorded in the runs: "
        f"{compute:.0f} s (sum of round times; population jobs train their members at once, so their wall "
        f"time is lower); this launch: {time.perf_counter() - start:.0f} s (a relaunch skips finished jobs).\n"
    )
    (out / "paper.md").write_text(text)
    print(text)
    if args.doc:
        seeds = [f"--seeds {args.seeds}"] if args.seeds is not None else []
        argv_text = " ".join(
            ["prunelab reproduce", args.paper, *seeds, *(["--sequential"] if args.sequential else []), *args.overrides]
        )
        decl = declaration.digest(declaration.declaration(module))
        stmp = stamp(args.paper, spec["configs"], argv_text, decl, spec.get("threads", 1))
        text += "\n".join(history_lines(args.doc, args.paper, text)) + "\n"
        write_section(args.doc, args.paper, text, stmp)
        record_verdicts(args.doc, args.paper, text, stmp)
        write_rules(args.doc)
        print(f"wrote the {args.paper} section of {args.doc}")
