"""The report's header: what the runs are (data, model, criterion, schedule, loss, epochs, seeds) and the commands
that made them, read from each run folder's recorded Hydra files as plain data (``.hydra/hydra.yaml``'s choices,
``overrides.yaml``, a sweep's ``multirun.yaml``): nothing in a folder is instantiated or imported."""

from __future__ import annotations

import datetime
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from prunelab.runs.folders import Run

GROUPS = ("data", "model", "criterion", "schedule", "loss", "rewind", "optimizer", "quantize", "experiment")
SMALL_POPULATION = 5  # below this many models per population, spreads and impacted-class lists are noisy


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.exists() else None
    except (OSError, yaml.YAMLError):
        return None


def choices(run: Run) -> dict[str, str]:
    """The option picked in each config group for ``run`` (from its ``.hydra/hydra.yaml``; {} when absent)."""
    tree = _yaml(run.path / ".hydra" / "hydra.yaml")
    picked = (((tree or {}).get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return {k: str(v) for k, v in picked.items() if "/" not in str(k) and v is not None}


def commands(runs: list[Run]) -> list[str]:
    """The command lines behind the runs: a sweep's own (its ``multirun.yaml``), else each run's overrides."""
    out: list[str] = []
    for run in runs:
        sweep = _yaml(run.path.parent / "multirun.yaml")
        task = (((sweep or {}).get("hydra") or {}).get("overrides") or {}).get("task") if sweep else None
        if task is not None:
            line = "prunelab -m " + " ".join(str(t) for t in task)
        else:
            listed = _yaml(run.path / ".hydra" / "overrides.yaml") or []
            line = "prunelab " + " ".join(str(t) for t in listed)
        if line.strip() not in out:
            out.append(line.strip())
    return out


def _values(runs: list[Run], group: str) -> str:
    seen = Counter(choices(r).get(group) for r in runs)
    seen.pop(None, None)
    return ", ".join(sorted(str(v) for v in seen)) or "-"


def _schedules(runs: list[Run]) -> str:
    out = set()
    for r in runs:
        sched = r.config.get("schedule") or {}
        name = choices(r).get("schedule") or str(sched.get("_target_", "-")).rsplit(".", 1)[-1]
        keys = [f"{k}={sched[k]}" for k in ("rounds", "rate", "sparsity") if k in sched]
        out.add(f"{name} ({', '.join(keys)})" if keys else name)
    return "; ".join(sorted(out)) or "-"


def short(population: str) -> str:
    """A population's short name: ``criterion=magnitude, schedule.rate=0.5`` -> ``magnitude, rate=0.5`` (a group
    option names itself; a nested key keeps its last part)."""
    parts = []
    for part in population.split(", "):
        key, eq, value = part.partition("=")
        if not eq:
            parts.append(part)
        elif "." not in key:
            parts.append(value)
        else:
            parts.append(f"{key.rsplit('.', 1)[1]}={value}")
    return ", ".join(parts)


def short_labels(labels: dict[Path, str]) -> dict[Path, str]:
    """One short name per population, used by every table, figure and file name of a report. Where two
    populations would get the same short name, both keep their full override string."""
    full = set(labels.values())
    shortened = {f: short(f) for f in full}
    taken = Counter(shortened.values())
    name = {f: s if taken[s] == 1 else f for f, s in shortened.items()}
    return {path: name[f] for path, f in labels.items()}


def population_sizes(labels: dict[Path, str], runs: list[Run]) -> dict[str, int]:
    complete = [r for r in runs if r.status == "complete"]
    return dict(Counter(labels[r.path] for r in complete))


def section(runs: list[Run], labels: dict[Path, str], roots: list[Path], full: dict[Path, str] | None = None) -> str:
    """Markdown: the header block, the populations (short name -> the overrides that define it, from ``full``),
    and a warning where a population has fewer than ``SMALL_POPULATION`` models."""
    from prunelab import __version__

    complete = [r for r in runs if r.status == "complete"]
    seeds = sorted({r.seed for r in complete if r.seed is not None})
    epochs = sorted({str((r.config.get("trainer") or {}).get("max_epochs")) for r in complete})
    sizes = population_sizes(labels, runs)
    rows = [("folder" + ("s" if len(roots) > 1 else ""), ", ".join(f"`{p}`" for p in roots))]
    rows += [(g, _values(runs, g)) for g in ("data", "model", "criterion", "loss", "rewind")]
    rows += [
        ("schedule", _schedules(runs)),
        ("epochs per round", ", ".join(epochs) or "-"),
        ("seeds", ", ".join(str(s) for s in seeds) or "-"),
        ("runs", f"{len(runs)} ({len(complete)} complete) in {len(sizes)} population(s) of {_range(sizes)} models"),
        ("written", f"{datetime.date.today().isoformat()} by prunelab {__version__}"),
    ]
    lines = ["## What these runs are", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in rows]
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in commands(runs)[:12]]
    lines += _population_lines(labels, full or labels)
    small = sorted(p for p, n in sizes.items() if n < SMALL_POPULATION)
    if small:
        lines += [
            "",
            f"**Warning: {len(small)} population(s) have fewer than {SMALL_POPULATION} models** "
            f"({', '.join(f'{p}: {sizes[p]}' for p in small[:6])}{', ...' if len(small) > 6 else ''}): a standard "
            "deviation from so few seeds is itself uncertain, and differences within about two of them are noise. "
            "Train more seeds (`seed=0,1,2,3,4` or `population=5`) before reading a per-class difference.",
        ]
    return "\n".join(lines) + "\n\n"


def _population_lines(labels: dict[Path, str], full: dict[Path, str]) -> list[str]:
    """The populations and what defines each (only when a short name differs from its overrides)."""
    pairs = sorted({(labels[p], full.get(p, labels[p])) for p in labels})
    if all(a == b for a, b in pairs):
        return []
    out = ["", "Populations (the name every table and figure below uses, and the overrides that define it):", ""]
    return out + [f"- **{a}**: `{b}`" for a, b in pairs]


def _range(sizes: dict[str, int]) -> str:
    if not sizes:
        return "0"
    lo, hi = min(sizes.values()), max(sizes.values())
    return str(lo) if lo == hi else f"{lo}-{hi}"
