"""The round's checkpoint callback: Lightning's ModelCheckpoint, resumable from a moved run folder.

:class:`RoundCheckpoint` rebases the paths a checkpoint recorded when the run folder was moved or copied since (the
best score, the best file and the top-k bookkeeping are kept; Lightning would drop them). The faster variant that
writes an epoch which is both the best and the last once (a hard link) overrides private ModelCheckpoint methods:
it lives in :mod:`prunelab.training.internals` and is chosen by :func:`prunelab.training.fastpaths.round_checkpoint`.
"""

from __future__ import annotations

import os
from typing import Any

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


def _rebase(path: Any, old: str, new: str) -> Any:
    """``path`` under the folder ``old`` as the same name under ``new`` (anything else unchanged)."""
    if not isinstance(path, str) or not path:
        return path
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(old))
    return path if rel.startswith("..") else os.path.join(new, rel)
