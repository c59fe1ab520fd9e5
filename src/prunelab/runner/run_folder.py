"""The run folder being written: its lock, identity check, verified rounds, status and attempts (single runs and
populations alike).

- :func:`folder_lock`: an exclusive ``flock`` on ``<run>/.lock`` for the whole attempt. A second process gets a
  one-line error naming the holder (or waits, with ``wait=true`` / ``prunelab --wait``). The kernel releases the
  lock when its holder dies, so a lock left by a killed process is taken over without any clean-up.
- :class:`RunFolder`: the identity check (the saved resolved config and the data fingerprint must match the
  request) made *before* anything is skipped or written, verified finished rounds (every round's ``metrics.json``
  carries the size and SHA-1 of each file the round wrote; a round whose files are missing or changed is set aside
  as ``rNN.broken-<time>`` and redone, with the later rounds), and the summary and attempt records.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prunelab.config.identity import differences, run_id
from prunelab.errors import PrunelabError
from prunelab.runner.context import RunContext
from prunelab.runs import files as results
from prunelab.training.damage import class_safe_sparsity

log = logging.getLogger("prunelab")

LOCK_FILE = ".lock"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(path: Path, exc: OSError) -> PrunelabError:
    """The one-line error for a failed write (full disk, read-only or missing folder)."""
    if exc.errno in DISK_FULL:
        return PrunelabError(
            "paths.output_dir",
            f"cannot write {path}: the disk is full ({exc.strerror})",
            "free space, or point paths.output_dir (PRUNELAB_OUTPUT_DIR) at another disk",
        )
    return PrunelabError(
        "hydra.run.dir",
        f"cannot write {path} ({exc.strerror or exc})",
        "choose a writable folder: paths.output_dir=<folder> or hydra.run.dir=<folder>",
    )


# What Hydra and the CLI put in a run folder before the job (its log) and the lock: not run files
BEFORE_THE_JOB = ("cli.log", LOCK_FILE)


def empty(run_dir: Path) -> bool:
    """No folder yet, or one holding nothing but what Hydra and the CLI put there before the job."""
    return not run_dir.exists() or all(p.name in BEFORE_THE_JOB for p in run_dir.iterdir())


@contextmanager
def folder_lock(run_dir: Path, wait: bool = False) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` exclusively (rank 0 of a DDP run only; the other ranks write nothing)."""
    if not results.is_writer():
        yield
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(run_dir, exc) from exc
    try:
        _acquire(fd, run_dir, wait)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, run_dir: Path, wait: bool) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        raise PrunelabError(
            "hydra.run.dir",
            f"{run_dir} is in use by {holder}",
            "wait for that run to end, or rerun with --wait to queue behind it",
        ) from None
    info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)


class RunFolder:
    """One run folder (or population folder): identity, verified rounds, status and attempts."""

    def __init__(self, run_dir: Path, config_name: str = "run_config.yaml", ident: str | None = None):
        """``ident``: the request's run id, computed once by the caller (else from the config where needed)."""
        self.run_dir, self.config_path = Path(run_dir), Path(run_dir) / config_name
        self.summary_path = self.run_dir / "summary.json"
        self.ident = ident

    def run_id(self, cfg: DictConfig) -> str:
        """The request's run id (computed once)."""
        if self.ident is None:
            self.ident = run_id(cfg)
        return self.ident

    # -- identity: checked before anything is skipped or written ---------------------------------------------------
    # What a run writes after its recorded config: a folder holding any of them without that record cannot be
    # matched to a config, so it is never adopted
    RUN_FILES = ("summary.json", "data.json", "results.jsonl", "rounds", "rewind", "members")

    def check_identity(self, cfg: DictConfig) -> None:
        """The folder is empty of run files, or holds the run of exactly this config: its recorded config and the
        run id in its ``summary.json`` both match the request."""
        if not self.config_path.exists():
            found = [name for name in self.RUN_FILES if (self.run_dir / name).exists()]
            if found:
                raise PrunelabError(
                    "hydra.run.dir",
                    f"{self.run_dir} holds run files ({', '.join(found)}) but no "
                    f"{self.config_path.name}: the run they belong to cannot be checked",
                    "choose another folder or delete this one",
                )
            return
        try:
            old = OmegaConf.load(self.config_path)
        except Exception as exc:
            raise PrunelabError(
                "hydra.run.dir",
                f"{self.config_path} is unreadable: the folder cannot be matched to this config",
                "choose another folder or delete this one",
            ) from exc
        diff = differences(cfg, old)
        if diff:
            raise PrunelabError(
                "hydra.run.dir",
                f"{self.run_dir} holds a run of another config (differs in {', '.join(diff)})",
                "choose another folder or delete this one",
            )
        summary = results.read_json_or_none(self.summary_path) if self.summary_path.exists() else None
        recorded = summary.get("run_id") if isinstance(summary, dict) else None
        if recorded is not None and recorded != self.run_id(cfg):
            raise PrunelabError(
                "hydra.run.dir",
                f"{self.summary_path} names run {recorded}, not this config's "
                f"{self.run_id(cfg)}: the folder's files do not belong together",
                "choose another folder or delete this one",
            )

    def check_data(self, record: dict) -> None:
        """The data this request loads must be the data the folder's rounds were made with (a moved copy is)."""
        path = self.run_dir / "data.json"
        old = results.read_json_or_none(path) if path.exists() else None
        if old is None:
            row, _ = results.verify_round(self.run_dir, 0)
            if row is not None and row.get("data_fingerprint") == record["fingerprint"]:
                log.warning("%s was missing or unreadable: rebuilt (round 0 recorded this data's fingerprint)", path)
                results.atomic_write_json(path, record)
            elif results.round_done(self.run_dir, 0):
                recorded = row.get("data_fingerprint") if row is not None else None
                why = "was made with other data" if recorded else "records no data fingerprint (an older prunelab)"
                raise PrunelabError(
                    "data",
                    f"{self.run_dir} has finished rounds but no readable data record "
                    f"(data.json), and its round 0 {why}",
                    "restore data.json from a copy of the folder, or choose another folder",
                )
            return
        if old.get("fingerprint") != record["fingerprint"]:
            raise PrunelabError(
                "data",
                f"{self.run_dir} was made with other data (fingerprint "
                f"{old.get('fingerprint')}, now {record['fingerprint']})",
                "choose another hydra.run.dir or delete this folder",
            )

    def record(self, cfg: DictConfig, data_record: dict | None, overrides: list[str] | None = None) -> None:
        """Write the identity (resolved config, data record) and Hydra's record of the command; after the checks."""
        if not self.config_path.exists():
            results.atomic_write_text(self.config_path, OmegaConf.to_yaml(cfg, resolve=True))
        if data_record is not None:
            results.atomic_write_json(self.run_dir / "data.json", data_record)
        write_hydra_record(self.run_dir, cfg, overrides)

    # -- finished rounds ---------------------------------------------------------------------------------------------
    def verified_rounds(self, n: int) -> list[dict]:
        """The records of rounds 0.. that are finished and intact. From the first broken round on, every round is
        set aside and will be redone; rounds after a missing one are set aside too (they started from it)."""
        rows: list[dict] = []
        for r in range(n):
            row, problem = results.verify_round(self.run_dir, r)
            if row is not None:
                rows.append(row)
                continue
            first = r if problem else r + 1
            later = [k for k in range(first, n) if results.round_dir(self.run_dir, k).exists()]
            if problem or later:
                reason = problem or f"rounds/r{r:02d} is missing"
                log.warning("%s: %s: redoing round %d (and every later round)", self.run_dir, reason, r)
                self._set_aside(range(first, n), rewind_steps=first == 0)
            break
        return rows

    def _set_aside(self, rounds: range, rewind_steps: bool) -> None:
        if not results.is_writer():
            return
        stamp = int(time.time())
        moved = [results.round_dir(self.run_dir, k) for k in rounds]
        if rewind_steps:  # step-k snapshots are written during round 0
            moved += sorted((self.run_dir / "rewind").glob("step*.pt"))
        for path in moved:
            if path.exists():
                path.rename(path.with_name(f"{path.name}.broken-{stamp}"))

    # -- status and attempts -----------------------------------------------------------------------------------------
    def read_summary(self) -> dict:
        if not self.summary_path.exists():
            return {}
        summary = results.read_json_or_none(self.summary_path)
        if not isinstance(summary, dict):
            log.warning("%s is unreadable: the run's rounds are verified instead", self.summary_path)
            return {"status": "unreadable"}
        return summary

    def set_status(self, status: str, cfg: DictConfig, **info: Any) -> None:
        results.atomic_write_json(self.summary_path, {"status": status, "run_id": self.run_id(cfg), **info})

    def note_thread_change(self) -> None:
        """Say so when this process trains with another torch thread count than the folder's last attempt: float
        sums differ in the last digits between thread counts, so the resumed rounds are not bit-identical to an
        uninterrupted run's."""
        import torch

        before = [a.get("torch_threads") for a in results.read_attempts(self.run_dir) if a.get("torch_threads")]
        now = torch.get_num_threads()
        if before and before[-1] != now:
            log.warning(
                "%s: its earlier rounds trained with %d torch threads, this process uses %d: results differ in the "
                "last digits from an uninterrupted run (set threads=%d to match)",
                self.run_dir, before[-1], now, before[-1],
            )  # fmt: skip

    def attempt(self, outcome: str, wall_seconds: float, **info: Any) -> None:
        results.record_attempt(self.run_dir, outcome, wall_seconds, **info)

    @contextmanager
    def noted(self, cfg: DictConfig, outcome: str) -> Iterator[None]:
        """A check that fails leaves one attempt line (and a ``failed`` summary in a folder that has none)."""
        try:
            yield
        except PrunelabError as exc:
            self.attempt(outcome, 0.0, error=exc.one_line())
            if outcome == "failed" and not self.summary_path.exists():  # a fresh folder of this config: say why
                self.record(cfg, None)
                self.set_status("failed", cfg, error=exc.one_line())
            raise

    def complete(self, ctx: RunContext, rows: list[dict], wall: float, **extra: Any) -> dict:
        """Write the run's ``complete`` summary (warnings are printed and recorded in it)."""
        for warning in ctx.warnings:
            log.warning("%s", warning)
        summary = {
            "status": "complete",
            "run_id": self.run_id(ctx.cfg),
            "name": ctx.cfg.name,
            "rounds": len(rows),
            "wall_seconds": round(wall, 2),  # this attempt
            "compute_seconds": results.compute_seconds(rows),  # all attempts
            "final_sparsity": rows[-1]["sparsity"],
            "class_safe_sparsity": class_safe_sparsity(rows),
            "final": results.strip_record(rows[-1]),
            "dense": results.strip_record(rows[0]),
            "classes": ctx.dm.class_names,
            "warnings": ctx.warnings,
            **extra,
        }
        results.atomic_write_json(self.summary_path, summary)
        return summary


def init_snapshot(run_dir: Path, model: Any) -> None:
    """Round 0's initial weights (``rewind/init.pt``): restored if saved, saved if not. An unreadable snapshot is
    rewritten from the model just built, which is the same seeded initialisation by construction."""
    from prunelab.pruning import rewind as rewinding

    snapshots = results.SnapshotFolder(run_dir / "rewind")
    if snapshots.exists("init.pt"):
        try:
            rewinding.restore(model, snapshots.load("init.pt"))
            return
        except PrunelabError as exc:
            log.warning("%s: rewritten from the seeded initialisation (the same weights by construction)", exc.message)
    if results.is_writer():
        snapshots.save("init.pt", rewinding.snapshot(model))


def reinit_snapshot(run_dir: Path, model: Any, fresh: Any) -> None:
    """``rewind/reinit.pt``: the weights of ``fresh`` (the same architecture, initialised with another seed) under
    ``model``'s masked keys: what ``rewind=reinit`` restores after each pruning round."""
    from prunelab.pruning import rewind as rewinding

    path = run_dir / "rewind" / "reinit.pt"
    if not path.exists() and results.is_writer():
        results.atomic_save_torch(rewinding.dense_state_as_masked(fresh.state_dict(), model), path)


def write_hydra_record(run_dir: Path, cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """``.hydra/{config,hydra,overrides}.yaml`` as Hydra writes them (``hydra.output_subdir`` is null, so that a
    refused run never overwrites another run's record); nothing outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    task = list(hc.overrides.task) if overrides is None else overrides
    folder = run_dir / ".hydra"
    results.atomic_write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    results.atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml({"hydra": hc}))
    results.atomic_write_text(folder / "overrides.yaml", OmegaConf.to_yaml(task))
