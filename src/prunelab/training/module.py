"""ClassifierModule: one LightningModule for every model, loss and dataset, with one shared step.

Validation and test gather the epoch's class probabilities and labels, then compute per-class metrics once at the
epoch's end (``prunelab.training.metrics``) and log them as flat scalars. The test stage keeps its probabilities so the
run can save per-example predictions.

The ~120 scalars of an epoch go to the loggers in one call (Lightning's logger connector: the same step and
``epoch`` column as ``self.log``); only the few that callbacks read (accuracy, loss, ``monitor.metric``) pass through
``self.log``, whose per-key bookkeeping cost ~1 ms a key (0.3 s an epoch; docs/performance.md, P1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning.masks import sparsity_stats
from prunelab.training.metrics import classification_metrics


def epoch_seed(seed: int, round_: int, epoch: int) -> int:
    return (seed * 1_000_003 + round_ * 10_007 + epoch) % (2**63 - 1)


class ClassifierModule(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        class_names: Sequence[str],
        scheduler: Callable[..., Any] | None = None,
        positive_class: int | None = None,
        seed: int = 0,
        round_: int = 0,
    ):
        super().__init__()
        self.model, self.loss_fn = model, loss
        self._loss_inputs = bool(getattr(loss, "uses_inputs", False))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.schedule_offset = 0  # epochs the LR schedule starts at (rewind=step, budget continue)
        self.class_names, self.positive_class = list(class_names), positive_class
        self.seed, self.round = seed, round_
        self._gathered: dict[str, list[tuple[Tensor, Tensor]]] = {"val": [], "test": []}
        # per training step: the detached loss, the predicted classes and the targets, until train_totals reduces them
        self._train_steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self._train_sums: tuple[list[float], int, int] = ([], 0, 0)  # loss x batch size per step, correct, seen
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.callback_keys: set[str] = set()  # epoch metrics callbacks read (monitor.metric), besides acc and loss
        self.test_outputs: tuple[Tensor, Tensor] | None = None
        self.val_outputs: tuple[Tensor, Tensor] | None = None  # the last validation pass's (probabilities, labels)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` twice around every hook call (~12 hooks a step); nn.Module's
        # __setattr__ runs several isinstance checks (Parameter's is a Python-level metaclass check) per call
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def set_round(self, round_: int) -> None:
        self.round = round_
        set_round = getattr(self.loss_fn, "set_round", None)  # round-dependent losses (class weights per round)
        if callable(set_round):
            set_round(round_)

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Batches are always ``(x, y)`` tensors: skip Lightning's generic collection walk (a hot-path cost)."""
        x, y = batch
        if x.device == device and y.device == device:
            return batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    # -- the one step ----------------------------------------------------------------------------------------
    def _shared_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        x, y = batch
        logits = self.model(x)
        if self._loss_inputs:  # losses that use the dense round's model on the same inputs (training.teachers)
            return self.loss_fn(logits, y, x), logits, y
        return self.loss_fn(logits, y), logits, y

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss, logits, y = self._shared_step(batch)
        # kept as they are and reduced once per epoch (train_totals): self.log on every step costs more than a small
        # model's step, and even summing on the device each step costs ~30 us (5 ops and 3 module attribute writes)
        self._train_steps.append((loss.detach(), logits.detach().argmax(1), y))
        return loss

    def train_totals(self) -> tuple[float, float, int] | None:
        """The epoch's training so far: mean loss (weighted by batch size), accuracy and the number of examples;
        None before the first step. The same figures whenever and however often it is called (the progress bar
        calls it while the epoch runs): each step's loss x batch size is exact in float64 and ``math.fsum`` rounds
        their sum once."""
        steps = self._train_steps
        weighted, correct, seen = self._train_sums
        if steps:
            losses = torch.stack([loss for loss, _, __ in steps]).double().tolist()
            sizes = [len(y) for _, __, y in steps]
            weighted.extend(loss * size for loss, size in zip(losses, sizes, strict=True))
            correct += int((torch.cat([pred for _, pred, __ in steps]) == torch.cat([y for _, __, y in steps])).sum())
            seen += sum(sizes)
            self._train_steps, self._train_sums = [], (weighted, correct, seen)
        if not seen:
            return None
        finite = all(math.isfinite(w) for w in weighted)
        total = math.fsum(weighted) if finite else math.nan
        return total / seen, correct / seen, seen

    def _reset_train_totals(self) -> None:
        self._train_steps, self._train_sums = [], ([], 0, 0)

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(epoch_seed(self.seed, self.round, self.current_epoch))  # dropout etc. resume exactly
        self._reset_train_totals()

    def on_train_epoch_end(self) -> None:
        totals = self.train_totals()
        self._reset_train_totals()  # frees the epoch's per-step tensors
        if totals is None:
            return
        loss, acc, _ = totals
        if not math.isfinite(loss):
            raise PrunelabError(
                "optimizer.lr",
                f"training diverged (non-finite loss) in round {self.round}, epoch {self.current_epoch}",
                "lower optimizer.lr or set trainer.gradient_clip_val",
            )
        row = {"train/loss": loss, "train/acc": acc, "prune/round": float(self.round)}
        self.log_dict({**row, "prune/sparsity": self.trained_sparsity()})

    def trained_sparsity(self) -> float:
        """The share of prunable weights masked now: what this epoch trained (or is evaluated) at."""
        return float(sparsity_stats(self.model)["sparsity"])

    def _gather(self, stage: str, batch) -> None:
        x, y = batch
        logits = self.model(x)  # no loss here: val/loss and test/loss come from the gathered probabilities
        self._gathered[stage].append((torch.softmax(logits.float(), 1).detach(), y.detach()))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._gather("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._gather("test", batch)

    def on_validation_epoch_start(self) -> None:
        self._gathered["val"] = []

    def on_test_epoch_start(self) -> None:
        self._gathered["test"] = []

    def _finish(self, stage: str) -> dict[str, float]:
        parts = self._gathered[stage]
        probs = torch.cat([p for p, _ in parts]).cpu()
        targets = torch.cat([t for _, t in parts]).cpu()
        self._gathered[stage] = []
        metrics = classification_metrics(probs, targets, self.class_names, stage, self.positive_class)
        metrics[f"{stage}/loss"] = float(torch.nn.functional.nll_loss(probs.clamp_min(1e-12).log(), targets))
        metrics["prune/round"] = float(self.round)
        self.last_metrics[stage] = metrics
        if stage == "test":
            self.test_outputs = (probs, targets)
        elif stage == "val":
            self.val_outputs = (probs, targets)
        return metrics

    @torch.no_grad()
    def evaluate(self, stage: str, batches: Any) -> dict[str, float]:
        """The epoch-end metrics of ``stage`` over ``batches``, outside a Trainer (the same code as a Lightning
        validation epoch; population training uses it). Restores the model's train/eval mode."""
        was = self.model.training
        self.model.eval()
        self._gathered[stage] = []
        try:
            for batch in batches:
                self._gather(stage, batch)
            return self._finish(stage) if self._gathered[stage] else {}
        finally:
            self.model.train(was)

    def _publish(self, metrics: dict[str, float]) -> None:
        """Every metric to the loggers at once, with the sparsity it was measured at; the ones callbacks read also to
        ``trainer.callback_metrics``. A validation outside a fit (the round's kept model, validated again) is logged
        as ``kept/val/...``, so it does not show as one more epoch."""
        read = {k: v for k, v in metrics.items() if k in self.callback_keys or k.endswith(("/acc", "/loss"))}
        fitting = getattr(getattr(self._trainer, "state", None), "fn", None) == "fit"
        if not fitting:
            metrics = {f"kept/{k}" if k.startswith("val/") else k: v for k, v in metrics.items()}
        metrics = {**metrics, "prune/sparsity": self.trained_sparsity()}
        connector = getattr(self.trainer, "_logger_connector", None)
        if connector is None or not callable(getattr(connector, "log_metrics", None)):
            self.log_dict(metrics)  # a Lightning without the connector: the slow, public path
            return
        self.log_dict(read, logger=False)
        connector.log_metrics(dict(metrics))

    def on_validation_epoch_end(self) -> None:
        if self._gathered["val"]:
            self._publish(self._finish("val"))

    def on_test_epoch_end(self) -> None:
        if self._gathered["test"]:
            self._publish(self._finish("test"))

    # -- optimisation -----------------------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.model.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        with warnings.catch_warnings():  # advancing the schedule before any optimizer step is intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(self.schedule_offset):
                sched.step()
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
