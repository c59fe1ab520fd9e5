"""Reproduction tables in ``docs/reproductions.md`` are written by ``prunelab reproduce <paper> --doc``, never by
hand. Each paper's section sits between ``<!-- reproduce:<paper> begin -->`` and ``<!-- reproduce:<paper> end -->``
and carries a stamp: the commit, the command, the declaration hash (:mod:`prunelab.analysis.declaration`), a hash
of **everything that produces the numbers** (``CODE``: every file under ``src/prunelab`` and ``conf/``) and an
environment record (Python, torch, Lightning and numpy versions, CPU model, cores, the declared thread count and
the lockfile's hash). ``tests/test_reproduce_doc.py`` fails when a section's hash differs from the current tree's,
unless the section is marked ``<!-- reproduce:<paper> stale -->`` (with the reason shown). Every ``--doc`` write
also appends its verdicts to ``<doc>.verdicts.jsonl`` (:func:`record_verdicts`), so a verdict that flips between
reruns stays visible.

Each table also states its data file's provenance: official or not (``../shared/data/README.md``), and its md5.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from prunelab.analysis.papers.common import FASHION, MNIST
from prunelab.config.groups import conf_dir

SRC = Path(__file__).resolve().parents[1]  # src/prunelab
LOCKFILE = SRC.parents[1] / "requirements.lock"
SKIP = ("__pycache__", ".pyc", "schema_cache.json")  # derived files (the schema cache is rebuilt from the code)
OFFICIAL = {**FASHION, **MNIST, "medmnist/pneumoniamnist_reconstructed.npz": "28209eda62fecd6e6a2d98b1501bb15f"}
NOTES = {
    "medmnist/pneumoniamnist_reconstructed.npz": (
        "not the official PneumoniaMNIST release: reassembled from two altered public copies, with the official "
        "split sizes and class counts but not its sample order (../shared/data/README.md). Its test split is "
        "62.5% pneumonia, against 74.2% in the full training split."
    ),
}


def tree_files() -> list[tuple[str, Path]]:
    """(name, path) of every file that can change a reproduction's numbers: all of ``src/prunelab`` and
    ``conf/``, in a fixed order."""
    out = []
    for root, tag in ((SRC, "src"), (conf_dir(), "conf")):
        for path in sorted(root.rglob("*")):
            if path.is_file() and not any(s in str(path) for s in SKIP):
                out.append((f"{tag}/{path.relative_to(root).as_posix()}", path))
    return out


def code_hash(paper: str = "", configs: list[str] | None = None) -> str:
    """SHA-1 over every file of the package and its configs (the paper and configs are covered by the tree)."""
    h = hashlib.sha1()
    for name, path in tree_files():
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int | None = None) -> dict:
    """What the numbers also depend on: library versions, the CPU, the thread count, the lockfile."""
    import lightning
    import numpy
    import torch

    lock = hashlib.sha1(LOCKFILE.read_bytes()).hexdigest()[:12] if LOCKFILE.exists() else "none"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "threads": threads,
        "lockfile": lock,
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=10", "HEAD"], cwd=SRC, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=SRC, capture_output=True, text=True
        ).stdout.strip()
        return out + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp(paper: str, configs: list[str], command: str, declaration: str = "", threads: int | None = None) -> dict:
    return {
        "paper": paper,
        "commit": _commit(),
        "code": code_hash(paper, configs),
        "command": command,
        "declaration": declaration,
        "env": environment(threads),
    }


def env_line(env: dict | None) -> str:
    if not env:
        return "Environment: not recorded."
    return (
        f"Environment: Python {env.get('python')}, torch {env.get('torch')}, Lightning {env.get('lightning')}, "
        f"numpy {env.get('numpy')}; {env.get('cpu')}, {env.get('cores')} cores, {env.get('threads')} torch "
        f"thread(s) per job; lockfile {env.get('lockfile')}."
    )


def provenance(files: list[str]) -> str:
    """One line per data file: its md5 and whether it is the official release's."""
    root, lines = Path(os.environ.get("PRUNELAB_DATA_DIR", "data")), ["Data provenance:", ""]
    for data in files:
        path = root / data
        if not path.exists():
            lines.append(f"- `{data}`: not found under the data root, provenance not checked")
            continue
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        verdict = "official (md5 matches)" if md5 == OFFICIAL.get(data) else "**not the official file**"
        lines.append(f"- `{data}` md5 {md5}: {verdict}. {NOTES.get(data, '')}".rstrip())
    return "\n".join(lines)


def _markers(paper: str) -> tuple[str, str]:
    return f"<!-- reproduce:{paper} begin -->", f"<!-- reproduce:{paper} end -->"


def _demote(text: str) -> str:
    """The table's headings two levels down: they sit under the doc's ``## <paper>`` heading."""
    return "\n".join("##" + line if line.startswith("#") else line for line in text.splitlines())


def write_section(doc: Path, paper: str, text: str, stmp: dict) -> None:
    """Replace (or append) the paper's section of ``doc`` with ``text`` and its stamp."""
    begin, end = _markers(paper)
    body = (
        f"{begin}\n<!-- stamp {json.dumps(stmp, sort_keys=True)} -->\n\n"
        f"Written by `{stmp['command']}` at commit {stmp['commit']} (source and config tree {stmp['code']}, "
        f"declaration {stmp.get('declaration') or '-'}). {env_line(stmp.get('env'))}\n\n"
        f"{_demote(text)}\n{end}"
    )
    old = doc.read_text() if doc.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    new = pattern.sub(lambda _: body, old) if pattern.search(old) else f"{old.rstrip()}\n\n{body}\n"
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(doc)


def sections(doc: Path) -> dict[str, dict]:
    """Per paper section of ``doc``: its stamp (or None) and whether it is marked stale."""
    text = doc.read_text()
    out = {}
    for m in re.finditer(r"<!-- reproduce:(\w+) begin -->(.*?)<!-- reproduce:\1 end -->", text, re.S):
        found = re.search(r"<!-- stamp (\{.*?\}) -->", m.group(2))
        out[m.group(1)] = {
            "stamp": json.loads(found.group(1)) if found else None,
            "stale": f"<!-- reproduce:{m.group(1)} stale -->" in m.group(2),
        }
    return out


VERDICT_ROW = re.compile(r"^\| (\w+) \((primary|secondary)\): .*\| \*\*(held|did not hold|inconclusive)\*\* \|$")


def verdicts(text: str) -> dict[str, dict]:
    """The verdicts of a section's claims table: key -> {role, verdict, effect, interval}."""
    out = {}
    for line in text.splitlines():
        m = VERDICT_ROW.match(line)
        if m:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            out[m.group(1)] = {"role": m.group(2), "verdict": m.group(3), "effect": cells[2], "interval": cells[3]}
    return out


def record_verdicts(doc: Path, paper: str, text: str, stmp: dict) -> Path:
    """Append this write's verdicts to ``<doc>.verdicts.jsonl`` (one line per write: nothing is overwritten)."""
    path = doc.with_name(doc.stem + ".verdicts.jsonl")
    line = {
        "paper": paper,
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **{k: stmp.get(k) for k in ("commit", "code", "declaration", "command")},
        "verdicts": verdicts(text),
    }
    with open(path, "a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
    return path


def history(doc: Path, paper: str) -> list[dict]:
    path = doc.with_name(doc.stem + ".verdicts.jsonl")
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in rows if r.get("paper") == paper]


def rules_section() -> str:
    """The doc's "How a verdict is reached", generated from :mod:`prunelab.analysis.claims` (the test checks the doc
    holds exactly this text)."""
    from prunelab.analysis import claims as c

    return "\n".join(
        [
            "- **Declared before the runs** (`prunelab/analysis/papers/<paper>.py`): each claim's wording and where "
            "the paper states it, statistic, level(s), test, threshold, side, smallest effect of interest (margin, "
            "with the paper's words that set it), minimum n, and which claim is the paper's primary one; the seeds, "
            "sweeps and thread count. `prunelab reproduce` records the declaration's hash when its runs start; a "
            "table whose declaration changed since, or that ran with other seeds or extra overrides, is labelled "
            "*exploratory* with the change listed. Each section shows its history of rule changes.",
            f"- **Verdicts**: `{c.HELD}` when the 95% interval lies on the claimed side of the threshold and both "
            f"the t-based and the exact p (sign flips of paired values, permutations of two groups, or the null "
            f"distribution's own) are at most the level; `{c.NOT_HELD}` when the interval excludes the smallest "
            "effect of interest (entirely below threshold + margin for a `>` claim, outside the bounds for an "
            f"equivalence claim), so a null effect can be rejected; `{c.INCONCLUSIVE}` otherwise or with fewer than "
            f"the claim's minimum n (at least {c.MIN_N}: below that no exact sign-flip test reaches "
            f"p < {c.ALPHA}). The MDE column is the smallest true effect beyond the threshold found with "
            f"{c.POWER:.0%} power at that n.",
            f"- **Multiplicity**: one primary claim per paper at one-sided {c.ALPHA:.1%}; the secondaries Holm-"
            f"adjusted as one family at {c.ALPHA:.1%}: at most {2 * c.ALPHA:.0%} chance of any false `held` per "
            "section. A claim over several levels is judged at every level (intersection-union) or, where the paper "
            'says "up to", at some level with Bonferroni over the levels.',
            "- **Intervals**: paired t over seeds where settings share seeds; Welch for independent populations; "
            "for counts (impacted classes, PIEs, the PIE accuracy gap) a second dense population, twice the size, "
            "whose disjoint sub-populations give the figure's distribution when nothing is compressed.",
            "- **Falsifiability** (`tests/test_claims.py`): every rule is fed a synthetic null and must not say "
            "`held` beyond its level, a true effect and must say `held`, a wrong-sign effect and must say "
            "`did not hold`, an effect inside its margin and must say `did not hold`; each paper's levels and "
            "comparisons are pinned by a test.",
        ]
    )


def write_rules(doc: Path) -> None:
    """Replace the doc's generated rules block (between ``<!-- reproduce:rules begin/end -->``), if it has one."""
    if not doc.exists():
        return
    text = doc.read_text()
    pattern = re.compile(r"(<!-- reproduce:rules begin -->\n).*?(\n<!-- reproduce:rules end -->)", re.S)
    if pattern.search(text):
        doc.write_text(pattern.sub(lambda m: m.group(1) + rules_section() + m.group(2), text))
