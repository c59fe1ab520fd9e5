"""docs/reproductions.md holds only generated tables: a section whose stamp does not match the current
reproduction code must be regenerated or marked stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunelab.analysis.reproduce_doc import code_hash, sections, stamp, write_section
from prunelab.cli.reproduce import PAPERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproductions.md"


def problems(doc: Path) -> list[str]:
    found, out = sections(doc), []
    for paper, spec in PAPERS.items():
        sec = found.get(paper)
        if sec is None:
            out.append(f"{paper}: no generated section")
        elif sec["stale"]:
            continue  # shown as stale in the doc, with the command that regenerates it
        elif sec["stamp"] is None:
            out.append(f"{paper}: section has no stamp (hand-written?)")
        elif sec["stamp"]["code"] != code_hash(paper, spec["configs"]):
            out.append(
                f"{paper}: made by reproduction code {sec['stamp']['code']} at {sec['stamp']['commit']}, "
                f"the code is now {code_hash(paper, spec['configs'])}: regenerate or mark stale"
            )
    return out


def test_every_table_in_the_doc_matches_the_current_reproduction_code():
    assert problems(DOC) == []


def test_a_table_from_other_code_is_caught_and_stale_marking_is_explicit(tmp_path):
    doc = tmp_path / "r.md"
    for paper, spec in PAPERS.items():
        write_section(doc, paper, f"# {paper}\n\n| a |\n", stamp(paper, spec["configs"], f"prunelab reproduce {paper}"))
    assert problems(doc) == []
    text = doc.read_text()
    assert "#### entezari" not in text and "### entezari" in text  # headings sit under the doc's ## heading
    code = code_hash("osaku", PAPERS["osaku"]["configs"])
    doc.write_text(text.replace(f'"code": "{code}"', '"code": "0123456789ab"'))
    assert problems(doc) == [
        "osaku: made by reproduction code 0123456789ab at "
        + stamp("osaku", [], "")["commit"]
        + f", the code is now {code}: regenerate or mark stale"
    ]
    doc.write_text(
        doc.read_text().replace(
            "<!-- reproduce:osaku begin -->", "<!-- reproduce:osaku begin -->\n<!-- reproduce:osaku stale -->"
        )
    )
    assert problems(doc) == []


def test_rewriting_a_section_keeps_the_others(tmp_path):
    doc = tmp_path / "r.md"
    doc.write_text("# intro\n")
    write_section(doc, "hooker", "# one\n", {"command": "c", "commit": "x", "code": "a"})
    write_section(doc, "osaku", "# two\n", {"command": "c", "commit": "x", "code": "b"})
    write_section(doc, "hooker", "# three\n", {"command": "c", "commit": "x", "code": "c"})
    text = doc.read_text()
    assert text.startswith("# intro") and "three" in text and "one" not in text and "two" in text
    assert sections(doc)["hooker"]["stamp"]["code"] == "c"


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_code_hash_covers_the_papers_configs(paper):
    configs = PAPERS[paper]["configs"]
    assert code_hash(paper, configs) != code_hash(paper, configs[:-1])
