"""The round's checkpoint callback: Lightning's ModelCheckpoint, writing an epoch's state to disk once.

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
"""

from __future__ import annotations

import os
from typing import Any
from weakref import proxy

from lightning.pytorch.callbacks import ModelCheckpoint


class RoundCheckpoint(ModelCheckpoint):
    _written: tuple[int, int, str, str] | None = None  # global step, epoch, last_model_path in the state, file

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's key: checkpoints written with it (and by earlier prunelab releases) resume."""
        key = super().state_key
        name = type(self).__qualname__
        return "ModelCheckpoint" + key[len(name) :] if key.startswith(name) else key

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning's, for a run folder that was moved or copied since the checkpoint was written: every path under
        the checkpoint's ``dirpath`` is rebased onto this callback's, so the best score, the best file and the top-k
        bookkeeping are restored (Lightning restores only ``best_model_path`` then, still pointing at the old place,
        and the next epoch would replace the real best). A resumed copy trains exactly as the original would."""
        old, new = state_dict.get("dirpath"), self.dirpath
        if old is None or new is None or os.path.abspath(old) == os.path.abspath(new):
            return super().load_state_dict(state_dict)
        new = str(new)
        rebased = dict(state_dict)
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            rebased[key] = _rebase(state_dict.get(key), old, new)
        best_k = state_dict.get("best_k_models") or {}
        rebased["best_k_models"] = {_rebase(k, old, new): v for k, v in best_k.items()}
        rebased["dirpath"] = self.dirpath
        super().load_state_dict(rebased)

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


def _rebase(path: Any, old: str, new: str) -> Any:
    """``path`` under the folder ``old`` as the same name under ``new`` (anything else unchanged)."""
    if not isinstance(path, str) or not path:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(old))
    return path if rel.startswith("..") else os.path.join(new, rel)


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
