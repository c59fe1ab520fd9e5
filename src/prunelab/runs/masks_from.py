"""Masks taken from another run: ``rewind.masks_from``.

Frankle & Carbin's random-reinitialisation control trains *the winning ticket's own masks* from a fresh
initialisation, once per sparsity level. A run with ``rewind=reinit rewind.masks_from=<folder>`` does exactly that:
round ``r`` installs the masks of round ``r`` of the source run (``rounds/rNN/masks.pt``, checked against the
checksum its ``metrics.json`` recorded) instead of scoring its own weights, then restarts the survivors from its
rewind point. ``<folder>`` is a run folder, or a folder of runs (a sweep) holding exactly one finished run with
this run's seed and model that did not itself take its masks from elsewhere.

What a run computes depends on the masks' *content*, so the run id holds their fingerprint (the recorded SHA-1 of
every round's ``masks.pt``), not the folder's path: a source rerun into the same folder gives another id, and a
moved copy of the source the same one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor

from prunelab.config.names import code_name
from prunelab.errors import PrunelabError
from prunelab.runs import files as results

KEY = "rewind.masks_from"


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        tree = OmegaConf.to_container(OmegaConf.load(run_dir / "run_config.yaml"), resolve=False)
    except Exception:  # unreadable: not a candidate
        return {}
    return {str(k): v for k, v in tree.items()} if isinstance(tree, dict) else {}


def _complete(run_dir: Path) -> bool:
    summary = results.read_json_or_none(run_dir / "summary.json") if (run_dir / "summary.json").exists() else None
    return isinstance(summary, dict) and summary.get("status") == "complete"


def resolve(folder: str | Path, seed: int, model: Any) -> Path:
    """The source run folder for a run with ``seed`` and ``model`` (its resolved model config)."""
    root = Path(str(folder)).expanduser()
    if not root.is_dir():
        raise PrunelabError(KEY, f"{root} is not a folder", "give the ticket run's folder (or its sweep folder)")
    if (root / "run_config.yaml").exists():
        return root
    found, want = [], _named(model)  # classes by name, not by module path (a moved class is the same model)
    for cfg_path in sorted(root.rglob("run_config.yaml")):
        cfg, run = _config(cfg_path.parent), cfg_path.parent
        rewind = cfg.get("rewind")
        rewind = rewind if isinstance(rewind, dict) else {}
        same_model = _named(cfg.get("model")) == want
        if cfg.get("seed") == seed and same_model and not rewind.get("masks_from") and _complete(run):
            found.append(run)
    if len(found) != 1:
        what = "no finished run" if not found else f"{len(found)} finished runs"
        raise PrunelabError(
            KEY,
            f"{root} holds {what} with seed {seed} and this model",
            "give one run folder, or a sweep folder with one finished run per seed",
        )
    return found[0]


def _named(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _named(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_named(v) for v in value]
    return code_name(value) if isinstance(value, str) else value


def rounds(run_dir: Path) -> list[dict]:
    """The source's finished, intact rounds (0, 1, ...), up to the first one that is not."""
    return results.intact_rounds(run_dir, KEY, "rerun the source run (prunelab redoes broken rounds)")


def fingerprint(run_dir: Path) -> str:
    """The SHA-1 over the recorded checksums of the source's ``masks.pt`` files, round by round (cached while the
    source's ``summary.json`` is unchanged: the run id is resolved several times per job)."""
    summary = Path(run_dir) / "summary.json"
    stat = summary.stat() if summary.exists() else None
    key = (str(Path(run_dir).resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _fingerprint(Path(run_dir))
    return _FINGERPRINTS[key]


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def _fingerprint(run_dir: Path) -> str:
    h = hashlib.sha1()
    for row in rounds(run_dir):
        rel = f"rounds/r{row['round']:02d}/masks.pt"
        h.update(f"{rel}:{row['files'].get(rel, {}).get('sha1', 'none')}\n".encode())
    return h.hexdigest()[:16]


def identity_value(rewind: dict[str, Any], seed: Any, model: Any) -> str:
    """What ``masks_from`` contributes to the run id: ``masks:<fingerprint>`` (the path where it cannot be read:
    such a run is refused before it trains)."""
    if rewind.get("masks_sha1"):
        return f"masks:{rewind['masks_sha1']}"
    try:
        return f"masks:{fingerprint(resolve(rewind['masks_from'], int(seed), model))}"
    except (PrunelabError, TypeError, ValueError):
        return f"unresolved:{rewind['masks_from']}"


def pin(cfg: DictConfig) -> None:
    """Record the source's fingerprint in ``cfg.rewind.masks_sha1`` (so the run's recorded config names the masks
    it trained, and a later check of the folder compares contents, not paths)."""
    rewind = cfg.get("rewind")
    if not rewind or not rewind.get("masks_from") or rewind.get("masks_sha1"):
        return
    model = OmegaConf.to_container(cfg.model, resolve=True)
    value = fingerprint(resolve(rewind.masks_from, int(cfg.seed), model))
    with open_dict(cfg):
        cfg.rewind.masks_sha1 = value


def check(run_dir: Path, needed: int) -> None:
    """The source must hold finished rounds 1 .. ``needed - 1`` with masks."""
    have = rounds(run_dir)
    if len(have) < needed:
        raise PrunelabError(
            KEY,
            f"{run_dir} has {len(have)} finished rounds; this run needs {needed}",
            f"finish the source run, or use schedule.rounds={max(len(have) - 1, 0)}",
        )
    missing = [r["round"] for r in have[:needed] if f"rounds/r{r['round']:02d}/masks.pt" not in r["files"]]
    if missing:
        raise PrunelabError(KEY, f"{run_dir} has no masks.pt in round(s) {missing}", "rerun the source run")


def load(run_dir: Path, round_: int) -> dict[str, Tensor]:
    """Round ``round_``'s masks of the source, verified against the checksum its round recorded."""
    row, problem = results.verify_round(run_dir, round_)
    if row is None:
        raise PrunelabError(KEY, f"{run_dir}: {problem or f'round {round_} is not finished'}", "rerun the source run")
    path = results.round_dir(run_dir, round_) / "masks.pt"
    from prunelab.runs.files import load_tensors

    masks = load_tensors(path, KEY, "rerun the source run")
    if not isinstance(masks, dict) or not all(isinstance(v, Tensor) for v in masks.values()):
        raise PrunelabError(KEY, f"{path} is not a dict of mask tensors", "rerun the source run")
    return masks
