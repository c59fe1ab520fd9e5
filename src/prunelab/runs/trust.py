"""A run folder is data, never code: the one way prunelab reads what a folder names.

A folder may come from anyone (a colleague's results, a download, a shared scratch disk). Reading it
(``load_model``, ``load_run``, ``prunelab export``, ``prunelab report``, ``rewind.masks_from``, a resume) must not
run anything the folder chooses. Two rules, enforced here and nowhere else:

- :func:`prunelab.runs.files.load_tensors` is the only ``torch.load`` in prunelab. It always passes
  ``weights_only=True`` (tensors and plain containers only: no pickled class or function is ever called) and turns
  every failure into one line that names the file; it never suggests ``weights_only=False``.
- :func:`buildable` is the only way a *recorded* config (``run_config.yaml``) becomes an object. The node's
  ``_target_`` must be one of the options prunelab ships for that group (``conf/<group>/*.yaml``: the allow-list),
  no key below it may start with ``_`` (``_target_``, ``_partial_``, ``_args_``, ...: Hydra would instantiate or
  call them), and every value must be plain data (numbers, strings, booleans, null, lists and mappings of them,
  no ``${...}`` interpolation, which a recorded config never holds since prunelab records it resolved).
  Hydra's ``instantiate`` then only ever sees a prunelab class and literal arguments.

The same refusal applies to a folder with a custom model or dataset of your own (a class outside the shipped
options): rebuild such a model in your own code from ``rounds/rNN/model.pt`` (a plain state_dict).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from prunelab.errors import PrunelabError
from prunelab.runs.files import load_tensors

if TYPE_CHECKING:
    import torch
    from torch import nn

KEY = "run_dir"

# Groups whose recorded node prunelab ever rebuilds from a folder
READ_GROUPS = ("model", "data")


def allowed_targets(group: str) -> frozenset[str]:
    """The ``_target_`` of every option of ``group``: the ones prunelab ships (``conf/<group>/*.yaml``) and your own
    (``PRUNELAB_CONFIG_PATH``: installing an option is what allows a folder to name it)."""
    from prunelab.config.groups import search_dirs

    return _targets(group, tuple(search_dirs()))


@functools.cache
def _targets(group: str, roots: tuple[Path, ...]) -> frozenset[str]:
    targets = set()
    for root in roots:
        for path in sorted((root / group).glob("*.yaml")):
            node: Any = OmegaConf.load(path)
            if OmegaConf.is_dict(node) and isinstance(node.get("_target_"), str):
                targets.add(str(node["_target_"]))
    return frozenset(targets)


def _plain(value: Any, where: str, source: str) -> None:
    """Refuse anything in a recorded value that Hydra or OmegaConf would act on."""
    fix = "do not open this folder with prunelab: its recorded config was edited (rerun the run to get a clean one)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise PrunelabError(where, f"{source} holds a non-text key {key!r}", fix)
            if str(key).startswith("_"):
                raise PrunelabError(
                    f"{where}.{key}",
                    f"{source} holds a Hydra directive ({key}) below the top "
                    "of a recorded option: a folder must not choose code to run",
                    fix,
                )
            _plain(item, f"{where}.{key}", source)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]", source)
    elif isinstance(value, str):
        if "${" in value:
            raise PrunelabError(
                where, f"{source} holds an interpolation ({value[:60]!r}); prunelab records configs resolved", fix
            )
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise PrunelabError(where, f"{source} holds a {type(value).__name__}, not plain data", fix)


def buildable(cfg: DictConfig | dict, group: str, source: str = "run_config.yaml") -> dict[str, Any]:
    """The recorded ``cfg[group]`` as a plain dict that is safe to hand to ``instantiate`` (see the module doc)."""
    node = cfg.get(group) if isinstance(cfg, (dict, DictConfig)) else None
    tree = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    if not isinstance(tree, dict):
        raise PrunelabError(
            group, f"{source} holds no {group} config", "give a folder printed as 'run folder:' by a prunelab run"
        )
    target = tree.get("_target_")
    allowed = allowed_targets(group)
    if target not in allowed:
        raise PrunelabError(
            f"{group}._target_",
            f"{source} names {str(target)[:80]!r}, which is not one of "
            f"prunelab's {group} options: a folder must not choose code to run",
            f"rebuild the model in your own code from rounds/rNN/model.pt (a plain state_dict); "
            f"prunelab rebuilds only {', '.join(sorted(t.rsplit('.', 1)[-1] for t in allowed))}",
        )
    rest = {k: v for k, v in tree.items() if k != "_target_"}
    _plain(rest, group, source)
    return {"_target_": target, **{str(k): v for k, v in rest.items()}}


def check_recorded(cfg: DictConfig | dict, source: str = "run_config.yaml") -> None:
    """Every group prunelab may rebuild from a folder (:data:`READ_GROUPS`) passes :func:`buildable`: a folder whose
    recorded config was edited to name code is refused as a whole, by every reader."""
    for group in READ_GROUPS:
        buildable(cfg, group, source)


def recorded_config(run_dir: Path) -> DictConfig:
    """The run's recorded (resolved) config, ``run_config.yaml``: the identity record a run writes before its first
    round. Hydra's ``.hydra/config.yaml`` is not read: it is unresolved and nothing checked it against the run."""
    path = run_dir / "run_config.yaml"
    if not run_dir.is_dir():
        raise PrunelabError(KEY, f"{run_dir} is not a folder", "give a folder printed as 'run folder:' by a run")
    if path.exists():
        try:
            cfg = OmegaConf.load(path)
        except Exception as exc:
            raise PrunelabError(
                KEY, f"{path} is unreadable ({type(exc).__name__})", "rerun the run: its recorded config is damaged"
            ) from None
        if isinstance(cfg, DictConfig) and "model" in cfg:
            check_recorded(cfg, str(path))
            return cfg
    raise PrunelabError(
        KEY,
        f"{run_dir} is not a prunelab run folder (no readable run_config.yaml)",
        "give a folder printed as 'run folder:' by a run",
    )


def build_recorded_model(cfg: DictConfig, input_shape: Any, num_classes: int) -> nn.Module:
    """The recorded model config rebuilt, only through :func:`buildable` (never the folder's code)."""
    from prunelab.config.instantiate import make

    node = buildable(cfg, "model")
    if "pretrained" in node:  # the weights come from model.pt: never download ImageNet weights here
        node["pretrained"] = False
    return make(
        OmegaConf.create({"model": node}),
        "model",
        input_shape=tuple(input_shape),
        num_classes=int(num_classes),
        _convert_="all",
    )


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A round's ``model.pt`` (tensors only, :func:`prunelab.runs.files.load_tensors`), checked to be a state_dict."""
    import torch

    state = load_tensors(path, KEY, "rerun the same command: prunelab redoes that round")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise PrunelabError(KEY, f"{path} is not a state_dict (names to tensors)", "rerun the run that wrote it")
    return state
