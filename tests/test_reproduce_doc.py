"""docs/reproductions.md holds only generated tables: a section whose stamp does not match the current
source and config tree must be regenerated, and a section marked stale is a failure too, so main carries every paper
current, from one tree."""

from __future__ import annotations

from pathlib import Path

from prunelab.analysis import reproduce_doc
from prunelab.analysis.reproduce_doc import code_hash, rules_section, sections, stamp, write_section
from prunelab.cli.reproduce import PAPERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproductions.md"


def problems(doc: Path) -> list[str]:
    found, out = sections(doc), []
    for paper, spec in PAPERS.items():
        sec = found.get(paper)
        if sec is None:
            out.append(f"{paper}: no generated section")
        elif sec["stale"]:
            out.append(
                f"{paper}: marked stale: regenerate it with `prunelab reproduce {paper} --doc docs/reproductions.md`"
            )
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


def test_every_section_comes_from_one_tree_under_a_declaration():
    found = sections(DOC)
    stamps = {paper: found[paper]["stamp"] for paper in PAPERS if found.get(paper) and found[paper]["stamp"]}
    assert set(stamps) == set(PAPERS)
    assert len({s["code"] for s in stamps.values()}) == 1, {p: s["code"] for p, s in stamps.items()}
    assert all(s.get("declaration") and s.get("env") for s in stamps.values())


def test_the_docs_verdict_rules_are_the_generated_text():
    text = DOC.read_text()
    block = text.split("<!-- reproduce:rules begin -->\n")[1].split("\n<!-- reproduce:rules end -->")[0]
    assert block == rules_section()


def test_the_stamp_covers_every_source_and_config_file_and_the_environment(tmp_path, monkeypatch):
    names = {n for n, _ in reproduce_doc.tree_files()}
    for needed in ("src/training/module.py", "src/pruning/criteria/magnitude.py", "src/data/base.py",
                   "conf/config.yaml", "conf/experiment/hooker_fashion.yaml"):  # fmt: skip
        assert needed in names, needed
    fake = tmp_path / "a.py"
    fake.write_text("x = 1\n")
    monkeypatch.setattr(reproduce_doc, "tree_files", lambda: [("src/a.py", fake)])
    before = code_hash()
    fake.write_text("x = 2\n")
    assert code_hash() != before
    env = stamp("osaku", [], "c", "abc", 1)["env"]
    assert {"torch", "lightning", "numpy", "cpu", "cores", "threads", "lockfile"} <= set(env) and env["threads"] == 1
    assert env["lockfile"] != "none"  # requirements.lock is in the repository


def test_verdicts_are_kept_per_write_and_flips_are_shown(tmp_path):
    from prunelab.cli.reproduce import history_lines

    doc = tmp_path / "r.md"
    row = "| E1 (primary): a (b) | s | +0.1 | [+0.0, +0.2] | 0.1 | 0.1 | 0.1 | 0.1 | - | 8 seeds | **{v}** |"
    reproduce_doc.record_verdicts(doc, "entezari", row.format(v="held"), {"commit": "c1"})
    assert history_lines(doc, "osaku", "") == ["", "Verdict history: this is the first recorded write of this section."]
    lines = "\n".join(history_lines(doc, "entezari", row.format(v="inconclusive")))
    assert "at c1" in lines and "E1 held (**now inconclusive**)" in lines
    reproduce_doc.record_verdicts(doc, "entezari", row.format(v="inconclusive"), {"commit": "c2"})
    assert [h["verdicts"]["E1"]["verdict"] for h in reproduce_doc.history(doc, "entezari")] == ["held", "inconclusive"]


def test_a_table_from_other_code_is_caught_and_stale_marking_is_explicit(tmp_path):
    doc = tmp_path / "r.md"
    for paper, spec in PAPERS.items():
        write_section(doc, paper, f"# {paper}\n\n| a |\n", stamp(paper, spec["configs"], f"prunelab reproduce {paper}"))
    assert problems(doc) == []
    text = doc.read_text()
    assert "#### entezari" not in text and "### entezari" in text  # headings sit under the doc's ## heading
    code = code_hash("osaku", PAPERS["osaku"]["configs"])
    osaku = f'"code": "{code}", "command": "prunelab reproduce osaku"'
    doc.write_text(text.replace(osaku, osaku.replace(code, "0123456789ab")))
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
    assert problems(doc) == [
        "osaku: marked stale: regenerate it with `prunelab reproduce osaku --doc docs/reproductions.md`"
    ]


def test_rewriting_a_section_keeps_the_others(tmp_path):
    doc = tmp_path / "r.md"
    doc.write_text("# intro\n")
    write_section(doc, "hooker", "# one\n", {"command": "c", "commit": "x", "code": "a"})
    write_section(doc, "osaku", "# two\n", {"command": "c", "commit": "x", "code": "b"})
    write_section(doc, "hooker", "# three\n", {"command": "c", "commit": "x", "code": "c"})
    text = doc.read_text()
    assert text.startswith("# intro") and "three" in text and "one" not in text and "two" in text
    assert sections(doc)["hooker"]["stamp"]["code"] == "c"


def test_jobs_run_a_sweeps_jobs_in_parallel_workers_at_the_declared_threads(tmp_path):
    """``--jobs 2``: a sweep of several jobs gets the local_parallel launcher with two workers, each job at the
    declared thread count; ``--jobs 1`` (and a one-job sweep) keeps Hydra's basic launcher. The end-to-end runs of
    both launchers are in tests/test_sweeps.py and tests/test_report.py."""
    from prunelab.cli.reproduce import _commands

    spec = PAPERS["entezari"]
    parallel = _commands(spec, 2, tmp_path, [], sequential=False, jobs=2)
    serial = _commands(spec, 2, tmp_path, [], sequential=False, jobs=1)
    assert len(parallel) == len(serial) == len(spec["sweeps"])
    for (_, par), (_, ser) in zip(parallel, serial):
        assert "hydra/launcher=local_parallel" in par and "hydra.launcher.n_jobs=2" in par
        assert f"threads={spec.get('threads', 1)}" in par and f"threads={spec.get('threads', 1)}" in ser
        assert not any(a.startswith("hydra/launcher") for a in ser)
    one_job = _commands(PAPERS["hooker"], 2, tmp_path, [], sequential=False, jobs=2)  # a population per setting
    assert not any(a.startswith("hydra/launcher") for _, cmd in one_job for a in cmd)


def _summary_tool():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "reproductions_summary.py"
    spec = importlib.util.spec_from_file_location("reproductions_summary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_summary_is_the_generated_one():
    """The summary at the top of docs/reproductions.md (state, stamp, declaration, launch time, verdicts per paper)
    is exactly what tools/reproductions_summary.py makes of the sections: no hand-written reading of the verdicts."""
    tool = _summary_tool()
    assert tool.summary(DOC) in DOC.read_text(), "run: python tools/reproductions_summary.py"
    assert "## Reading the verdicts" not in DOC.read_text()


def test_the_summary_follows_the_sections(tmp_path):
    tool = _summary_tool()
    doc = tmp_path / "r.md"
    doc.write_text("# t\n\n<!-- reproduce:summary begin -->\n<!-- reproduce:summary end -->\n")
    text = "x\n\n| C1 (primary): a claim | s | +1 | [0, 2] | 0.01 | 0.01 | 0.01 | 1 | - | 6 | **held** |\n"
    text += "\n**Confirmatory**: declaration abc\n\n12 runs, 0 not complete. "
    text += "Training and evaluation recorded in the runs: 3605 s (sum); this launch: 125 s (x).\n"
    write_section(
        doc,
        "lth",
        text,
        {"code": "c0de", "commit": "abc", "declaration": "d1", "paper": "lth", "command": "prunelab reproduce lth"},
    )
    tool.write(doc)
    out = doc.read_text()
    assert (
        "| lth | current | abc (c0de) | d1, confirmatory | 12 runs (0 not complete); 60 min 5 s recorded in the runs; "
        "this launch 2 min 5 s | C1 (primary) held |" in out
    )
    doc.write_text(
        out.replace("<!-- reproduce:lth begin -->", "<!-- reproduce:lth begin -->\n<!-- reproduce:lth stale -->")
    )
    tool.write(doc)
    assert (
        "| lth | **stale** (old rules) | abc (c0de) | d1, confirmatory | superseded | superseded |" in doc.read_text()
    )
    assert "No section is current." in doc.read_text()
