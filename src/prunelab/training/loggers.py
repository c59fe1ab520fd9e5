"""Lightning's W&B and CSV loggers as prunelab uses them (conf/logger/).

W&B (offline by default; ``wandb sync <run folder>/wandb/offline-run-*`` uploads later):

- **axes that survive rounds**: Lightning's ``trainer/global_step`` restarts in every round, so default charts
  lay the rounds over each other. Every row also carries ``prune/step``, a step that keeps counting across rounds,
  and each metric is defined against it (``define_metric``); the per-round summaries (``round/*``: accuracy,
  AUROC, worst-class recall, FLOPs, ... of the round's kept model) are defined against ``prune/sparsity``, so they
  plot as curves over sparsity out of the box;
- **one W&B run per run folder**: the run id is derived from the folder's path, so a resumed run continues the
  same W&B run instead of opening a second one with the same name;
- **media per round**: a per-class table (``round/per_class``) and a confusion matrix (``round/confusion_matrix``);
- ``job_type`` is ``run`` or ``sweep`` (Hydra's mode), and the ``anonymous`` setting that wandb >= 0.19 warns about
  on every run is not passed.

CSV: a resumed run appends to ``csv/metrics.csv`` (Lightning deletes the earlier rows when a logger reopens a
non-empty folder).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

JOB_TYPES = {
    "1": "run",
    "RUN": "run",
    "RunMode.RUN": "run",
    "2": "sweep",
    "MULTIRUN": "sweep",
    "RunMode.MULTIRUN": "sweep",
}


def wandb_id(save_dir: str | Path) -> str:
    """A W&B run id for a run folder: the same folder (a resumed run) gets the same W&B run."""
    return "pl-" + hashlib.sha1(str(Path(save_dir).resolve()).encode()).hexdigest()[:16]


class WandbLogger(_LightningWandbLogger):
    def __init__(self, *args: Any, **kwargs: Any):
        if kwargs.get("id") is None and kwargs.get("save_dir"):
            kwargs["id"] = wandb_id(kwargs["save_dir"])
        if "job_type" in kwargs:
            kwargs["job_type"] = JOB_TYPES.get(str(kwargs["job_type"]), str(kwargs["job_type"]))
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self._bases: dict[int, int] = {0: 0}  # prune/step at which each round starts
        self._round, self._last_step = 0, 0
        self._defined: set[str] = set()

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

    def log_metrics(self, metrics: Any, step: int | None = None) -> None:
        metrics = dict(metrics)
        if step is not None:
            metrics["prune/step"] = self._global_step(metrics, int(step))
        self._define([k for k in metrics if k not in ("prune/step", "prune/sparsity", "trainer/global_step")])
        super().log_metrics(metrics, step)

    def log_round_media(self, row: dict[str, Any], classes: list[str], labels: Any, preds: Any, step: int) -> None:
        """The round's per-class table and confusion matrix (W&B media: they show after ``wandb sync``)."""
        import wandb

        columns: list[str | int] = ["class", "recall", "precision", "fn", "fp", "auroc", "support"]
        data = [
            [c, *(row.get(f"test/{m}/{c}") for m in ("recall", "precision", "fn", "fp", "auroc", "support"))]
            for c in classes
        ]
        media = {
            "round/per_class": wandb.Table(columns=columns, data=data),
            "round/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=[int(x) for x in labels], preds=[int(x) for x in preds], class_names=list(classes)
            ),
            "prune/sparsity": float(row["sparsity"]),
            "prune/round": float(row["round"]),
        }
        self._define(["round/per_class", "round/confusion_matrix"])
        self.experiment.log({**media, "trainer/global_step": step, "prune/step": self._global_step(media, step)})


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
