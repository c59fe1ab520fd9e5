"""``prunelab report <folder>``: tables (Markdown, CSV) and plots (PNG) over the runs in a folder.

Per population (runs whose configs differ only in the seed) and round: mean and standard deviation over seeds of
accuracy, macro AUROC, worst-class recall, FNR/FPR (binary tasks), sparsity and FLOPs; per-class recall change
against the matched dense baseline (round 0 of the same run); plots of the metrics against sparsity (or density,
or FLOPs), a classes x sparsity heatmap of recall change per population, and FLOPs against accuracy. Failed and
incomplete runs are listed and never averaged in.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunelab.analysis import class_damage
from prunelab.config.identity import IDENTITY_KEYS
from prunelab.runs import files as results
from prunelab.runs.folders import Run, find_runs, group_labels

log = logging.getLogger("prunelab")

METRICS = ["test/acc", "test/auroc_macro", "test/recall_worst", "test/fnr", "test/fpr", "flops_ratio"]
X_AXES = {
    "density": ("sparsity", "weights remaining"),
    "sparsity": ("sparsity", "sparsity"),
    "flops": ("flops_ratio", "FLOPs (share of dense)"),
}


def _stats(values: Sequence[float | None]) -> tuple[float, float]:
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return float("nan"), float("nan")
    return statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0


def aggregate(runs: list[Run], labels: dict[Path, str]) -> list[dict]:
    """One row per (population, round): mean and std over complete runs."""
    by_key: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        if run.status != "complete":
            continue
        for row in run.rows:
            by_key.setdefault((labels[run.path], row["round"]), []).append(row)
    table = []
    for (label, rnd), rows in sorted(by_key.items()):
        out = {"population": label, "round": rnd, "n": len(rows)}
        for key in ["sparsity", *METRICS]:
            if any(key in r for r in rows):
                out[f"{key}_mean"], out[f"{key}_std"] = _stats([r.get(key) for r in rows])
        table.append(out)
    return table


SPARSITY_KEYS = ("final_sparsity", "sparsity")  # the schedule keys that set a single-fit run's target sparsity


def _without_sparsity(run: Run) -> str:
    cfg = {k: v for k, v in run.config.items() if k in IDENTITY_KEYS}
    cfg["schedule"] = {k: v for k, v in (cfg.get("schedule") or {}).items() if k not in SPARSITY_KEYS}
    return json.dumps(cfg, sort_keys=True, default=str)


def dense_matches(runs: list[Run]) -> dict[Path, Run]:
    """Single-round (in-fit, e.g. gradual) compressed runs → their matched dense run: the same config and seed
    with the schedule's target sparsity at 0. Multi-round runs are matched with their own round 0 instead."""
    complete = [r for r in runs if r.status == "complete" and r.rows]
    dense = {_without_sparsity(r): r for r in complete if len(r.rows) == 1 and r.rows[0].get("sparsity", 1) == 0}
    sparse = [r for r in complete if len(r.rows) == 1 and r.rows[0].get("sparsity", 0) > 0]
    return {r.path: dense[key] for r in sparse if (key := _without_sparsity(r)) in dense}


def _drop_sparsity_label(label: str) -> str:
    parts = [p for p in label.split(", ") if not any(p.startswith(f"schedule.{k}=") for k in SPARSITY_KEYS)]
    return ", ".join(parts) or "single-fit runs"


def class_deltas(runs: list[Run], labels: dict[Path, str]) -> list[dict]:
    """Per population, level and class: mean recall change against the matched dense baseline. For multi-round
    runs the baseline is round 0 of the same run (level = round); for single-fit runs (gradual schedules) it is
    the dense run with the same config and seed (level = target sparsity; population = label without it)."""
    acc: dict[tuple[str, Any, str], list[float]] = {}
    sparsity: dict[tuple[str, Any], list[float]] = {}
    baseline: dict[str, str] = {}
    matched = dense_matches(runs)
    for run in runs:
        if run.status != "complete" or not run.rows:
            continue
        if run.path in matched:
            pop, dense = _drop_sparsity_label(labels[run.path]), matched[run.path].rows[-1]
            pairs = [(round(float(run.rows[0]["sparsity"]), 4), run.rows[0])]
            baseline[pop] = "matched dense run (same config and seed, sparsity 0)"
        else:
            pop, dense = labels[run.path], run.rows[0]
            pairs = [(row["round"], row) for row in run.rows[1:]]
            baseline.setdefault(pop, "round 0 of the same run")
        for level, row in pairs:
            sparsity.setdefault((pop, level), []).append(row["sparsity"])
            for key, value in row.items():
                if key.startswith("test/recall/") and dense.get(key) is not None and value is not None:
                    acc.setdefault((pop, level, key[12:]), []).append(value - dense[key])
    return [
        {
            "population": p,
            "round": r,
            "class": c,
            "sparsity": statistics.fmean(sparsity[(p, r)]),
            "recall_delta_mean": _stats(v)[0],
            "recall_delta_std": _stats(v)[1],
            "n": len(v),
            "baseline": baseline[p],
        }
        for (p, r, c), v in sorted(acc.items(), key=lambda kv: (kv[0][0], float(kv[0][1]), kv[0][2]))
    ]


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(mean: float | None, std: float | None, n: int = 1) -> str:
    """``mean ± std`` whenever there are several runs (a zero spread is shown, so n > 1 never reads as n = 1)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.4f} ± {std or 0.0:.4f}" if n > 1 else f"{mean:.4f}"


def markdown(summary: list[dict], runs: list[Run], header: str = "") -> str:
    cols = [m for m in ["sparsity", *METRICS] if any(f"{m}_mean" in r for r in summary)]
    lines = [
        "# prunelab report",
        "",
        header.rstrip("\n"),
        "",
        "## Results per population and round (mean ± std over seeds)",
        "",
        "| population | round | n | " + " | ".join(cols) + " |",
        "|" + "---|" * (3 + len(cols)),
    ]
    for r in summary:
        cells = [_fmt(r.get(f"{c}_mean"), r.get(f"{c}_std"), int(r["n"])) for c in cols]
        lines.append(f"| {r['population']} | {r['round']} | {r['n']} | " + " | ".join(cells) + " |")
    bad = [r for r in runs if r.status != "complete"]
    lines += ["", f"## Runs not averaged in ({len(bad)})", ""]
    if bad:
        lines += ["| run | status | error |", "|---|---|---|"]
        lines += [f"| {r.path.name} | {r.status} | {(r.error or '-').replace('|', '/')} |" for r in bad]
    else:
        lines.append("None: every run is complete.")
    tuned = [r for r in runs if r.config.get("tune_on_test") and str(r.config.get("objective", "")).startswith("test/")]
    if tuned:  # a sweeper may have chosen these settings by their test figures: their test/ columns are optimistic
        lines += [
            "",
            f"## Runs tuned on the test set ({len(tuned)})",
            "",
            "Their sweep optimised a test/ objective (`tune_on_test=true`): test figures are optimistic.",
            "",
        ]
        lines += [f"- {r.path.name}: objective {r.config.get('objective')}" for r in tuned]
    return "\n".join(lines) + "\n"


def plots(
    summary: list[dict], deltas: list[dict], tidy: list[dict], out: Path, x_axis: str, scale: str = "robust"
) -> list[Path]:
    """The report's figures (:mod:`prunelab.analysis.figures`): metrics, FLOPs, one class x sparsity heatmap with
    the populations side by side on one colour scale, per-class recall over sparsity."""
    from prunelab.analysis import figures

    figures.MANIFEST.clear()
    files = [figures.metric_panels(summary, out, x_axis)]
    if any("flops_ratio_mean" in r for r in summary):
        files.append(figures.flops_accuracy(summary, out))
    if deltas:
        files.append(figures.class_delta_grid(deltas, out, figures.shared_limit(deltas, scale)))
    recall = figures.per_class_recall(tidy, out)
    if recall is not None:
        files.append(recall)
    (out / "figures.json").write_text(json.dumps(figures.MANIFEST, indent=1))  # what each PNG shows
    return files


def figures_section(files: list[Path], deltas: list[dict], scale: str = "robust") -> str:
    """Markdown: the figures with captions, and per population the classes whose recall fell beyond seed noise."""
    from prunelab.analysis import figures

    captions = {
        "metrics_vs_density": "Mean over each population's seeds; bars: ± one standard deviation.",
        "flops_vs_accuracy": "FLOPs of the kept model against test accuracy (mean ± std over seeds).",
    }
    lines = ["", "## Figures", ""]
    for p in files:
        if p.suffix == ".png" and p.stem not in ("class_delta", "per_class_recall"):
            lines += [f"![{p.stem}]({p.name})", "", captions.get(p.stem, ""), ""]
    if deltas:
        n = sorted({int(d.get("n") or 1) for d in deltas})
        lim = figures.shared_limit(deltas, scale)
        lines += [
            "",
            "## Per class: which classes pay",
            "",
            f"Recall change against the dense baseline ({deltas[0]['baseline']}), mean over n = "
            f"{'-'.join(str(v) for v in (n[0], n[-1]) if v is not None) if len(n) > 1 else n[0]} seeds per "
            f"population; one colour scale for every panel (±{lim:.2f}, {scale}: "
            + ("the largest change" if scale == "max" else "95th percentile of |change|; larger ones saturate")
            + "); hatched cells: |mean| below the seed-to-seed standard deviation (noise). Per cell mean and std "
            "are in `class_deltas.csv`.",
            "",
            "| population | classes whose recall fell beyond seed noise at its sparsest level (mean change) | "
            "weights remaining |",
            "|---|---|---|",
        ]
        for pop, worst in figures.most_impacted(deltas).items():
            names = ", ".join(f"{c} ({d:+.3f})" for c, d, _ in worst)
            single = all(int(d.get("n") or 1) < 2 for d in deltas if d["population"] == pop)
            empty = "- (one seed: no noise estimate)" if single else "- (none beyond noise)"
            lines.append(f"| {pop} | {names} | {worst[0][2]:.3g} |" if worst else f"| {pop} | {empty} | - |")
        lines += [""] + [f"![{p.stem}]({p.name})" for p in files if p.stem == "class_delta"]
    if any(p.stem == "per_class_recall" for p in files):
        lines += [
            "",
            "### Per-class recall over sparsity",
            "",
            "![per_class_recall](per_class_recall.png)",
            "",
            "Each class's test recall (mean over seeds, band ± std) as weights are removed; the tidy table behind it is"
            " `per_class.csv` (one row per run, round and class; `prunelab.load_run(folder).per_class()` gives the "
            "same for one run).",
        ]
    return "\n".join(lines) + "\n"


def tidy_per_class(runs: list[Run], labels: dict[Path, str]) -> list[dict]:
    """``per_class.csv``: one row per complete run, round and class (population, seed, sparsity, test recall,
    precision, FN, FP, AUROC, support)."""
    out = []
    for run in runs:
        if run.status != "complete":
            continue
        table = run.per_class()
        records = table.to_dict("records") if hasattr(table, "to_dict") else table
        out += [{"run": run.path.name, "population": labels[run.path], "seed": run.seed, **r} for r in records]
    return out


HOOKER_COLUMNS = ["population", "models", "top1_mean", "top1_std", "impacted_classes", "pie_count", "acc_pie",
                  "acc_non_pie", "dense_acc_pie", "dense_acc_non_pie"]  # fmt: skip


def _hooker_table_lines(rows: list[dict]) -> list[str]:
    cols = HOOKER_COLUMNS
    lines = [
        "",
        "## Per-class impact and PIEs (Hooker et al.)",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def hooker_section(runs: list[Run], out: Path, labels: dict[Path, str] | None = None) -> list[Path]:
    """Hooker et al.'s table (impacted classes, PIEs) when the runs form populations at several sparsity levels
    with a dense one (e.g. a sweep of experiment=hooker_fashion over schedule.final_sparsity and seeds)."""
    from prunelab.analysis.hooker import hooker_table, pie_gallery

    modal: dict = {}
    try:
        rows, masks = hooker_table(runs, modal=modal, names=labels)
    except (ValueError, FileNotFoundError, KeyError):
        return []  # not a population study
    if len(rows) < 2:
        return []
    write_csv(out / "hooker.csv", rows)
    with open(out / "report.md", "a") as f:
        f.write("\n".join(_hooker_table_lines(rows)) + "\n")
    import numpy as np

    write_csv(
        out / "pies.csv", [{"population": n, "example": int(i)} for n, m in masks.items() for i in np.nonzero(m)[0]]
    )
    files = [out / "hooker.csv", out / "pies.csv"]
    names = _class_names(runs)
    lines = [
        "",
        "Impacted classes (Welch test of mean-shifted per-class recall against the dense population, p <= 0.05). "
        'This list answers another question than "which classes pay" above: that one ranks the raw recall change '
        "(beyond seed noise); this one asks whether a class fell *more than the population's top-1 did* (Hooker et "
        "al.'s mean shift), so a class can lose much raw recall and not be impacted when every class fell alike. "
        'With fewer than 5 models a population, the test has little power: read "none" as "not shown".',
        "",
    ]
    for r in rows:
        if r.get("impacted_ids") is not None:
            ids = [int(i) for i in str(r["impacted_ids"]).split()]
            lines.append(
                f"- {r['population']}: " + (", ".join(names[i] if i < len(names) else str(i) for i in ids) or "none")
            )
    test = _test_images(runs)
    last = _last_rounds(list(masks))
    for name, mask in masks.items():  # one gallery per compressed population (sparsity levels and quantized)
        found = np.nonzero(mask)[0]  # iterative runs: the last round's only (every round's PIEs are in pies.csv)
        if test is not None and len(found) and name != "sparsity 0" and name in last:
            path = out / f"pie_gallery_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_')}.png"
            pie_gallery(test[0], test[1], found, path, class_names=names, title=name, modal=modal.get(name))
            files.append(path)
            lines += ["", f"![PIEs of {name}]({path.name})"]
    with open(out / "report.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    return files


def _last_rounds(names: list[str]) -> set[str]:
    """The population names to draw a gallery for: every one, except that of iterative runs' ``<label>, round r
    (...)`` only each label's last round."""
    found = {n: re.match(r"(.*), round (\d+) \(", n) for n in names}
    latest: dict[str, int] = {}
    for m in found.values():
        if m:
            latest[m[1]] = max(latest.get(m[1], -1), int(m[2]))
    return {n for n, m in found.items() if not m or int(m[2]) == latest[m[1]]}


def _class_names(runs: list[Run]) -> list[str]:
    for run in runs:
        record = results.read_json_or_none(run.path / "data.json") if (run.path / "data.json").exists() else None
        if isinstance(record, dict) and record.get("classes"):
            return [str(c) for c in record["classes"]]
    return []


def _test_images(runs: list[Run]):
    """The test images and labels of the runs' dataset, rebuilt from a run's config (None if it cannot be
    loaded)."""
    from hydra.utils import instantiate

    from prunelab.errors import PrunelabError
    from prunelab.runs.trust import buildable

    run = next((r for r in runs if r.status == "complete"), None)
    if run is None:
        return None
    try:
        node = buildable(run.config, "data")  # a folder never chooses the code that loads its data
        if "download" in node:
            node["download"] = False  # ...nor makes prunelab fetch anything: the files are there or no gallery
    except PrunelabError as exc:
        log.warning("%s: no example gallery (%s)", run.path, exc.one_line())
        return None
    try:
        dm = instantiate(node, _convert_="all")
        dm.setup()
        return dm.x_test.numpy(), dm.y_test.numpy()
    except Exception:
        return None


def report(
    root: Path | Sequence[Path], out: Path | None = None, x_axis: str = "density", scale: str = "robust"
) -> dict:
    """The report over the runs under ``root`` (one folder, or several to compare: their runs side by side, the
    populations labelled by what differs between them)."""
    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    runs: list[Run] = []
    for folder in roots:
        found = find_runs(folder)
        if not found:
            raise FileNotFoundError(f"no prunelab runs under {folder}")
        runs += [r for r in found if r.path not in {x.path for x in runs}]
    out = Path(out) if out else roots[0] / ("report" if len(roots) == 1 else "report_compare")
    out.mkdir(parents=True, exist_ok=True)
    from prunelab.analysis import context

    full = group_labels(runs)
    labels = context.short_labels(full)
    summary, deltas = aggregate(runs, labels), class_deltas(runs, labels)
    all_rows = [
        {"run": r.path.name, "population": labels[r.path], "seed": r.seed, **row}
        for r in runs
        if r.status == "complete"
        for row in r.rows
    ]
    write_csv(out / "summary.csv", summary)
    write_csv(out / "rounds.csv", all_rows)
    write_csv(out / "class_deltas.csv", deltas)
    tidy = tidy_per_class(runs, labels)
    write_csv(out / "per_class.csv", tidy)
    write_csv(
        out / "runs.csv",
        [{"run": r.path.name, "population": labels[r.path], "status": r.status, "error": r.error or ""} for r in runs],
    )
    for stale in out.glob("*.png"):  # figures of an earlier report of this folder (other names) must not linger
        stale.unlink()
    files = plots(summary, deltas, tidy, out, x_axis, scale) if summary else []
    damage_rows = class_damage.run_rows(runs, labels)
    if damage_rows:
        write_csv(out / "class_damage.csv", damage_rows)
    damage_files = class_damage.figures(runs, labels, out)
    if damage_files:
        (out / "figures.json").write_text(json.dumps(figures_manifest(), indent=1))
    text = markdown(summary, runs, context.section(runs, labels, roots, full)) + figures_section(files, deltas, scale)
    text += class_damage.section(runs, labels, damage_files)
    (out / "report.md").write_text(text)
    files += damage_files
    files += hooker_section(runs, out, labels)
    from prunelab.analysis.html import write_html

    files.append(write_html(out / "report.md", out / "report.html"))
    groups = {str(r.config.get("logger", {}).get("wandb", {}).get("group") or "") for r in runs} - {""}
    return {
        "out": out,
        "runs": len(runs),
        "complete": sum(r.status == "complete" for r in runs),
        "plots": files,
        "wandb_group": groups.pop() if len(groups) == 1 else None,
    }


def figures_manifest() -> list[dict]:
    from prunelab.analysis import figures

    return figures.MANIFEST


def log_to_wandb(result: dict, tables: dict[str, list[dict]], project: str = "prunelab", group: str = "report") -> Path:
    """Log the report's tables and plots as one offline W&B run (``wandb sync`` uploads it later)."""
    import wandb

    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        dir=str(result["out"]),
        mode="offline",
        name=f"report-{result['out'].parent.name}",
    )
    try:
        for name, rows in tables.items():
            if rows:
                cols = list(dict.fromkeys(k for r in rows for k in r))
                run.log({f"report/{name}": wandb.Table(columns=cols, data=[[r.get(c) for c in cols] for r in rows])})
        for png in result["plots"]:
            if str(png).endswith(".png"):
                run.log({f"report/plot/{Path(png).stem}": wandb.Image(str(png))})
    finally:
        run.finish()
    return Path(run.dir).parent


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="prunelab report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "folder", type=Path, nargs="+", help="a run folder, a multirun folder or an outputs folder; several compare"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write (default: <folder>/report; several: <first>/report_compare)",
    )
    parser.add_argument(
        "--heat-scale",
        choices=["robust", "max"],
        default="robust",
        help="colour limit of the class heatmap: 95th percentile of |change| (default) or the largest",
    )
    parser.add_argument(
        "--x",
        choices=sorted(X_AXES),
        default="density",
        help="x axis of the metric plots (default: weights remaining, log scale)",
    )
    parser.add_argument("--wandb", action="store_true", help="also log the tables and plots to an offline W&B run")
    args = parser.parse_args(argv)
    try:
        result = report(args.folder, args.out, args.x, args.heat_scale)
    except FileNotFoundError as exc:
        print(f"prunelab: error: folder: {exc} (fix: give a folder holding prunelab run folders)", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # a read-only results folder, a full disk, a file where the report folder should be
        where = exc.filename or args.out or args.folder[0] / "report"
        print(
            f"prunelab: error: --out: cannot write {where} ({exc.strerror or exc}) (fix: give --out "
            "<a writable folder>)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    print(f"{result['runs']} runs ({result['complete']} complete) -> {result['out']}/report.md")
    if args.wandb:
        tables = {
            n: _read_csv(result["out"] / f"{n}.csv")
            for n in ("summary", "class_deltas", "runs", "hooker", "class_damage")
        }
        group = result["wandb_group"] or "report"  # the sweep's own W&B group when the runs share one
        print(f"W&B (offline, group {group}): {log_to_wandb(result, tables, group=group)}")


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
