"""Reproduction tables in ``docs/reproductions.md`` are written by ``prunelab reproduce <paper> --doc``, never by
hand. Each paper's section sits between ``<!-- reproduce:<paper> begin -->`` and ``<!-- reproduce:<paper> end -->``
and carries a stamp: the commit, the command, and a hash of the code and configs that produce it (``CODE``, the
paper's own modules and its experiment configs). ``tests/test_reproduce_doc.py`` fails when a section's hash
differs from the current code's, unless the section is marked ``<!-- reproduce:<paper> stale -->`` (with the
reason shown).

Each table also states its data file's provenance: official or not (``../shared/data/README.md``), and its md5.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

from prunelab.analysis.papers.common import FASHION, MNIST
from prunelab.config.groups import conf_dir

SRC = Path(__file__).resolve().parents[1]  # src/prunelab
# shared by every paper; each paper adds its module (analysis/papers/<paper>.py: claims, sweeps, table), the files
# its SPEC names under "code" and its experiment configs
CODE = [
    "cli/reproduce.py",
    "analysis/reproduce_doc.py",
    "analysis/claims.py",
    "runs/folders.py",
    "analysis/papers/common.py",
]
OFFICIAL = {**FASHION, **MNIST, "medmnist/pneumoniamnist_reconstructed.npz": "28209eda62fecd6e6a2d98b1501bb15f"}
NOTES = {
    "medmnist/pneumoniamnist_reconstructed.npz": (
        "not the official PneumoniaMNIST release: reassembled from two altered public copies, with the official "
        "split sizes and class counts but not its sample order (../shared/data/README.md). Its test split is "
        "62.5% pneumonia, against 74.2% in the full training split and 16.7% after the 1:5 subsampling here."
    ),
}


def code_hash(paper: str, configs: list[str]) -> str:
    """SHA-1 over the reproduction code, the paper's claim module and its experiment configs."""
    h = hashlib.sha1()
    from prunelab.analysis.papers import registry

    own = [f"analysis/papers/{paper}.py", *registry()[paper].SPEC.get("code", [])]
    files = [SRC / f for f in (*CODE, *own)]
    files += [conf_dir() / "experiment" / f"{c}.yaml" for c in configs]
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


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


def stamp(paper: str, configs: list[str], command: str) -> dict:
    return {"paper": paper, "commit": _commit(), "code": code_hash(paper, configs), "command": command}


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
        f"Written by `{stmp['command']}` at commit {stmp['commit']} (reproduction code {stmp['code']}).\n\n"
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
