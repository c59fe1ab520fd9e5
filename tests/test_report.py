"""`prunelab report` on a tiny real multirun with a deliberately failed job."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import cli


def test_report_on_a_multirun_lists_the_failed_job(tmp_path):
    sweep = [
        "-m",
        "seed=0,1",
        "data.val_fraction=0.15,0.999",  # 0.999 fails in the job: it empties digits' training split
        "schedule.rounds=1",
        "trainer.max_epochs=1",
        "logger=none",
        "hydra.sweep.dir=" + str(tmp_path / "sweep"),
    ]
    proc = cli(sweep, tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]  # the sweep finished, but not every job: non-zero exit
    assert "2 of 4 sweep jobs failed" in proc.stderr.strip().splitlines()[-1]
    jobs = [json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").rglob("summary.json")]
    assert sorted(jobs) == ["complete", "complete", "failed", "failed"]  # failing jobs did not stop the sweep
    rep = cli(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    out = tmp_path / "rep"
    for name in (
        "report.md",
        "summary.csv",
        "rounds.csv",
        "class_deltas.csv",
        "runs.csv",
        "metrics_vs_density.png",
        "flops_vs_accuracy.png",
        "class_delta.png",
        "per_class.csv",
        "per_class_recall.png",
        "report.html",
        "figures.json",
    ):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    for col in (
        "population",
        "round",
        "n",
        "sparsity_mean",
        "test/acc_mean",
        "test/acc_std",
        "test/auroc_macro_mean",
        "test/recall_worst_mean",
        "flops_ratio_mean",
    ):
        assert col in rows[0], col
    assert {r["population"] for r in rows} == {"val_fraction=0.15"} and all(r["n"] == "2" for r in rows)
    md = (out / "report.md").read_text()
    assert "Runs not averaged in (2)" in md and "data.val_fraction: 0.999 moves every training example" in md
    with open(out / "class_deltas.csv") as f:
        deltas = list(csv.DictReader(f))
    assert {d["class"] for d in deltas} == {str(c) for c in range(10)} and all(d["n"] == "2" for d in deltas)


def test_report_runs_the_hooker_protocol_on_a_population_sweep(tmp_path):
    sweep = [
        "-m",
        "experiment=hooker_fashion",
        "data=digits",
        "schedule.final_sparsity=0.0,0.8",
        "seed=0,1,2",
        "schedule.begin_step=2",
        "schedule.end_step=20",
        "schedule.frequency=2",
        "trainer.max_epochs=2",
        "quantize=dynamic_int8",
        "logger=none",
        "hydra.sweep.dir=" + str(tmp_path / "sweep"),
    ]
    proc = cli(sweep, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = cli(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    with open(tmp_path / "rep" / "hooker.csv") as f:
        rows = {r["population"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"sparsity 0", "sparsity 0.8", "dynamic_int8 (dense)"}
    assert all(r["models"] == "3" for r in rows.values())
    assert rows["sparsity 0"]["pie_count"] == "0"  # a population never disagrees with itself
    assert "impacted_classes" in rows["sparsity 0.8"] and rows["sparsity 0.8"]["impacted_classes"] != ""
    assert (tmp_path / "rep" / "pie_gallery_sparsity_0.8.png").exists() or rows["sparsity 0.8"]["pie_count"] == "0"
    assert not (tmp_path / "rep" / "pie_gallery.png").exists()  # no unlabelled duplicate of a level's gallery
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Impacted classes" in text and "- sparsity 0.8: " in text  # named, not only counted
    if rows["sparsity 0.8"]["pie_count"] != "0":
        assert "![PIEs of sparsity 0.8](pie_gallery_sparsity_0.8.png)" in text
    # gradual runs have one round: their per-class deltas are against the matched dense run (same seed)
    with open(tmp_path / "rep" / "class_deltas.csv") as f:
        deltas = [d for d in csv.DictReader(f) if d["round"] == "0.8"]
    assert deltas and all(d["n"] == "3" and d["baseline"].startswith("matched dense") for d in deltas)
    final = {}
    for summary in (tmp_path / "sweep").glob("*/summary.json"):
        cfg = OmegaConf.load(summary.parent / "run_config.yaml")
        final[(float(cfg.schedule.final_sparsity), int(cfg.seed))] = json.loads(summary.read_text())["final"]
    diffs = [final[(0.8, s)]["test/recall/3"] - final[(0.0, s)]["test/recall/3"] for s in range(3)]
    (row3,) = [d for d in deltas if d["class"] == "3"]
    assert float(row3["recall_delta_mean"]) == pytest.approx(sum(diffs) / 3, abs=1e-6)
    assert (tmp_path / "rep" / "pies.csv").exists()
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Per-class impact and PIEs" in md


def test_reproduce_entezari_writes_the_paper_table(tmp_path, data_dir):
    out = tmp_path / "repro"
    args = [
        "reproduce",
        "entezari",
        "--out",
        str(out),
        "--seeds",
        "2",
        "--jobs",
        "1",  # the sweep's 8 jobs one after the other (--jobs 2 is exercised by the Hooker test)
        "trainer.max_epochs=1",
        "schedule.rounds=2",
        "trainer.limit_train_batches=6",
        "trainer.limit_val_batches=2",
        "converge.max_epochs=2",
        "converge.patience=1",
    ]
    proc = cli(args, tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "paper.md").read_text()
    for part in ("| weights remaining | scenario |", "Paper vs ours", "## Claims", "Data provenance", "prevalence"):
        assert part in text
    # 2 seeds are fewer than any claim's minimum (6): every verdict is inconclusive, with its figures
    assert text.count("| **inconclusive** |") == 8 and "0 not complete" in text
    assert "| E6 (primary): " in text and "| E1 | secondary |" in text and "95% interval > 0" in text
    assert "**Exploratory** (declaration " in text and "run with 2 seeds per setting, declared 15" in text
    recorded = json.loads((out / "declaration.json").read_text())
    assert recorded["seeds_run"] == 2 and len(recorded["hash"]) == 12
    attempts = [json.loads(line) for p in out.rglob("attempts.jsonl") for line in p.read_text().splitlines()]
    assert {a["torch_threads"] for a in attempts} == {1}  # every job at the declared thread count
    assert "| 25.00% | green | 2 |" in text and (out / "report" / "report.md").exists()
    again = cli(args, tmp_path, data=data_dir)  # a relaunch skips the finished jobs
    assert again.returncode == 0 and again.stdout.count("already complete") == 8


def test_reproduce_hooker_writes_the_paper_table(tmp_path):
    out = tmp_path / "repro"
    proc = cli(
        [
            "reproduce",
            "hooker",
            "--out",
            str(out),
            "--seeds",
            "2",
            "--jobs",
            "2",  # independent populations side by side
            "data=digits",
            "schedule.begin_step=2",
            "schedule.end_step=20",
            "schedule.frequency=2",
            "trainer.max_epochs=2",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "paper.md").read_text()
    assert "| sparsity 0.995 | 2 |" in text and "static_int8 (dense)" in text and "76.675%" in text
    assert "| null (dense, other seeds) | 4 |" in text and "null mean" in text
    assert text.count("| **inconclusive** |") == 8  # 2 models per population: below every minimum
    assert "**Exploratory**" in text and "History of rule changes" in text


def test_notebooks_execute_on_a_tiny_sweep(tmp_path, monkeypatch):
    nbformat = __import__("pytest").importorskip("nbformat")
    nbclient = __import__("pytest").importorskip("nbclient")
    from tests.conftest import REPO

    sweep = [
        "-m",
        "experiment=hooker_fashion",
        "data=digits",
        "schedule.final_sparsity=0.0,0.8",
        "seed=0,1",
        "schedule.begin_step=2",
        "schedule.end_step=20",
        "schedule.frequency=2",
        "trainer.max_epochs=2",
        "logger=none",
        "hydra.sweep.dir=" + str(tmp_path / "sweep"),
    ]
    assert cli(sweep, tmp_path).returncode == 0
    monkeypatch.setenv("PRUNELAB_RUNS", str(tmp_path / "sweep"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("compare_criteria.ipynb", "explore_pies.ipynb"):
        nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs must be stripped"
        nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
        ).execute()
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert "4 runs under" in text


def test_report_logs_tables_and_plots_to_offline_wandb(tmp_path):
    from prunelab.analysis.wandb_offline import read_history, read_run_info, run_files

    sweep = [
        "-m",
        "seed=0,1",
        "schedule.rounds=1",
        "trainer.max_epochs=1",
        "hydra.sweep.dir=" + str(tmp_path / "sweep"),
    ]
    assert cli(sweep, tmp_path).returncode == 0
    rep = cli(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "rep"), "--wandb"], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    (file,) = run_files(tmp_path / "rep")
    job = read_run_info(run_files(tmp_path / "sweep")[0])
    assert job["job_type"] == "sweep" and read_run_info(file)["group"] == job["group"] == "digits-mlp@sweep"
    logged = {k: v for row in read_history(file) for k, v in row.items()}
    # nested values come back flattened: <key>/_type
    assert logged["report/summary/_type"] == "table-file" and logged["report/class_deltas/_type"] == "table-file"
    assert logged["report/summary/nrows"] == 2 and logged["report/plot/metrics_vs_density/_type"] == "image-file"


PAPER_CLAIMS = {"jordao": ["J1", "J2"], "osaku": ["O1"], "lth": ["L1", "L2", "L3", "L4"]}


def test_reproduce_jordao_osaku_and_lth_write_their_tables(tmp_path):
    tiny = [
        "data=digits",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "converge.max_epochs=3",
        "converge.patience=1",
    ]
    cases = (
        ("jordao", ["schedule.rounds=2"], "Compared at round 2", "| L1-norm, layer scope | 2 |"),
        ("lth", ["schedule.rounds=3"], "of weights -> round", "| reinit control (ticket's masks, fresh init) | 3 |"),
        (
            "osaku",
            ["criterion.num_samples=100", "model=cnn_small_bn"],
            "whole-model retraining",
            "| kernel share removed |",
        ),
    )
    for paper, extra, needle, column in cases:
        out = tmp_path / paper
        proc = cli(["reproduce", paper, "--out", str(out), "--seeds", "2", *tiny, *extra], tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        text = (out / "paper.md").read_text()
        assert needle in text and column in text and "0 not complete" in text and "Dense round: trained until" in text
        assert text.count("| **inconclusive** |") == len(PAPER_CLAIMS[paper])  # 2 seeds < 6


def test_report_figures_share_one_colour_scale_and_are_labelled(tmp_path):
    """Issues 15 and 31: one class x sparsity heatmap with the populations side by side on one symmetric (robust)
    scale; axes labelled; the default x-axis is weights remaining (log); report.md opens with what the runs are
    (data, model, criteria, seeds, command) and warns below 5 models a population; "most impacted" lists only
    changes beyond seed noise; per_class.csv is tidy and matches load_run(...).per_class(); report.html is
    self-contained (every figure embedded); `report A B` compares two folders."""
    import base64

    from prunelab import load_run
    from prunelab.analysis.figures import shared_limit

    sweeps = {}
    for crit in ("magnitude", "random"):
        sweeps[crit] = tmp_path / crit
        sweep = ["-m", f"criterion={crit}", "seed=0,1", "schedule.rounds=2", "trainer.max_epochs=2", "logger=none"]
        assert cli([*sweep, "hydra.sweep.dir=" + str(sweeps[crit])], tmp_path).returncode == 0
    rep = cli(["report", str(sweeps["magnitude"]), str(sweeps["random"]), "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0, rep.stderr[-2000:]
    out = tmp_path / "rep"
    manifest = json.loads((out / "figures.json").read_text())
    (heat,) = [f for f in manifest if f["kind"] == "class_delta"]
    assert heat["file"] == "class_delta.png" and heat["populations"] == ["magnitude", "random"]
    with open(out / "class_deltas.csv") as f:
        deltas = [{**d, "recall_delta_mean": float(d["recall_delta_mean"])} for d in csv.DictReader(f)]
    assert heat["vmin"] == -heat["vmax"] and heat["vmax"] == pytest.approx(shared_limit(deltas, "robust"))
    assert (
        shared_limit(deltas, "robust")
        <= shared_limit(deltas, "max")
        == pytest.approx(max(0.01, max(abs(d["recall_delta_mean"]) for d in deltas)))
    )
    assert all(f["xlabel"] and f["ylabel"] for f in manifest if f["kind"] != "metrics")
    (panels,) = [f for f in manifest if f["kind"] == "metrics"]
    assert panels["file"] == "metrics_vs_density.png" and "log" in panels["xlabel"]
    assert "test accuracy" in panels["panels"] and not any("/" in p for p in panels["panels"])
    for f in manifest:
        assert (out / f["file"]).stat().st_size > 5000
    text = (out / "report.md").read_text()
    header = text.split("## Results")[0]
    for cell in ("| data | digits |", "| model | mlp |", "| criterion | magnitude, random |", "| seeds | 0, 1 |"):
        assert cell in header
    assert "`prunelab -m criterion=random seed=0,1 schedule.rounds=2" in header
    assert "fewer than 5 models" in header
    assert "![metrics_vs_density](metrics_vs_density.png)" in text and "beyond seed noise" in text
    assert "| random | " in text.split("beyond seed noise")[1]
    # one short name per population everywhere; the header says which overrides define it
    assert "- **random**: `criterion=random`" in header
    body = text.split("## Results")[1]
    assert "criterion=" not in body and "| magnitude | 1 |" in body
    with open(out / "per_class.csv") as f:
        tidy = list(csv.DictReader(f))
    run = load_run(next(p.parent for p in sweeps["random"].glob("*/results.jsonl")))
    mine = [r for r in tidy if r["run"] == run.path.name]
    assert len(mine) == 3 * 10 and len(tidy) == 4 * 3 * 10  # 4 runs x rounds 0-2 x 10 classes
    table = run.per_class()
    assert [float(r["recall"]) for r in mine] == pytest.approx(list(table["recall"]))
    assert list(table.columns[:3]) == ["round", "sparsity", "class"]
    # per-example analysis of iterative runs: round 0 of each population is its dense population
    hooker = list(csv.DictReader((out / "hooker.csv").read_text().splitlines()))
    assert [h["population"].split(", round")[0] for h in hooker] == ["magnitude"] * 3 + ["random"] * 3
    assert [h["population"].split("round ")[1][0] for h in hooker] == ["0", "1", "2"] * 2 and hooker[0][
        "pie_count"
    ] == "0"
    galleries = sorted(p.name for p in out.glob("pie_gallery_*.png"))
    assert galleries == [
        "pie_gallery_magnitude_round_2_sparsity_0.75.png",
        "pie_gallery_random_round_2_sparsity_0.75.png",
    ]  # each population's last round
    assert "which classes pay" in text.split("Impacted classes")[1]  # says how its list differs from the other
    page = (out / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert (
        len(images) == len([f for f in manifest if f["file"].endswith(".png")]) + len(galleries) and "<table>" in page
    )
    assert all(src.startswith("data:image/png;base64,") for src in images)  # nothing linked: copies alone
    assert base64.b64decode(images[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_bars_of_rates_stay_inside_0_1_and_levels_join_one_curve():
    from prunelab.analysis.figures import _curves, _errors

    rows = [{"test/fnr_mean": 0.05, "test/fnr_std": 0.2}, {"test/fnr_mean": 0.9, "test/fnr_std": 0.3}]
    low, high = _errors(rows, "test/fnr")
    assert list(low) == pytest.approx([0.05, 0.3]) and list(high) == pytest.approx([0.2, 0.1])
    summary = [
        {"population": f"criterion=magnitude, schedule.final_sparsity={s}", "sparsity_mean": s, "test/acc_mean": 0.9}
        for s in (0.0, 0.5, 0.9)
    ]
    assert list(_curves(summary, "test/acc", "sparsity")) == ["criterion=magnitude"]


def test_short_population_names_are_unique_or_stay_full():
    """Issue 31: a population keeps one short name; two that would collide keep their full overrides."""
    from prunelab.analysis.context import short, short_labels

    assert short("criterion=magnitude, schedule.rate=0.5") == "magnitude, rate=0.5"
    labels = {
        Path("a"): "criterion=snip, schedule.rate=0.5",
        Path("b"): "criterion=snip, schedule.rate=0.5",
        Path("c"): "criterion=snip, loss.rate=0.5",
        Path("d"): "criterion=magnitude, schedule.rate=0.5",
    }
    named = short_labels(labels)
    assert named[Path("a")] == named[Path("b")] == "criterion=snip, schedule.rate=0.5"  # "snip, rate=0.5" twice
    assert named[Path("c")] == "criterion=snip, loss.rate=0.5" and named[Path("d")] == "magnitude, rate=0.5"
