"""Use a run in your own code: ``prunelab.load_model`` and ``prunelab.load_run``.

    import prunelab
    model = prunelab.load_model("outputs/runs/digits-mlp/1efe7b9747")            # last round, masks folded in
    small = prunelab.load_model(run_dir, round=1, compact=True)             # structured runs: physically smaller
    run = prunelab.load_run(run_dir)
    run.metrics                 # one row per round (pandas DataFrame): sparsity, test/acc, test/recall/<class>, ...
    probs, labels = run.predictions(round=1)

Neither loads the dataset: the architecture comes from the run's recorded config and ``data.json`` (input shape
and classes), the weights from ``rounds/rNN/model.pt`` read with ``torch.load(weights_only=True)`` after the
round's files are checked against the checksums its ``metrics.json`` recorded. A changed, truncated or missing
file is refused with one line naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from prunelab.errors import PrunelabError
from prunelab.runs import files as results
from prunelab.runs import trust
from prunelab.runs.folders import Run

KEY = "run_dir"


def _data_record(run_dir: Path) -> dict[str, Any]:
    record = results.read_json_or_none(run_dir / "data.json") if (run_dir / "data.json").exists() else None
    if not isinstance(record, dict) or "input_shape" not in record or "classes" not in record:
        raise PrunelabError(
            KEY,
            f"{run_dir / 'data.json'} is missing or unreadable",
            "rerun the run: the data record gives the model's input shape and classes",
        )
    return record


def _rounds(run_dir: Path) -> list[dict]:
    return results.intact_rounds(run_dir, KEY, "rerun the same command: prunelab redoes that round")


def _round(run_dir: Path, round: int) -> tuple[int, list[dict]]:
    rows = _rounds(run_dir)
    if not rows:
        raise PrunelabError(KEY, f"{run_dir} has no finished round", "let the run finish (or resume it) first")
    r = len(rows) + round if round < 0 else round
    if not 0 <= r < len(rows):
        raise PrunelabError(
            "round",
            f"round {round} is not among the finished rounds 0..{len(rows) - 1}",
            f"use a round in 0..{len(rows) - 1} (or -1 for the last)",
        )
    return r, rows


def load_model(run_dir: str | Path, round: int = -1, compact: bool = False) -> nn.Module:
    """The model of ``round`` (default: the last finished one) as a plain ``nn.Module`` in eval mode: masks folded
    into the weights (pruned entries are exact zeros), or with ``compact=True`` (structured runs) the physically
    compacted model whose outputs equal the masked model's."""
    from prunelab.runs.compact import dense_state, load_compact

    run_dir = Path(run_dir)
    cfg = trust.recorded_config(run_dir)
    r, _ = _round(run_dir, round)
    rdir = results.round_dir(run_dir, r)
    if compact:
        if not (rdir / "kept.json").exists():
            raise PrunelabError(
                "compact",
                f"{run_dir} pruned single weights (no kept.json): nothing to compact",
                "use compact=False, or a structured criterion (e.g. l1_filter)",
            )
        return load_compact(run_dir, r)
    record = _data_record(run_dir)
    model = trust.build_recorded_model(cfg, record["input_shape"], len(record["classes"]))
    state = dense_state(trust.state_dict(rdir / "model.pt"))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PrunelabError(
            KEY,
            f"{rdir / 'model.pt'} does not fit the run's model config ({str(exc)[:100]})",
            "the run folder was changed after the run: rerun it",
        ) from exc
    return model.eval()


def load_run(run_dir: str | Path) -> Run:
    """The run's config, classes, status and every finished round's record (checked against its checksums; a folder
    that is not intact is refused on one line)."""
    run_dir = Path(run_dir)
    cfg = trust.recorded_config(run_dir)
    record = _data_record(run_dir)
    summary = results.read_json_or_none(run_dir / "summary.json") if (run_dir / "summary.json").exists() else None
    status = summary.get("status", "unknown") if isinstance(summary, dict) else "unknown"
    tree = OmegaConf.to_container(cfg, resolve=False)
    config = json.loads(json.dumps(tree, default=str)) if isinstance(tree, dict) else {}
    rows = [results.strip_record(r) for r in _rounds(run_dir)]
    return Run(run_dir, status, config, rows, None, [str(c) for c in record["classes"]])
