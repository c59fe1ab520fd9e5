"""Pre-registration as a mechanism: a paper's declaration (its claims with their rules, statistics, levels,
margins, sides, minimum n and primary claim; the seeds and sweeps to run) in one canonical form with a hash.

``prunelab reproduce <paper>`` writes ``<out>/declaration.json`` when it starts the runs (never overwriting the one
a previous launch of the same folder recorded). When the table is written, the current declaration is compared
with the recorded one: if they differ, or the runs used other seeds or extra overrides than declared, the table is
labelled **exploratory** and the change is shown.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from prunelab.runs.files import atomic_write_json

FILE = "declaration.json"


def declaration(module: ModuleType) -> dict[str, Any]:
    """The paper's declaration as plain data (claims in their declared order; the sweep as declared)."""
    spec = module.SPEC
    return {
        "claims": [dataclasses.asdict(c) for c in module.CLAIMS],
        "seeds": spec["seeds"],
        "sweeps": spec["sweeps"],
        "population": bool(spec.get("population")),
        "threads": spec.get("threads", 1),
    }


def digest(decl: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(decl, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record(out: Path, module: ModuleType, seeds: int, overrides: list[str]) -> dict[str, Any]:
    """Write ``<out>/declaration.json`` if this folder has none yet (the first launch declares); return the
    recorded one."""
    path = Path(out) / FILE
    if path.exists():
        return json.loads(path.read_text())
    decl = declaration(module)
    data = {
        "hash": digest(decl),
        "declaration": decl,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seeds_run": seeds,
        "overrides": list(overrides),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
    return data


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    old_claims = {c["key"]: c for c in old.get("claims", [])}
    new_claims = {c["key"]: c for c in new.get("claims", [])}
    for key in sorted(set(old_claims) | set(new_claims)):
        a, b = old_claims.get(key), new_claims.get(key)
        if a is None or b is None:
            out.append(f"{key}: {'added' if a is None else 'removed'}")
            continue
        for field in sorted(set(a) | set(b)):
            if a.get(field) != b.get(field):
                out.append(f"{key}.{field}: {a.get(field)!r} -> {b.get(field)!r}")
    for field in ("seeds", "sweeps", "population", "threads"):
        if old.get(field) != new.get(field):
            out.append(f"{field}: {old.get(field)!r} -> {new.get(field)!r}")
    return out


def status(recorded: dict[str, Any] | None, module: ModuleType) -> tuple[bool, list[str]]:
    """(confirmatory, reasons it is not): the recorded declaration against the current one and the declared run."""
    if recorded is None:
        return False, ["no declaration was recorded when these runs started"]
    current = declaration(module)
    reasons = []
    if recorded.get("hash") != digest(current):
        reasons += [f"the declaration changed after the runs started: {c}" for c in _changes(
            recorded.get("declaration", {}), current
        )] or ["the declaration changed after the runs started"]  # fmt: skip
    if recorded.get("seeds_run") != current["seeds"]:
        reasons.append(f"run with {recorded.get('seeds_run')} seeds per setting, declared {current['seeds']}")
    if recorded.get("overrides"):
        reasons.append(f"run with extra overrides {recorded['overrides']}")
    return not reasons, reasons


def section(recorded: dict[str, Any] | None, module: ModuleType) -> list[str]:
    """Markdown: the declaration hash and whether the table is confirmatory, then the history of rule changes."""
    ok, reasons = status(recorded, module)
    current = digest(declaration(module))
    lines = [""]
    if ok:
        lines.append(
            f"**Confirmatory**: declaration {current}, recorded when the runs started "
            f"({(recorded or {}).get('started', '?')}), unchanged since; run as declared."
        )
    else:
        lines.append(f"**Exploratory** (declaration {current}): " + "; ".join(reasons) + ".")
    history = getattr(module, "HISTORY", [])
    if history:
        lines += ["", "<details><summary>History of rule changes</summary>", ""]
        lines += [f"- {h}" for h in history] + ["", "</details>"]
    return lines
