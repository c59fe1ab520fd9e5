"""What a run prints: a progress display during fits and one line per finished round.

On a terminal, one tqdm bar per round over all its training steps (so short epochs still move it), updated at
least ten times per epoch, with the epoch, its running loss and accuracy, and the last validation accuracy;
validation and test passes draw nothing. Off a terminal (a log file, a SLURM ``.out``) there are no bars: a plain
line at most every ``progress_log_seconds`` during long fits, and the round lines. The round line
(:func:`round_line`) is the same in both: round, sparsity, accuracy, AUROC, the worst class and its recall,
FNR/FPR for a binary task, wall time.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def round_line(row: dict, last_round: int) -> str:
    """One line per finished round (binary tasks add the positive class's FNR and FPR)."""
    parts = [
        f"round {row['round']}/{last_round}",
        f"sparsity {_fmt(row.get('sparsity'), '.4f')}",
        f"acc {_fmt(row.get('test/acc'), '.4f')}",
        f"auroc {_fmt(row.get('test/auroc_macro'), '.4f')}",
        f"worst class {row.get('worst_class', '-')} (recall {_fmt(row.get('worst_class_recall'), '.3f')})",
    ]
    if "test/fnr" in row:
        parts.append(f"fnr {_fmt(row.get('test/fnr'), '.3f')} fpr {_fmt(row.get('test/fpr'), '.3f')}")
    parts.append(f"{_fmt(row.get('round_seconds'), '.1f')} s")
    return "  ".join(parts)


class Progress(ProgressBar):
    """The training display (replaces Lightning's TQDM bar, which leaves validation bars behind and writes
    hundreds of ``\\r`` lines into log files)."""

    def __init__(
        self,
        refresh: int = 25,
        every_s: float = 30.0,
        tty: bool | None = None,
        label: str = "",
        mininterval: float = 0.1,
    ):
        super().__init__()
        self.mininterval = mininterval
        self.refresh, self.every_s, self.label = max(1, int(refresh)), float(every_s), label
        self.tty = sys.stdout.isatty() if tty is None else tty
        self._enabled = True
        self._bar: Any = None
        self._last_print = time.monotonic()
        self._val = ""

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _running(self, pl_module: Any) -> str:
        """The epoch's running training loss and accuracy, from a module that keeps them (``train_totals``)."""
        totals = getattr(pl_module, "train_totals", None)
        running = totals() if callable(totals) else None
        return "" if running is None else f"loss {running[0]:.4f} acc {running[1]:.4f}"

    def _extra(self, pl_module: Any) -> str:
        return " ".join(x for x in (self._running(pl_module), self._val) if x)

    def _every(self, trainer: Any) -> int:
        total = self.total_train_batches
        steps = int(total) if isinstance(total, (int, float)) and math.isfinite(total) and total > 0 else 0
        return max(1, min(self.refresh, steps // 10 if steps else self.refresh))

    @staticmethod
    def _epoch(trainer: Any) -> str:
        last = getattr(trainer, "max_epochs", None)
        now = trainer.current_epoch + 1  # 1-based, as people count: "epoch 1/3" is the first
        return f"{now}/{last}" if isinstance(last, int) and last > 0 else str(now)

    def _steps(self) -> int | None:
        batches = self.total_train_batches
        return int(batches) if isinstance(batches, (int, float)) and math.isfinite(batches) and batches > 0 else None

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """On a terminal one bar per round, over all its training steps (short epochs still move it)."""
        if not (self._enabled and self.tty) or self._bar is not None:
            return
        from tqdm.auto import tqdm

        steps, epochs = self._steps(), getattr(trainer, "max_epochs", None)
        total = steps * epochs if steps and isinstance(epochs, int) and epochs > 0 else None
        done = trainer.current_epoch * (steps or 0)  # a resumed round starts part-way
        self._bar = tqdm(
            total=total,
            initial=done,
            desc=self.label.strip() or "training",
            leave=False,
            dynamic_ncols=True,
            file=sys.stdout,
            mininterval=self.mininterval,
        )

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._enabled:
            return
        n = batch_idx + 1
        if self._bar is not None:
            last = n == self._steps()
            if n % self._every(trainer) == 0 or last:  # tqdm draws at most every mininterval (0.1 s)
                extra = self._extra(pl_module)
                self._bar.set_postfix_str(f"epoch {self._epoch(trainer)} {extra}".rstrip(), refresh=False)
                self._bar.update(trainer.current_epoch * (self._steps() or 0) + n - self._bar.n)
        elif not self.tty and time.monotonic() - self._last_print >= self.every_s:
            self._last_print = time.monotonic()
            of = f"/{self._steps()}" if self._steps() else ""
            print(
                f"  {self.label}epoch {self._epoch(trainer)} step {n}{of}  {self._extra(pl_module)}".rstrip(),
                flush=True,
            )

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        metric = trainer.callback_metrics.get("val/acc")
        self._val = f"val/acc {float(metric):.4f}" if metric is not None else ""

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
