"""Run folders as data: one :class:`Run` type for the report's tables (:func:`find_runs`, :func:`listed_run`: every
folder listed with its status, a broken one never averaged) and for your own code (``prunelab.load_run``,
:mod:`prunelab.runs.api`: refuses a folder that is not intact)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from prunelab.runs import files as results

NOISE_KEYS = ("seed", "data.seed")  # what differs between members of one population
PER_CLASS_METRICS = ("recall", "precision", "fn", "fp", "auroc", "support")  # test/<metric>/<class> in a round


def _class_value(row: dict, metric: str, name: str) -> Any:
    value = row.get(f"test/{metric}/{name}")
    if value is None:
        from prunelab.training.damage import key_name

        value = row.get(f"test/{metric}/{key_name(name)}")
    return value


@dataclass
class Run:
    """A run folder read as data: its recorded config, status and the records of its finished rounds."""

    path: Path
    status: str  # complete | failed | interrupted | running | broken | unknown
    config: dict[str, Any]
    rows: list[dict] = field(default_factory=list)  # one record per finished round (checksums left out)
    error: str | None = None
    classes: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def metrics(self) -> Any:
        """One row per finished round (a pandas DataFrame; a list of dicts when pandas is not installed)."""
        flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in self.rows]
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas comes with the dev extras and most research setups
            return flat
        return pd.DataFrame(flat).set_index("round")

    @property
    def class_safe_sparsity(self) -> float | None:
        """The highest sparsity before the first round that fails ``class_tolerance`` (None: no class verdicts)."""
        from prunelab.training.damage import class_safe_sparsity

        return class_safe_sparsity(self.rows)

    def class_damage(self, round: int = -1) -> Any:
        """Per-class damage of ``round`` against the dense round 0, one row per class: flip, gap, dfnr, dfpr,
        recall_minus_acc, and the same from the dense-vs-dense floor (``floor_*``) where the run has one."""
        from prunelab.training.damage import PER_CLASS_KEYS, key_name

        row = self.rows[round]
        table = []
        for name in self.classes:
            entry: dict[str, Any] = {"class": name}
            for prefix, tag in (("damage", ""), ("floor", "floor_")):
                for key in PER_CLASS_KEYS:
                    value = row.get(f"{prefix}/{key}/{key_name(name)}")
                    if value is not None:
                        entry[tag + key] = value
            table.append(entry)
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return table
        return pd.DataFrame(table).set_index("class")

    def per_class(self) -> Any:
        """A tidy table: one row per (round, class) with the round's sparsity and the class's test recall,
        precision, FN, FP, AUROC and support (a pandas DataFrame; a list of dicts without pandas)."""
        table = [
            {"round": row["round"], "sparsity": row.get("sparsity"), "class": name}
            | {m: _class_value(row, m, name) for m in PER_CLASS_METRICS}
            for row in self.rows
            for name in self.classes
        ]
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return table
        return pd.DataFrame(table)

    def confusion_matrix(self, round: int = -1) -> np.ndarray:
        """Test confusion matrix of ``round``: rows are true classes, columns predictions."""
        return np.asarray(self.rows[round]["confusion_matrix"])

    def predictions(self, round: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Test-set class probabilities ``(n, classes)`` and true labels ``(n,)`` of ``round``."""
        r = self.rows[round]["round"]
        with np.load(results.round_dir(self.path, r) / "predictions.npz") as f:
            return f["probs"], f["labels"]


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, list) else tree}


def _config(path: Path) -> dict[str, Any]:
    for candidate in (path / "run_config.yaml", path / ".hydra" / "config.yaml"):
        if candidate.exists():
            try:
                cfg = OmegaConf.load(candidate)
            except Exception:  # a corrupt file: the run is still listed (its status says why it is not used)
                continue
            try:  # run_config.yaml is recorded resolved; a folder's interpolations are never evaluated
                tree = OmegaConf.to_container(cfg, resolve=candidate.name != "run_config.yaml")
            except Exception:  # unresolvable interpolations (e.g. ${hydra:...}) outside a Hydra run
                tree = OmegaConf.to_container(cfg, resolve=False)
            return {str(k): v for k, v in tree.items()} if isinstance(tree, dict) else {}
    return {}


def listed_run(path: Path) -> Run:
    """A run folder as the report lists it (never raises). A run whose summary says complete is used only if every
    round's files match their recorded checksums; otherwise it is listed as ``broken``, with the reason, and never
    averaged."""
    path = Path(path)
    summary = results.read_json_or_none(path / "summary.json") if (path / "summary.json").exists() else {}
    if not isinstance(summary, dict):
        return Run(path, "broken", _config(path), [], "summary.json is unreadable (corrupt or truncated)")
    status, error, rows = summary.get("status", "unknown"), summary.get("error"), []
    if status == "complete":
        for r in range(int(summary.get("rounds") or 0)):
            row, problem = results.verify_round(path, r)
            if row is None:
                status, error = "broken", problem or f"rounds/r{r:02d} is missing"
                break
            rows.append(results.strip_record(row))
    config = _config(path)
    if config and (path / "run_config.yaml").exists():
        from prunelab.errors import PrunelabError
        from prunelab.runs.trust import check_recorded

        try:  # an edited record that names code: listed, never used
            check_recorded(config)
        except PrunelabError as exc:
            return Run(path, "broken", {}, [], exc.one_line())
    named = summary.get("classes")
    classes = [str(c) for c in named] if isinstance(named, list) else []
    return Run(path, status, config, rows if status == "complete" else [], error, classes)


def find_runs(root: Path) -> list[Run]:
    """Every run folder under ``root`` (a run folder itself, a multirun folder, or an outputs folder)."""
    root = Path(root)
    seen = {p.parent for p in root.rglob("summary.json")} | {p.parent for p in root.rglob("run_config.yaml")}
    seen |= {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    seen = {p for p in seen if not _is_population(p)}  # its members are the runs
    return [listed_run(p) for p in sorted(seen) if not any(part.startswith("wandb") for part in p.parts[-2:])]


def _is_population(path: Path) -> bool:
    """A ``population=K`` job folder: its runs are under ``members/``."""
    if (path / "population_config.yaml").exists():
        return True
    summary = results.read_json_or_none(path / "summary.json")
    return isinstance(summary, dict) and summary.get("kind") == "population"


IGNORED_OVERRIDES = ("seed", "paths.", "hydra.", "logger", "trainer.enable_progress_bar", "+seed")


def overrides(path: Path) -> dict[str, str]:
    """The command-line overrides Hydra recorded for a run (``.hydra/overrides.yaml``), as key -> value."""
    file = Path(path) / ".hydra" / "overrides.yaml"
    try:
        items = OmegaConf.to_container(OmegaConf.load(file)) or [] if file.exists() else []
    except Exception:  # a corrupt record: no overrides known
        items = []
    out = {}
    for item in items:
        key, _, value = str(item).partition("=")
        key = key.lstrip("+~")
        if not key.startswith(IGNORED_OVERRIDES):
            out[key] = value
    return out


def group_labels(runs: list[Run]) -> dict[Path, str]:
    """A label per run: the overrides that differ between runs (seeds ignored), so members of one population
    (same config, other seed) share a label. Falls back to the experiment name."""
    ov = {r.path: overrides(r.path) for r in runs}
    keys = sorted({k for o in ov.values() for k in o})
    varying = [k for k in keys if len({o.get(k, "") for o in ov.values()}) > 1]
    labels = {}
    for run in runs:
        parts = [f"{k}={ov[run.path][k]}" for k in varying if k in ov[run.path]]
        labels[run.path] = ", ".join(parts) or str(run.config.get("name", "all runs"))
    return labels
