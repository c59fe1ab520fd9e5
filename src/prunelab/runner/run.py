"""The run: lock -> identity -> verified finished rounds -> run the rest (:func:`run`, one screen).

Rerunning the same command in the same folder skips a complete run (after checking that the folder holds *this*
config's run, made from *this* data, with every round's files intact) and resumes an interrupted one from its
last verified round and that round's last checkpoint. Anything else is refused on one line before anything is
written. Populations (``population=K``) go through the same status code (:mod:`prunelab.population.run`).
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from prunelab.config import checks
from prunelab.config.identity import run_id
from prunelab.errors import PrunelabError, describe
from prunelab.population.run import run_population
from prunelab.runner import build, class_damage, migrate, run_folder, share
from prunelab.runner.context import RunContext
from prunelab.runner.interrupt import RunInterrupted, interruptible
from prunelab.runner.round import load_kept_model, log_round, run_round
from prunelab.runs import files as results
from prunelab.runs import masks_from as source
from prunelab.training.console import round_line

log = logging.getLogger("prunelab")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run (or resume, or verify and skip) the experiment described by ``cfg`` in ``run_dir``."""
    run_dir = Path(run_dir)
    new_folder = (
        run_folder.empty(run_dir) and not _in_sweep()
    )  # a sweep job's folder records its failure for the summary
    try:
        checks.check_config(cfg)  # the machine part (a GPU) only here; the rest unless this process checked it
        source.pin(cfg)  # rewind.masks_from: the masks' fingerprint joins the recorded config
    except PrunelabError as exc:
        refused_before_work(cfg, run_dir, exc, new_folder)
        raise
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))  # before any torch work of this job
    population = checks.population_size(cfg) > 1
    ident = run_id(cfg)  # the run identity, computed once for this request
    if migrate.adopt(cfg, run_dir, "population_config.yaml" if population else "run_config.yaml", ident):
        new_folder = False  # the folder an earlier prunelab made for this config, under its old id
    if population:
        return run_population(cfg, run_dir, ident)
    with interruptible(), run_folder.folder_lock(run_dir, wait=bool(cfg.wait)):
        folder = run_folder.RunFolder(run_dir, ident=ident)
        with folder.noted(cfg, "refused"):
            folder.check_identity(cfg)  # before anything is skipped or written
        try:
            with folder.noted(cfg, "failed"):
                ctx = build.prepare(cfg, run_dir)  # every object built and checked; nothing written yet
        except PrunelabError:
            if new_folder:  # bad input found by the checks that need the data or the model: leave no folder
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        with folder.noted(cfg, "refused"):
            folder.check_data(ctx.dm.describe())
        done = folder.verified_rounds(ctx.num_rounds)
        if done:
            folder.note_thread_change()
        finished = len(done) == ctx.num_rounds or stop_decision(ctx, done) is not None
        if finished and folder.read_summary().get("status") == "complete":
            return skip(ctx, folder, done)
        return attempt(ctx, folder, done)


def refused_before_work(cfg: DictConfig, run_dir: Path, exc: PrunelabError, new_folder: bool) -> None:
    """A single run leaves no folder; a sweep job's fresh folder says why it failed (the sweep summary counts it)."""
    if new_folder:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif _in_sweep() and run_folder.empty(run_dir) and results.is_writer():
        folder = run_folder.RunFolder(run_dir)
        folder.attempt("failed", 0.0, error=exc.one_line())
        folder.set_status("failed", cfg, error=exc.one_line())


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    mode = HydraConfig.get().mode
    return mode is not None and mode.name == "MULTIRUN"


def skip(ctx: RunContext, folder: run_folder.RunFolder, done: list[dict]) -> dict:
    summary = folder.read_summary()
    folder.attempt("skipped", 0.0, saved_seconds=summary.get("compute_seconds", results.compute_seconds(done)))
    expected = "".join(f"{line}\n" for line in results.jsonl_lines(done))
    path = ctx.run_dir / "results.jsonl"
    if not path.exists() or path.read_text(errors="replace") != expected:
        log.warning("%s did not match the verified rounds: rebuilt", path)
        results.write_results(ctx.run_dir, done)
    print(f"run already complete in {ctx.run_dir}: nothing to do ({len(done)} rounds verified)")
    print(results.format_table(done))
    return summary


def attempt(ctx: RunContext, folder: run_folder.RunFolder, done: list[dict]) -> dict:
    """Train the rounds not done yet; the folder's status says running, then complete, failed or interrupted."""
    started = time.perf_counter()
    resumed = bool(done) or any(ctx.run_dir.glob("rounds/r*/checkpoints/last.ckpt"))
    try:
        folder.record(ctx.cfg, ctx.dm.describe())
        run_folder.init_snapshot(ctx.run_dir, ctx.module.model)
        if ctx.rewind.fresh_init:
            run_folder.reinit_snapshot(ctx.run_dir, ctx.module.model, build.fresh_model(ctx.cfg, ctx.dm))
        folder.set_status("running", ctx.cfg)
        if results.is_writer():
            print(
                f"run folder: {ctx.run_dir}" + (f" (resuming after round {len(done) - 1})" if done else ""), flush=True
            )
        ctx.loggers = build.build_loggers(ctx.cfg)
        rows = loop(ctx, done)
        stopped = stop_decision(ctx, rows)
        summary = folder.complete(ctx, rows, time.perf_counter() - started, **({"stopped": stopped} if stopped else {}))
    except BaseException as exc:
        error = end_failed(ctx, folder, exc, time.perf_counter() - started)
        if error is exc:
            raise
        raise error from exc
    shared = ctx.round0_from or {}  # round 0 copied from an identical run's: its compute is saved too
    folder.attempt(
        "resumed" if resumed else "completed",
        summary["wall_seconds"],
        saved_seconds=round(results.compute_seconds(done) + shared.get("saved_seconds", 0.0), 2),
        rounds_skipped=len(done),
        **({"shared_round0": shared["shared_round0"]} if shared else {}),
    )
    build.summarize_loggers(
        ctx.loggers,
        {
            "class_safe_sparsity": summary.get("class_safe_sparsity"),
            "stopped_after_round": (summary.get("stopped") or {}).get("after_round"),
        },
    )
    build.finish_loggers(ctx.loggers, "success")
    if results.is_writer():
        print(results.format_table(rows))
        drop = largest_drop(rows, [str(c) for c in ctx.dm.class_names])
        if drop:
            print(drop)
        print(f"next: prunelab report {ctx.run_dir}   (tables and figures into {ctx.run_dir / 'report'})")
    return summary


def largest_drop(rows: list[dict], classes: list[str]) -> str | None:
    """The console's one line on who paid: the class whose test recall fell most from round 0 to the last round."""
    if len(rows) < 2:
        return None
    first, last = rows[0], rows[-1]
    drops = [
        (first[f"test/recall/{c}"] - last[f"test/recall/{c}"], c)
        for c in classes
        if first.get(f"test/recall/{c}") is not None and last.get(f"test/recall/{c}") is not None
    ]
    if not drops:
        return None
    change, name = max(drops)
    return (
        f"largest recall drop against dense: class {name} ({first[f'test/recall/{name}']:.3f} -> "
        f"{last[f'test/recall/{name}']:.3f}, {-change:+.3f}) at round {last['round']} "
        f"(sparsity {last['sparsity']:.4f}); one seed: see `prunelab report` over several for noise"
    )


def end_failed(ctx: RunContext, folder: run_folder.RunFolder, exc: BaseException, wall: float) -> BaseException:
    """Mark the attempt interrupted or failed (as far as the disk allows); returns the exception to raise."""
    if isinstance(exc, OSError):
        exc = run_folder.write_error(Path(exc.filename or ctx.run_dir), exc)
    elif isinstance(exc, RuntimeError) and "write failed" in str(exc):  # torch's writer on a full disk (checkpoints)
        exc = run_folder.write_error(ctx.run_dir, OSError(errno.ENOSPC, f"a checkpoint write failed: {exc}"))
    outcome = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
    error = describe(exc)
    try:
        folder.set_status(outcome, ctx.cfg, error=error)
        folder.attempt(outcome, wall, error=error)
    except OSError as write_exc:  # a full disk: the error itself still reaches the user
        log.error("could not record the %s attempt: %s", outcome, write_exc)
    build.finish_loggers(ctx.loggers, "failed")
    return exc


def first_round(ctx: RunContext) -> dict:
    """Round 0: copied from an identical run's (``prunelab.runner.share``) or trained (and then shared)."""
    with share.round0(ctx) as row:
        if row is None:
            return run_round(ctx, 0)
    load_kept_model(ctx, 0)  # the next round starts from the copied round's kept model
    rdir = results.round_dir(ctx.run_dir, 0)
    probs, labels = results.load_predictions(rdir / "predictions.npz")
    row = class_damage.with_fields(ctx, 0, row, probs, labels)  # this run's settings, not the sharing run's
    if results.is_writer():
        results.atomic_write_json(rdir / "metrics.json", row)
    log_round(ctx, row, probs, labels, 0)
    return row


def stop_decision(ctx: RunContext, rows: list[dict]) -> dict | None:
    """``schedule.stop_when``'s decision on the finished rounds (None: go on); the same on every resume."""
    return ctx.schedule.stop.decision(rows) if ctx.schedule.stop is not None and rows else None


def loop(ctx: RunContext, done: list[dict]) -> list[dict]:
    rows = list(done)
    if done and len(done) < ctx.num_rounds:
        load_kept_model(ctx, len(done) - 1)  # the next round starts from this one's kept model
    if len(done) < ctx.num_rounds:
        class_damage.prepare_floor(ctx, first_round)  # the null dense model first: every round's record shows the floor
    for r in range(len(done), ctx.num_rounds):
        stopped = stop_decision(ctx, rows)
        if stopped is not None:
            if results.is_writer():
                print(f"stopped after round {stopped['after_round']}: {stopped['reason']}", flush=True)
            break
        log.debug("round %d/%d: target sparsity %.4f", r, ctx.num_rounds - 1, ctx.schedule.sparsity_at(r))
        rows.append(run_round(ctx, r) if r > 0 else first_round(ctx))
        results.write_results(ctx.run_dir, rows)
        if results.is_writer():
            print(round_line(rows[-1], ctx.num_rounds - 1), flush=True)
    results.write_results(ctx.run_dir, rows)  # also when every round was already done (a lost summary)
    return rows
