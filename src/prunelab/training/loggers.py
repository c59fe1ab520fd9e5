"""Lightning's W&B and CSV loggers as prunelab uses them (conf/logger/).

W&B (offline by default; ``wandb sync <run folder>/wandb/offline-run-*`` uploads later; README "W&B"):

- **axes that survive rounds**: Lightning's ``trainer/global_step`` restarts in every round, so default charts
  lay the rounds over each other. Every row also carries ``prune/step``, a step that keeps counting across rounds,
  and each metric is defined against it (``define_metric``); the per-round summaries (``round/*``: accuracy,
  AUROC, worst-class recall, FLOPs, ... of the round's kept model) are defined against ``prune/sparsity``, so they
  plot as curves over sparsity out of the box;
- **one W&B run per run folder, whatever interrupts it**: the W&B id comes from the run id and a salt kept in the
  folder (``wandb/id.json``). Every row and media entry sent is also kept in ``wandb/journal.jsonl``; a resumed
  process keeps the entries that still stand (earlier rounds whole, the resumed round's epochs up to its
  checkpoint), sends them again to its own offline run and moves the earlier processes' offline folders to
  ``.wandb_superseded/`` (``wandb sync`` cannot merge two offline folders with one id: wandb/wandb#3841), so the
  one folder to sync holds every round once with a monotonic ``prune/step`` (``begin_round``);
- **media per round**: a per-class table (``round/per_class``, with round and sparsity columns) and a confusion
  matrix (``round/confusion_matrix``);
- ``job_type`` is ``run`` or ``sweep`` (Hydra's mode), and the ``anonymous`` setting that wandb >= 0.19 warns about
  on every run is not passed.

CSV: a resumed run appends to ``csv/metrics.csv`` (Lightning deletes the earlier rows when a logger reopens a
non-empty folder).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

ID_FILE = "id.json"  # <run>/wandb/id.json: the W&B id and its salt
JOURNAL = "journal.jsonl"  # <run>/wandb/journal.jsonl: every row and media entry this run's W&B run was sent
SUPERSEDED = ".wandb_superseded"  # <run>/.wandb_superseded/: offline folders of earlier processes, replayed
AFTER_FIT = ("test/", "kept/", "round/")  # a round's rows logged after its fit (evaluation, summary)

# W&B's own per-run files (its service logs, the staging copies of tables) go under the run folder unless the user
# chose their places: nothing a run writes lands outside the folder chosen for it (README "Where outputs go")
WANDB_DIRS = {"WANDB_CACHE_DIR": ".cache", "WANDB_DATA_DIR": ".data"}
USER_SET = frozenset(v for v in WANDB_DIRS if v in os.environ)

JOB_TYPES = {
    "1": "run",
    "RUN": "run",
    "RunMode.RUN": "run",
    "2": "sweep",
    "MULTIRUN": "sweep",
    "RunMode.MULTIRUN": "sweep",
}


def wandb_id(run_id: str, salt: str) -> str:
    """A W&B run id for a run: its run id and a salt kept in the folder (``wandb/id.json``), so a resumed run gets
    the same W&B run and identical paths or ids on two machines do not."""
    return "pl-" + hashlib.sha1(f"{run_id}:{salt}".encode()).hexdigest()[:16]


def stored_id(save_dir: Path, run_id: str | None) -> str:
    """The run folder's W&B id: read from ``wandb/id.json``, made once (a random salt) where it is missing. A folder
    written before the id file existed keeps the id its offline runs carry."""
    path = save_dir / "wandb" / ID_FILE
    if path.exists():
        return str(json.loads(path.read_text())["id"])
    earlier = sorted(save_dir.glob("wandb/offline-run-*-pl-*"))
    salt = secrets.token_hex(8)
    wid = "pl-" + earlier[-1].name.rsplit("-pl-", 1)[1] if earlier else wandb_id(run_id or str(save_dir), salt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"id": wid, "run_id": run_id, "salt": salt}) + "\n")
    tmp.replace(path)
    return wid


def _rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def _kept(entry: dict, r: int, epoch: int | None) -> bool:
    """Whether an earlier process's journal entry stands when round ``r`` starts again (resumed after its
    checkpoint of ``epoch``, or from its start): earlier rounds stand whole; of round ``r`` only the fit's rows of
    the epochs the checkpoint holds (what comes after them is trained, evaluated and logged again)."""
    if entry["r"] != r:
        return entry["r"] < r
    row = entry.get("row") or {}
    return (
        epoch is not None
        and entry["k"] == "m"
        and "epoch" in row
        and row["epoch"] <= epoch
        and not any(k.startswith(AFTER_FIT) for k in row)
    )


class WandbLogger(_LightningWandbLogger):
    def __init__(self, *args: Any, run_id: str | None = None, **kwargs: Any):
        save = Path(kwargs["save_dir"]) if kwargs.get("save_dir") else None
        for var, sub in WANDB_DIRS.items():
            if save is not None and var not in USER_SET:
                os.environ[var] = str(save / "wandb" / sub)
        if kwargs.get("id") is None and save is not None and _rank_zero():
            kwargs["id"] = stored_id(save, run_id)
        if "job_type" in kwargs:
            kwargs["job_type"] = JOB_TYPES.get(str(kwargs["job_type"]), str(kwargs["job_type"]))
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self._bases: dict[int, int] = {0: 0}  # prune/step at which each round starts
        self._round, self._last_step = 0, 0
        self._defined: set[str] = set()
        self._journal = save / "wandb" / JOURNAL if save is not None and _rank_zero() else None
        self._earlier: list[dict] | None = _read_journal(self._journal) if self._journal else None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        exp = super().experiment
        if "prune/step" not in self._defined and callable(getattr(exp, "define_metric", None)):
            exp.define_metric("prune/step")
            exp.define_metric("prune/sparsity")
            exp.define_metric("*", step_metric="prune/step", step_sync=True)  # replaces Lightning's restarting step
            exp.define_metric("round/*", step_metric="prune/sparsity", step_sync=True)
            self._defined |= {"prune/step", "prune/sparsity"}
        return exp

    # -- the journal: what this W&B run was sent, kept in the run folder -------------------------------------------
    def begin_round(self, r: int, resumed_epoch: int | None) -> None:
        """Called by the runner as round ``r`` starts (``resumed_epoch``: the epoch of the checkpoint it resumes
        from). The first call of a process settles what earlier processes logged: the entries that still stand are
        kept in the journal and, offline, sent again to this process's W&B run, whose earlier offline folders are
        moved to ``.wandb_superseded/``; so the folder ``wandb sync`` uploads holds every round once, with
        ``prune/step`` continuing where the kept rows end (online, W&B's server keeps the earlier rows itself)."""
        if self._earlier is None or self._journal is None:
            return
        kept = [e for e in self._earlier if _kept(e, r, resumed_epoch)]
        self._earlier = None
        if kept or self._journal.exists():
            _write_journal(self._journal, kept)
        if self._offline and kept:
            self._supersede()
            for entry in kept:
                self._send(entry)
        self._restore_steps(kept)

    def _supersede(self) -> None:
        current = Path(self.experiment.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files
        for folder in sorted(current.parent.glob("offline-run-*")):
            if folder != current and folder.is_dir():
                target = current.parent.parent / SUPERSEDED
                target.mkdir(exist_ok=True)
                folder.rename(target / folder.name)

    def _restore_steps(self, kept: list[dict]) -> None:
        for entry in kept:
            step, pstep, r = entry.get("s"), entry.get("ps"), int(entry["r"])
            if step is None or pstep is None:
                continue
            self._bases[r] = int(pstep) - int(step)
            self._last_step = max(self._last_step, int(step)) if r == self._round else int(step)
            self._round = r

    def _record(self, entry: dict) -> None:
        if self._earlier is not None:  # something is logged before the runner started a round: settle first
            self.begin_round(int(entry["r"]), None)
        if self._journal is not None:
            with open(self._journal, "a") as f:
                f.write(json.dumps(entry) + "\n")
        self._send(entry)

    def _send(self, entry: dict) -> None:
        if entry["k"] == "m":
            row = entry["row"]
            self._define([k for k in row if k not in ("prune/step", "prune/sparsity", "trainer/global_step")])
            self.experiment.log(row)
            return
        import wandb

        media = {
            "round/per_class": wandb.Table(columns=entry["columns"], data=entry["data"]),
            "round/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=entry["labels"], preds=entry["preds"], class_names=entry["classes"]
            ),
            "prune/sparsity": entry["sparsity"],
            "prune/round": float(entry["r"]),
        }
        self._define(["round/per_class", "round/confusion_matrix"])
        self.experiment.log({**media, "trainer/global_step": entry["s"], "prune/step": entry["ps"]})

    # -- what Lightning and the runner log ----------------------------------------------------------------------
    def _global_step(self, metrics: dict[str, Any], step: int) -> int:
        r = metrics.get("prune/round")
        if r is not None and int(r) > self._round:  # a new round: its steps continue after the last one's
            self._bases[int(r)] = self._bases[self._round] + self._last_step + 1
            self._round, self._last_step = int(r), 0
        self._last_step = max(self._last_step, step)
        return self._bases[self._round] + step

    def _define(self, keys: list[str]) -> None:
        exp = self.experiment
        if not callable(getattr(exp, "define_metric", None)):
            return
        for key in keys:
            if key not in self._defined:  # an exact name takes precedence over Lightning's "*" glob
                axis = "prune/sparsity" if key.startswith(("round/", "prune/")) else "prune/step"
                exp.define_metric(key, step_metric=axis)
                self._defined.add(key)

    @rank_zero_only
    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        row = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(metrics).items()}
        pstep = None
        if step is not None:
            pstep = self._global_step(row, int(step))
            row.update({"prune/step": pstep, "trainer/global_step": int(step)})
        r = int(row.get("prune/round", self._round))
        self._record({"k": "m", "r": r, "s": step, "ps": pstep, "row": row})

    @rank_zero_only
    def log_round_media(self, row: dict[str, Any], classes: list[str], labels: Any, preds: Any, step: int) -> None:
        """The round's per-class table (with its round and sparsity) and confusion matrix (W&B media: they show
        after ``wandb sync``)."""
        r, sparsity = int(row["round"]), float(row["sparsity"])
        columns = ["round", "sparsity", "class", "recall", "precision", "fn", "fp", "auroc", "support"]
        data = [
            [r, sparsity, c]
            + [row.get(f"test/{m}/{c}") for m in ("recall", "precision", "fn", "fp", "auroc", "support")]
            for c in classes
        ]
        pstep = self._global_step({"prune/round": r}, step)
        entry = {"k": "media", "r": r, "s": step, "ps": pstep, "sparsity": sparsity, "columns": columns}
        entry.update(data=data, classes=list(classes), labels=[int(x) for x in labels], preds=[int(x) for x in preds])
        self._record(entry)


def _read_journal(path: Path) -> list[dict]:
    """An earlier process's entries (a torn last line, from a kill while writing it, is left out)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _write_journal(path: Path, entries: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries))
    tmp.replace(path)


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, not deleted."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class CSVLogger(_LightningCSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
