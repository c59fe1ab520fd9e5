"""The OmegaConf resolvers of prunelab's configs (``${prunelab_id:}``, ``${prunelab_name:}``,
``${prunelab_group:...}``) and the typed schemas, registered before Hydra composes a config."""

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


def _choices(root: DictConfig) -> dict:
    """The option picked in each config group: from the composed config's ``hydra`` node where it has one (the CLI's
    checks compose with it), else from Hydra's runtime (inside a job); empty outside Hydra."""
    node = OmegaConf.select(root, "hydra.runtime.choices", default=None, throw_on_resolution_failure=False)
    if node is not None:
        return dict(node)
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    except Exception:
        return {}


def _name_resolver(*, _root_: DictConfig) -> str:
    """The default experiment name (``name: ${prunelab_name:}``): the experiment option where one is picked, else
    ``<data>-<model>``, so unrelated studies do not share one folder, report and W&B group."""
    choices = _choices(_root_)
    if choices.get("experiment"):
        return str(choices["experiment"]).replace("/", "_")
    if choices.get("data") and choices.get("model"):
        return f"{choices['data']}-{choices['model']}".replace("/", "_")
    return "default"


def register_resolvers() -> None:
    """The ``prunelab_id`` resolver and the structured config schemas (:mod:`prunelab.config.schemas`); idempotent."""
    if not OmegaConf.has_resolver("prunelab_id"):
        OmegaConf.register_new_resolver("prunelab_id", _resolver)
    if not OmegaConf.has_resolver("prunelab_name"):
        OmegaConf.register_new_resolver("prunelab_name", _name_resolver)
    if not OmegaConf.has_resolver("prunelab_group"):
        OmegaConf.register_new_resolver("prunelab_group", _group_resolver)
    global _SCHEMAS_REGISTERED
    if not _SCHEMAS_REGISTERED:
        from prunelab.config.schemas import register

        register(conf_dir())
        _SCHEMAS_REGISTERED = True


_SCHEMAS_REGISTERED = False
