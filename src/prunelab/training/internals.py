"""Every private Lightning and torch name prunelab uses, in this one module (issue 28).

Imported only by :mod:`prunelab.training.fastpaths`, after its version gate (the exact Lightning and torch
releases the bit-identity tests passed on) and inside a ``try``: when the gate is closed or this import fails,
prunelab trains through the public paths (Lightning's own loop, Lightning's checkpoint writes, torch's
parametrization getter) with the same results. Three fast paths:

1. **The lean training-epoch loop** (:class:`LeanEpochLoop`, docs/performance.md P1).
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

2. **The linking checkpoint** (:class:`LinkingCheckpoint`).
A round keeps its best epoch (``best-epochNNN.ckpt``, top-1 by ``monitor.metric``, or every epoch without a monitor)
and its last one (``last.ckpt``, which resumption reads). On an epoch that is both, Lightning serialises and writes
the same state twice: on this machine's disk, the end of a LeNet-300-100 epoch that saves both took 61 ms with
Lightning's ModelCheckpoint and 17 ms with this one (``python -m benchmarks.epoch_overhead --checkpoints``,
docs/performance.md, P1), against an epoch of ~1.4 s. :class:`RoundCheckpoint`
makes the second file a hard link to the first when the two would hold the same bytes: saved at the same global
step and epoch, by this callback, with ``last_model_path`` (part of the saved state) already naming the last file
when the first was written (from a fit's first save on: ``_save_topk_checkpoint``). Every file, linked or written,
is made under a temporary name and moved into place, so a crash leaves the old file or the new one, never a
partial one, and a later write of ``last.ckpt`` replaces the name instead of writing into the file the best
checkpoint shares. A file system without hard links gets a normal write; more than one process gets Lightning's
own save. The files and their content are Lightning's, except that a best file written at a fit's first save
names ``last.ckpt`` in its ``last_model_path`` where Lightning's has "" (prunelab reads only the weights of best
files).

3. **The lean mask property** (:func:`lean_property`, P2): ``original * mask`` read from the modules' dicts
   instead of parametrize's generic getter; an all-ones mask skips the multiply.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast
from weakref import proxy

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
from torch import Tensor
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.nn.utils import parametrize

from prunelab.pruning.masks import Mask
from prunelab.training.checkpoint import RoundCheckpoint

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


# -- 2. the linking checkpoint ---------------------------------------------------------------------------------------
class LinkingCheckpoint(RoundCheckpoint):
    """:class:`~prunelab.training.checkpoint.RoundCheckpoint` that writes an epoch which is both the best and the
    last once: the second file is a hard link to the first (see the module docstring)."""

    _written: tuple[int, int, str, str] | None = None  # global step, epoch, last_model_path in the state, file

    def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
        """Lightning's, with ``last_model_path`` naming ``last.ckpt`` already at a fit's first save (Lightning sets it
        just before it writes ``last.ckpt``, as part of that file's state): the first best file then holds the same
        bytes as the ``last.ckpt`` written with it, and can be linked too."""
        if self.save_last is True and not self.last_model_path and trainer.world_size == 1:
            last = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
            if not self.file_exists(last, trainer):  # the name Lightning's version counter will pick
                self.last_model_path = last
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        if trainer.world_size != 1:
            return super()._save_checkpoint(trainer, filepath)
        step, epoch = trainer.global_step, trainer.current_epoch
        written = self._written
        same = written is not None and written[:3] == (step, epoch, self.last_model_path) and written[3] != filepath
        if not (same and written is not None and _link(written[3], filepath)):
            _write(trainer, filepath, self.save_weights_only)
            self._written = (step, epoch, self.last_model_path, filepath)
        # Lightning's bookkeeping after a save
        self._last_global_step_saved, self._last_checkpoint_saved = step, filepath
        for logger in trainer.loggers:
            logger.after_save_checkpoint(proxy(self))


def _write(trainer: Any, filepath: str, weights_only: bool) -> None:
    """``trainer.save_checkpoint`` to a new file moved over ``filepath``: never into an existing file (fsspec's own
    move copies into it when its temporary file is on another file system; that would write through a link)."""
    tmp = f"{filepath}.tmp-{os.getpid()}"
    try:
        trainer.save_checkpoint(tmp, weights_only)
        os.replace(tmp, filepath)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _link(source: str, target: str) -> bool:
    """``target`` as a hard link to ``source``, moved into place; False where the file system has no hard links."""
    tmp = f"{target}.link-{os.getpid()}"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.link(source, tmp)
        os.replace(tmp, target)
        return True
    except OSError:
        if os.path.lexists(tmp):
            os.remove(tmp)
        return False


# -- 3. the lean mask property ---------------------------------------------------------------------------------------
def _all_kept(mask_mod: Mask, mask: Tensor) -> bool:
    """Whether ``mask`` is all ones, cached on the Mask module until the buffer is replaced or written in place.

    The key is the buffer object, its version counter and its storage address: ``copy_``/``mul_``/``fill_``
    (``set_masks``, ``load_state_dict``) bump the version, ``.to()``, ``_apply`` and assigning a new buffer change
    the object, ``mask.data = ...`` changes the storage.
    With every entry kept, ``original * mask`` equals ``original`` bit for bit (x * 1.0 == x, also for -0.0, inf
    and NaN) and so does its gradient, so a dense round skips the multiply and its backward node (P2 in
    docs/performance.md); a pruned tensor always pays it.
    """
    cached = mask_mod.__dict__.get("_all_kept")
    version = (mask._version, mask.data_ptr())
    if cached is not None and cached[0] is mask and cached[1] == version:
        return cast(bool, cached[2])
    with torch.no_grad():
        dense = bool(mask.all()) if mask.dtype == torch.bool else bool((mask == 1).all())
    mask_mod.__dict__["_all_kept"] = (mask, version, dense)
    return dense


def lean_property(cls: type, attr: str) -> None:
    """Replace parametrize's property for ``attr`` on a parametrized class by a lean one with the same value.

    parametrize's getter walks ``Module.__getattr__``, ``ModuleDict``/``ModuleList`` indexing, two module calls and
    a failing ``hasattr`` per access (~40 us of Python per layer and step on a small CPU, P2 in
    docs/performance.md). When the chain is a single :class:`Mask` the value is ``original * mask``, computed here
    from the modules' dicts. parametrize's own getter still runs whenever it must: its caching context
    (``parametrize.cached()``), scripting, tracing (torch.fx needs its ``getattr`` proxies) and longer chains.
    """
    slow = getattr(cls, attr)
    if getattr(slow.fget, "_prunelab_lean", False):
        return

    def get(self) -> Tensor:
        chain = self._modules["parametrizations"]._modules[attr]
        mods = chain._modules
        if len(mods) != 1 or parametrize._cache_enabled or is_fx_symbolic_tracing() or torch.jit.is_tracing():
            return slow.fget(self)
        orig = chain._parameters.get("original")
        mask_mod = mods["0"]
        mask = mask_mod._buffers.get("mask") if type(mask_mod) is Mask else None
        if orig is None or mask is None:
            return slow.fget(self)
        return orig.view_as(orig) if _all_kept(mask_mod, mask) else orig * mask

    setattr(get, "_prunelab_lean", True)  # noqa: B010 (a marker on a function object)
    setattr(cls, attr, property(get, slow.fset))
