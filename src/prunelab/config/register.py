"""The OmegaConf resolvers of prunelab's configs (``${prunelab_id:}``, ``${prunelab_group:...}``) and the typed schemas,
registered before Hydra composes a config."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from prunelab.config.groups import conf_dir
from prunelab.config.identity import run_id


def _resolver(*, _root_: DictConfig) -> str:
    return run_id(_root_)


def _group_resolver(name: str) -> str:
    """W&B group: the experiment name; in a multirun, the sweep (its folder) too, so one sweep is one group."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        if hc.mode is not None and hc.mode.name == "MULTIRUN":
            folder = Path(str(hc.sweep.dir)).name
            return name if folder == name else f"{name}@{folder}"[:128]
    except Exception:  # no Hydra runtime (tests composing directly)
        pass
    return name


def register_resolvers() -> None:
    """The ``prunelab_id`` resolver and the structured config schemas (:mod:`prunelab.config.schemas`); idempotent."""
    if not OmegaConf.has_resolver("prunelab_id"):
        OmegaConf.register_new_resolver("prunelab_id", _resolver)
    if not OmegaConf.has_resolver("prunelab_group"):
        OmegaConf.register_new_resolver("prunelab_group", _group_resolver)
    global _SCHEMAS_REGISTERED
    if not _SCHEMAS_REGISTERED:
        from prunelab.config.schemas import register

        register(conf_dir())
        _SCHEMAS_REGISTERED = True


_SCHEMAS_REGISTERED = False
