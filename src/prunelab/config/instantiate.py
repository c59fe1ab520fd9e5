"""Objects from config nodes: Hydra's ``instantiate`` with its wrapped errors turned back into one-line
PrunelabErrors. Torch-free (the classes it builds import what they need)."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from prunelab.config.identity import OWN_KEYS
from prunelab.errors import PrunelabError


def make(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(cfg[key])``, with Hydra's wrapped errors turned back into one-line PrunelabErrors."""
    node = cfg[key]
    if OmegaConf.is_dict(node) and any(k in node for k in OWN_KEYS):  # e.g. model.slice_head: prunelab's key
        plain = OmegaConf.to_container(node, resolve=True)
        node = OmegaConf.create({k: v for k, v in plain.items() if k not in OWN_KEYS})  # type: ignore[union-attr]
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, PrunelabError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        inner = exc.__cause__ or exc
        first = (str(inner).strip().splitlines() or [type(inner).__name__])[0]
        raise PrunelabError(
            key, f"cannot build {cfg[key].get('_target_', key)}: {first}", f"check the options under '{key}'"
        ) from exc
