"""Sweeps that survive: per-job attempt records and the sweep summary (a Hydra callback).

Every job of a multirun lives in the folder named by the hash of its own resolved config (``hydra.sweep.subdir``
is ``${prunelab_id:}``), so relaunching the same sweep command lands each job in its old folder: a complete run
is skipped, an interrupted one resumes from its last finished round (and last checkpoint). Each attempt appends one
line to ``<run>/attempts.jsonl`` (outcome, wall time, the compute a skip or resume saved, the error of a failure).

:class:`SweepSummary` is registered in ``hydra.callbacks`` (conf/config.yaml). When a multirun ends, whatever the
launcher (basic, joblib, submitit, ray), it reads the job folders under ``hydra.sweep.dir`` and writes
``sweep_summary.json`` and ``sweep_summary.md`` there (atomically): the jobs this launch completed, resumed, skipped
(and the time that saved) and the jobs that failed, were refused (their folder holds another config's run) or were
interrupted by a signal, with their errors. A sweep stopped by SIGTERM/SIGINT still writes its summary
(:func:`summary_after_signal`, called by the CLI). ``prunelab report`` lists failed jobs too.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from prunelab.runs import files as results
from prunelab.runs.files import read_attempts, record_attempt

__all__ = ["SweepSummary", "read_attempts", "record_attempt", "summarize_sweep", "write_sweep_summary"]

log = logging.getLogger("prunelab")

OUTCOMES = ("completed", "resumed", "skipped", "failed", "refused", "interrupted")
FAILURES = ("failed", "refused", "interrupted")  # outcomes that leave a job undone
LAST: dict = {}  # the summary of the last multirun this process launched (read by the CLI for its exit status)
ACTIVE: dict = {}  # the multirun under way in this process: its folder and start (for a summary after a signal)


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    return [str(x) for x in OmegaConf.load(path)]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a sweep: folders under it holding a Hydra ``.hydra/`` record or a run ``summary.json``."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        return []
    return sorted(
        p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / "summary.json").exists())
    )


def summarize_sweep(sweep_dir: Path, since: float = 0.0) -> dict:
    """What the launch that started at ``since`` (epoch seconds) did to each job of the sweep."""
    jobs = []
    for job in job_dirs(sweep_dir):
        summary = results.read_json_or_none(job / "summary.json") if (job / "summary.json").exists() else {}
        summary = summary if isinstance(summary, dict) else {"status": "unreadable"}
        attempts = [a for a in read_attempts(job) if a.get("at", 0) >= since]
        last = attempts[-1] if attempts else {}
        outcome = last.get("outcome")
        if outcome is None:  # the job started but left no attempt line: killed, or failed before run() began
            outcome = "failed" if summary.get("status") in ("failed", "running", "unreadable", None) else "unknown"
        jobs.append(
            {
                "job": job.name,
                "overrides": _overrides(job),
                "outcome": outcome,
                "status": summary.get("status", "missing"),
                "wall_seconds": last.get("wall_seconds"),
                "saved_seconds": last.get("saved_seconds", 0.0),
                "error": last.get("error") or (summary.get("error") if outcome in FAILURES else None),
            }
        )
    counts = {k: sum(j["outcome"] == k for j in jobs) for k in (*OUTCOMES, "unknown")}
    return {
        "sweep_dir": str(sweep_dir),
        "launched_at": since,
        "ended_at": round(time.time(), 3),
        "jobs": len(jobs),
        **counts,
        "undone": sum(counts[k] for k in FAILURES),
        "saved_seconds": round(sum(float(j["saved_seconds"] or 0.0) for j in jobs if j["outcome"] not in FAILURES), 2),
        "wall_seconds": round(time.time() - since, 2) if since else None,
        "failed_jobs": [
            {"job": j["job"], "overrides": j["overrides"], "outcome": j["outcome"], "error": j["error"]}
            for j in jobs
            if j["outcome"] in FAILURES
        ],
        "job_list": jobs,
    }


def _num(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f}"


def format_sweep(s: dict) -> str:
    lines = [
        f"# Sweep summary: {s['sweep_dir']}",
        "",
        f"{s['jobs']} jobs: {s['completed']} completed, {s['resumed']} resumed, {s['skipped']} skipped "
        f"(already complete), {s['failed']} failed, {s['refused']} refused, {s['interrupted']} interrupted. "
        f"Compute saved by skipping/resuming: {s['saved_seconds']:.0f} s; "
        f"this launch took {s['wall_seconds'] or 0:.0f} s."
        + (
            f" Stopped by {s['stopped_by']}: jobs not reached are not listed; relaunch the same command to finish."
            if s.get("stopped_by")
            else ""
        ),
        "",
        "| job | outcome | status | wall s | saved s | overrides | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for j in s["job_list"]:
        lines.append(
            f"| {j['job']} | {j['outcome']} | {j['status']} | {_num(j['wall_seconds'])} | {_num(j['saved_seconds'])}"
            f" | {' '.join(j['overrides'])} | {j['error'] or ''} |"
        )
    return "\n".join(lines) + "\n"


def write_sweep_summary(sweep_dir: Path, since: float = 0.0, stopped_by: str | None = None) -> dict:
    s = summarize_sweep(sweep_dir, since)
    s["stopped_by"] = stopped_by
    results.atomic_write_json(Path(sweep_dir) / "sweep_summary.json", s)
    results.atomic_write_text(Path(sweep_dir) / "sweep_summary.md", format_sweep(s))
    return s


class SweepSummary(Callback):
    """Hydra callback: time the launch, then write the sweep summary (runs in the launching process)."""

    def __init__(self) -> None:
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        ACTIVE.clear()
        ACTIVE.update(sweep_dir=Path(str(config.hydra.sweep.dir)), started=self.started)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        ACTIVE.clear()
        try:
            s = write_sweep_summary(sweep_dir, self.started)
        except Exception as exc:  # never turn a finished sweep into a crash
            log.warning("sweep summary not written: %s", exc)
            return
        LAST.clear()
        LAST.update(s, summary_path=str(sweep_dir / "sweep_summary.md"))
        log.info(
            "sweep: %d jobs, %d completed, %d resumed, %d skipped (saved %.0f s), %d failed or refused; summary in %s",
            s["jobs"],
            s["completed"],
            s["resumed"],
            s["skipped"],
            s["saved_seconds"],
            s["undone"],
            sweep_dir / "sweep_summary.md",
        )
        for j in s["failed_jobs"]:
            log.error("%s job %s (%s): %s", j["outcome"], j["job"], " ".join(j["overrides"]), j["error"])


def summary_after_signal(signal_name: str) -> dict | None:
    """A multirun stopped by a signal never reaches ``on_multirun_end``: write its summary now (or None)."""
    if not ACTIVE:
        return None
    s = write_sweep_summary(ACTIVE["sweep_dir"], ACTIVE["started"], stopped_by=signal_name)
    ACTIVE.clear()
    LAST.clear()
    LAST.update(s, summary_path=str(Path(s["sweep_dir"]) / "sweep_summary.md"))
    return s
