"""The lean training-epoch loop: Lightning's training step without its per-step dispatch machinery.

Lightning's ``_TrainingEpochLoop.advance`` and ``_AutomaticOptimization`` route every step through ~25 generic hook
calls (each callback and the module, overridden or not, each inside a profiler context), a freshly built closure,
the ``LightningOptimizer`` wrapper and a signature inspection of ``training_step``. On a model whose step costs a
few milliseconds that is ~20% of the wall time (docs/performance.md, P1). :class:`LeanEpochLoop` runs the same
step — the same hooks of the callbacks and module that override them, in Lightning's order, the same progress
counters (``global_step``, checkpoints and resumption read them), the same loss normalisation, zero-grad, backward,
clipping and optimizer update — with the dispatch decided once per epoch.

It runs only where the step is plain: one torch optimizer that does not re-evaluate the closure (not LBFGS),
automatic optimization, no gradient accumulation, one device without a distributed strategy, 32-bit precision, no
profiler, a module that does not override the hooks that take over the step itself (``optimizer_step``,
``backward``, ...), and not the first step after a mid-epoch restart. Anything else — and every Lightning release
this file was not checked against — takes Lightning's own ``advance`` (``LeanEpochLoop.used(trainer)`` says which
loop trained a fit, and why; each round records it). ``training_loop=lightning`` turns it off;
``tests/test_lean_loop.py`` checks that both loops give bit-identical weights, optimizer state, progress counters,
hook calls and logged metrics.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loops.fetchers import _DataLoaderIterDataFetcher
from lightning.pytorch.loops.optimization.automatic import ClosureResult
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

# the Lightning releases whose loop this file mirrors (read line by line against 2.6's training_epoch_loop.py,
# optimization/automatic.py, plugins/precision/precision.py and trainer/call.py); others use Lightning's loop
CHECKED = ((2, 6), (2, 6))

# hooks of the module that replace a part of the step: the lean loop does not run such a module
TAKE_OVER = ("optimizer_step", "optimizer_zero_grad", "backward", "on_train_batch_start")
BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
CALLBACK_HOOKS = (
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
)
MODULE_HOOKS = (
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
)


log = logging.getLogger("prunelab")


def _closure_free(optimizer: Any) -> bool:
    """torch's own optimizers call ``step``'s closure once, first, when given one; LBFGS re-evaluates it and other
    optimizers (SAM, ...) may do anything with it: those keep Lightning's closure-driven step."""
    return type(optimizer).__module__.startswith("torch.optim.") and not isinstance(optimizer, torch.optim.LBFGS)


def _no_op(hook: str, callback: Callback) -> bool:
    """Whether Lightning 2.6's ``callback.<hook>`` returns without doing anything in a lean epoch (automatic
    optimization): ``ModelCheckpoint.on_train_batch_end`` without ``every_n_train_steps`` or
    ``train_time_interval`` (or a subclass that does not override it)."""
    if hook != "on_train_batch_end" or not isinstance(callback, ModelCheckpoint):
        return False
    if type(callback).on_train_batch_end is not ModelCheckpoint.on_train_batch_end:
        return False
    return callback._every_n_train_steps < 1 and callback._train_time_interval is None


def _version() -> tuple[int, int]:
    major, minor = pl.__version__.split(".")[:2]
    return int(major), int(minor)


class LeanEpochLoop(_TrainingEpochLoop):
    """``_TrainingEpochLoop`` whose ``advance`` takes the lean path when :meth:`why_not` finds nothing against it."""

    reason: str | None = "not started"
    paths: set[str]  # what trained this trainer's epochs: "lean" and/or "lightning: <reason>"
    _val_enabled: bool | None = None  # Trainer.enable_validation, read once per lean epoch (None: outside one)

    @classmethod
    def install(cls, trainer: pl.Trainer) -> None:
        """Make ``trainer``'s epoch loop lean (its state is kept: the instance's class changes, nothing else)."""
        loop = trainer.fit_loop.epoch_loop
        if type(loop) is _TrainingEpochLoop:
            loop.__class__ = cls
            cast(LeanEpochLoop, loop).paths = set()

    @staticmethod
    def used(trainer: pl.Trainer) -> str:
        """Which loop ran the epochs of ``trainer``'s fit: ``lean``, ``lightning: <why not lean>`` (both, joined by
        "; ", if epochs differed), ``lightning`` for a Trainer without the lean loop, ``none`` if no epoch ran
        (``max_epochs=0``, or a resumed fit that had finished)."""
        loop = trainer.fit_loop.epoch_loop
        if not isinstance(loop, LeanEpochLoop):
            return "lightning"
        return "; ".join(sorted(loop.paths)) or "none"

    def why_not(self, data_fetcher: Any) -> str | None:
        """Why this epoch cannot take the lean path, or None."""
        trainer: Any = self.trainer  # (Lightning's stubs miss some of the Trainer's attributes)
        module = trainer.lightning_module
        if not CHECKED[0] <= _version() <= CHECKED[1]:
            return f"Lightning {pl.__version__} is not one the lean loop was checked against"
        optimizers = trainer.optimizers
        checks = {
            "manual optimization": lambda: not module.automatic_optimization,
            "more than one optimizer": lambda: len(optimizers) != 1,
            "gradient accumulation": lambda: trainer.accumulate_grad_batches != 1,
            "a strategy other than one device": lambda: type(trainer.strategy) is not SingleDeviceStrategy,
            "a precision other than 32-bit": lambda: type(trainer.precision_plugin) is not Precision,
            "a profiler": lambda: type(trainer.profiler) is not PassThroughProfiler,
            "a wrapped model": lambda: trainer.strategy.model is not module,
            "a dataloader_iter training_step": lambda: isinstance(data_fetcher, _DataLoaderIterDataFetcher),
            "skipped backward": lambda: trainer.fit_loop._skip_backward,
            "an optimizer that may use the step closure": lambda: not _closure_free(optimizers[0]),
        }
        for what, present in checks.items():  # in order: the closure check needs exactly one optimizer
            if present():
                if what == "an optimizer that may use the step closure":
                    return f"an optimizer ({type(optimizers[0]).__name__}) that may use the step closure"
                return what
        for hook in TAKE_OVER:
            if is_overridden(hook, module, pl.LightningModule):
                return f"the module overrides {hook}"
        return None

    def on_run_start(self, data_fetcher: Any) -> None:
        super().on_run_start(data_fetcher)
        self.reason = self.why_not(data_fetcher)
        path = "lean" if self.reason is None else f"lightning: {self.reason}"
        if path not in self.paths and self.reason is not None:
            log.debug("training with Lightning's own loop (the lean loop does not apply: %s)", self.reason)
        self.paths.add(path)
        if self.reason is not None:
            return
        trainer: Any = self.trainer
        module = trainer.lightning_module
        self._val_enabled = trainer.enable_validation
        self._callbacks = {
            h: [c for c in trainer.callbacks if is_overridden(h, c, Callback) and not _no_op(h, c)]
            for h in CALLBACK_HOOKS
        }
        self._module_hooks = {h: is_overridden(h, module, pl.LightningModule) for h in MODULE_HOOKS}
        self._clip = bool(trainer.gradient_clip_val) or is_overridden(
            "configure_gradient_clipping", module, pl.LightningModule
        )
        self._pass_idx = is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2)
        # the batch hooks of the datamodule where it overrides them, else the module's (Lightning's hook selector);
        # the defaults of on_before/after_batch_transfer return the batch unchanged and are skipped
        selector = trainer._data_connector._datahook_selector
        self._batch_hooks = []
        for hook in BATCH_HOOKS:
            owner = selector.get_instance(hook) if selector is not None else module
            base = pl.LightningModule if isinstance(owner, pl.LightningModule) else pl.LightningDataModule
            if hook == "transfer_batch_to_device" or is_overridden(hook, owner, base):
                self._batch_hooks.append((hook, getattr(owner, hook), owner is module))

    def run(self, data_fetcher: Any) -> None:
        try:
            super().run(data_fetcher)
        finally:
            self._val_enabled = None

    # Lightning calls these three on every step; within a lean epoch their answers are fixed (exactly so)
    def _should_check_val_epoch(self) -> bool:
        """Lightning's, with ``enable_validation`` (an ``is_overridden`` inspection) read once per lean epoch."""
        if self._val_enabled is None:
            return super()._should_check_val_epoch()
        every = self.trainer.check_val_every_n_epoch
        return self._val_enabled and (every is None or (self.trainer.current_epoch + 1) % every == 0)

    def _should_accumulate(self) -> bool:
        """False in a lean epoch: ``accumulate_grad_batches`` is 1 (why_not) and one device does not accumulate."""
        return False if self._val_enabled is not None else super()._should_accumulate()

    def update_lr_schedulers(self, interval: str, update_plateau_schedulers: bool) -> None:
        """Lightning's, which does nothing without an LR scheduler (``_update_learning_rates`` returns first)."""
        if self.trainer.lr_scheduler_configs:
            super().update_lr_schedulers(interval, update_plateau_schedulers)

    @staticmethod
    def _as(module: pl.LightningModule, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with ``module._current_fx_name`` set to ``name`` around it, as Lightning's
        ``trainer/call.py`` does (``self.log`` checks where it is called from)."""
        prev = module._current_fx_name
        module._current_fx_name = name
        try:
            return fn(*args, **kwargs)
        finally:
            module._current_fx_name = prev

    def _hook(self, name: str, *args: Any) -> None:
        """The callbacks' and the module's ``name`` hook, where overridden, as Lightning calls them."""
        trainer, module = self.trainer, self.trainer.lightning_module
        callbacks, own = self._callbacks.get(name, ()), self._module_hooks.get(name, False)
        if not callbacks and not own:
            return

        def run() -> None:
            for callback in callbacks:
                getattr(callback, name)(trainer, module, *args)
            if own:
                getattr(module, name)(*args)

        self._as(module, name, run)

    def advance(self, data_fetcher: Any) -> None:
        if self.reason is not None or self.restarting:
            return super().advance(data_fetcher)
        self.val_loop.restarting = False
        trainer, module = self.trainer, self.trainer.lightning_module
        batch, _, __ = next(data_fetcher)
        batch_idx = self.batch_idx + 1
        self.batch_progress.is_last_batch = data_fetcher.done
        for hook, fn, on_module in self._batch_hooks:
            args = (trainer.strategy.root_device, 0) if hook == "transfer_batch_to_device" else (0,)
            batch = self._as(module, hook, fn, batch, *args) if on_module else fn(batch, *args)
        self.batch_progress.increment_ready()
        trainer._logger_connector.on_batch_start(batch)
        if batch is None:  # as Lightning: warn, skip the step, keep the counters
            self._warning_cache.warn("train_dataloader yielded None. If this was on purpose, ignore this warning...")
            batch_output: Any = None
        else:
            self._hook("on_train_batch_start", batch, batch_idx)
            self.batch_progress.increment_started()
            batch_output = self._step(module, trainer.optimizers[0], batch, batch_idx)
        self.batch_progress.increment_processed()
        self.update_lr_schedulers("step", update_plateau_schedulers=False)
        if self._num_ready_batches_reached():
            self.update_lr_schedulers("epoch", update_plateau_schedulers=False)
        self._hook("on_train_batch_end", batch_output, batch, batch_idx)
        results = trainer._results
        if results is None or results:  # something was logged this epoch: Lightning's bookkeeping of step metrics
            trainer._logger_connector.on_batch_end()
            self.batch_progress.increment_completed()
            trainer._logger_connector.update_train_step_metrics()
        else:  # nothing logged: on_batch_end would merge three empty dicts, update_train_step_metrics log nothing
            results.batch, results.batch_size = None, None
            self.batch_progress.increment_completed()

    def _step(self, module: pl.LightningModule, optimizer: Any, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Lightning's automatic optimization of one batch, in its order: ``training_step``, zero-grad, backward,
        ``on_before_optimizer_step``, clipping, the update (which Lightning runs as the optimizer's closure)."""
        trainer, progress = self.trainer, self.automatic_optimization.optim_progress.optimizer
        progress.step.increment_ready()
        with torch.enable_grad():  # as Lightning's closure
            args = (batch, batch_idx) if self._pass_idx else (batch,)
            output = self._as(module, "training_step", module.training_step, *args)
            result = ClosureResult.from_training_step_output(output, 1)
            if result.closure_loss is None:
                self._warning_cache.warn(
                    "`training_step` returned `None`. If this was on purpose, ignore this warning..."
                )
            progress.zero_grad.increment_ready()
            self._hook("on_before_zero_grad", optimizer)
            progress.zero_grad.increment_started()
            optimizer.zero_grad()
            progress.zero_grad.increment_completed()
            if result.closure_loss is not None:
                self._hook("on_before_backward", result.closure_loss)
                result.closure_loss.backward()
                self._hook("on_after_backward")
        self._hook("on_before_optimizer_step", optimizer)
        if self._clip:
            self._as(
                module,
                "configure_gradient_clipping",
                module.configure_gradient_clipping,
                optimizer,
                gradient_clip_val=trainer.gradient_clip_val,
                gradient_clip_algorithm=trainer.gradient_clip_algorithm,
            )
        optimizer.step()
        progress.step.increment_completed()
        return {} if result.loss is None else result.asdict()
