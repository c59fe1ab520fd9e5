"""Lightning's W&B logger as prunelab uses it (offline by default; see conf/logger/wandb.yaml).

Lightning always passes ``anonymous`` to ``wandb.init``, and wandb >= 0.19 warns on every run that the setting has
no effect; the key is dropped here so that a run prints no stray warning.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


class WandbLogger(_LightningWandbLogger):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
