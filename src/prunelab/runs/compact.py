"""Safe export of structured runs: the kept units per group as JSON, and the compacted model rebuilt from it.

Each round of a structured run writes ``rounds/rNN/kept.json`` beside ``model.pt``: for every prunable group its
kind, the layers it spans (producers, norms, consumers and, for ``Linear`` consumers, the input columns per unit)
and the indices of the units it kept. :func:`load_compact` rebuilds the physically smaller model from the run's
config, ``model.pt`` (read with ``torch.load(weights_only=True)``: tensors only, no pickled code) and that file::

    from prunelab.runs.compact import load_compact
    model = load_compact("outputs/runs/digits-mlp/1a2b3c4d5e", round=1)   # an nn.Module in eval mode

Nothing is unpickled, so a run folder from elsewhere can be opened without running its code; the result is
checked against the masks in ``model.pt`` (a unit the JSON keeps must be the one the masks keep).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.runs import files as results

FORMAT = "prunelab.kept/1"


def kept_record(model: nn.Module, groups: list, input_shape: Any, num_classes: int) -> dict[str, Any]:
    """The JSON-ready record of which units each group of ``model`` (masked) keeps."""
    from prunelab.pruning.units import alive_units

    alive = alive_units(model, groups)
    return {
        "format": FORMAT,
        "input_shape": [int(x) for x in input_shape],
        "num_classes": int(num_classes),
        "groups": [
            {
                "key": g.key,
                "kind": g.kind,
                "units": g.out_channels,
                "producers": list(g.producers),
                "batchnorms": list(g.batchnorms),
                "consumers": list(g.consumers),
                "blocks": dict(g.blocks),
                "kept": torch.nonzero(alive[g.key].cpu()).flatten().tolist(),
            }
            for g in groups
        ],
    }


def dense_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A masked model's state_dict as the plain model's: ``x.parametrizations.w.original`` times its masks
    becomes ``x.w``; the mask buffers go."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        name = masking.name_of_original(key)
        if name is not None:  # prunelab registers one Mask per tensor (masks.attach_masks)
            mask = state.get(str(masking.mask_key_of_original(key)))
            out[name] = value if mask is None else value * mask
        elif ".parametrizations." not in f".{key}":
            out[key] = value
    return out


def _groups(record: dict[str, Any]) -> list:
    from prunelab.pruning.groups import UnitGroup

    return [
        UnitGroup(
            g["key"],
            int(g["units"]),
            list(g["batchnorms"]),
            list(g["consumers"]),
            list(g["producers"]),
            {k: int(v) for k, v in g["blocks"].items()},
            g["kind"],
        )
        for g in record["groups"]
    ]


def _read(path: Path, what: str) -> Any:
    if not path.exists():
        raise PrunelabError(
            "load_compact",
            f"{path} does not exist",
            f"give a structured run folder and one of its finished rounds ({what})",
        )
    if path.suffix != ".json":
        return results.load_tensors(path, "load_compact", "rerun the round")
    try:
        return json.loads(path.read_text())
    except Exception as exc:
        raise PrunelabError(
            "load_compact",
            f"cannot read {path} ({type(exc).__name__})",
            "rerun the round: the file is truncated or not prunelab's",
        ) from None


def _kept_indices(spec: Any, units: int, where: Path) -> list[int]:
    """A group's ``kept`` list: distinct integers in 0..units-1 (anything else is a changed file, refused)."""
    kept = spec.get("kept") if isinstance(spec, dict) else None
    ok = isinstance(kept, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in kept)
    if not ok or not kept or len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= units:
        raise PrunelabError(
            "load_compact",
            f"{where} keeps {str(kept)[:60]} in a group of {units} units: not distinct integers in 0..{units - 1}",
            "the round's files were changed after the run: rerun the round",
        )
    return kept


def _checked_groups(record: dict[str, Any], where: Path) -> list:
    try:
        groups = _groups(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PrunelabError(
            "load_compact",
            f"{where} has a malformed group ({type(exc).__name__}: {exc})",
            "the round's files were changed after the run: rerun the round",
        ) from None
    return groups


def load_compact(run_dir: str | Path, round: int) -> nn.Module:
    """The compacted model of ``round`` of a structured run, rebuilt without unpickling (see the module doc)."""
    from prunelab.pruning.units import compact
    from prunelab.runs import trust
    from prunelab.runs.files import round_dir

    run_dir = Path(run_dir)
    rdir = round_dir(run_dir, round)
    record = _read(rdir / "kept.json", "kept.json")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PrunelabError(
            "load_compact", f"{rdir / 'kept.json'} is not a {FORMAT} record", "rerun the round with this prunelab"
        )
    cfg = trust.recorded_config(run_dir)
    state = dense_state(trust.state_dict(rdir / "model.pt"))
    groups = _checked_groups(record, rdir / "kept.json")
    try:
        shape, classes = [int(x) for x in record["input_shape"]], int(record["num_classes"])
    except (KeyError, TypeError, ValueError):
        raise PrunelabError(
            "load_compact",
            f"{rdir / 'kept.json'} has no valid input_shape/num_classes",
            "the round's files were changed after the run: rerun the round",
        ) from None
    model = trust.build_recorded_model(cfg, shape, classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PrunelabError(
            "load_compact",
            f"model.pt does not fit the run's model config ({str(exc)[:120]})",
            "the run folder was changed after the run: rerun it",
        ) from exc
    kept = {g.key: _alive(model, g, spec, rdir / "kept.json") for g, spec in zip(groups, record["groups"], strict=True)}
    return compact(model, groups, kept).eval()


def _alive(model: nn.Module, g: Any, spec: Any, where: Path) -> Tensor:
    """The units ``spec`` (one group of kept.json) keeps, checked against the layer and its masked weights."""
    alive = torch.zeros(g.out_channels, dtype=torch.bool)
    alive[torch.tensor(_kept_indices(spec, g.out_channels, where), dtype=torch.long)] = True
    try:
        param = model.get_submodule(g.key).weight
        assert isinstance(param, Tensor)
        weight = param.detach().flatten(1)
    except (AttributeError, AssertionError):
        raise PrunelabError(
            "load_compact",
            f"{where} names {g.key!r}, not a layer of the model",
            "the round's files were changed after the run: rerun the round",
        ) from None
    if weight.shape[0] != g.out_channels:
        raise PrunelabError(
            "load_compact",
            f"{where} gives {g.key} {g.out_channels} units; the model has {weight.shape[0]}",
            "the round's files were changed: rerun the round",
        )
    if bool(weight[~alive].any()):  # a unit the record drops still has weights: record and weights disagree
        raise PrunelabError(
            "load_compact",
            f"kept.json drops units of {g.key} that model.pt still uses",
            "the round's files do not belong together: rerun the round",
        )
    return alive
