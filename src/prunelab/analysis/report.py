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
import math
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prunelab.analysis.runs import Run, find_runs, group_labels
from prunelab.config import IDENTITY_KEYS

METRICS = ["test/acc", "test/auroc_macro", "test/recall_worst", "test/fnr", "test/fpr", "flops_ratio"]
X_AXES = {"sparsity": ("sparsity", "sparsity"), "density": ("sparsity", "weights remaining"),
          "flops": ("flops_ratio", "FLOPs (share of dense)")}  # fmt: skip


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
    return [{"population": p, "round": r, "class": c, "sparsity": statistics.fmean(sparsity[(p, r)]),
             "recall_delta_mean": _stats(v)[0], "recall_delta_std": _stats(v)[1], "n": len(v),
             "baseline": baseline[p]}
            for (p, r, c), v in sorted(acc.items(), key=lambda kv: (kv[0][0], float(kv[0][1]), kv[0][2]))]  # fmt: skip


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _fmt(mean: float | None, std: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


def markdown(summary: list[dict], runs: list[Run]) -> str:
    cols = [m for m in ["sparsity", *METRICS] if any(f"{m}_mean" in r for r in summary)]
    lines = ["# prunelab report", "", "| population | round | n | " + " | ".join(cols) + " |",
             "|" + "---|" * (3 + len(cols))]  # fmt: skip
    for r in summary:
        cells = [_fmt(r.get(f"{c}_mean"), r.get(f"{c}_std")) for c in cols]
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


def plots(summary: list[dict], deltas: list[dict], out: Path, x_axis: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, xlabel = X_AXES[x_axis]
    pops = sorted({r["population"] for r in summary})
    metrics = [m for m in METRICS if any(f"{m}_mean" in r for r in summary) and m != "flops_ratio"]
    files = []
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for pop in pops:
            rows = [r for r in summary if r["population"] == pop and f"{metric}_mean" in r]
            xs = [(1 - r[f"{key}_mean"]) if x_axis == "density" else r[f"{key}_mean"] for r in rows]
            ax.errorbar(xs, [r[f"{metric}_mean"] for r in rows], yerr=[r[f"{metric}_std"] for r in rows],
                        marker="o", capsize=3, label=pop)  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.set_title(metric)
        if x_axis == "density":
            ax.set_xscale("log")
            ax.invert_xaxis()
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", fontsize=7, ncol=2)
    fig.tight_layout(rect=(0, 0.05 + 0.03 * len(pops), 1, 1))
    files.append(out / f"metrics_vs_{x_axis}.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for pop in pops:
        rows = [r for r in summary if r["population"] == pop and "flops_ratio_mean" in r]
        ax.errorbar([r["flops_ratio_mean"] for r in rows], [r["test/acc_mean"] for r in rows],
                    yerr=[r["test/acc_std"] for r in rows], marker="o", capsize=3, label=pop)  # fmt: skip
    ax.set_xlabel("FLOPs (share of dense, masked weights removed)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    files.append(out / "flops_vs_accuracy.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    for i, pop in enumerate(sorted({d["population"] for d in deltas})):
        files.append(_heatmap([d for d in deltas if d["population"] == pop], pop, out / f"class_delta_{i}.png", plt))
    return files


def _heatmap(rows: list[dict], title: str, path: Path, plt) -> Path:
    import numpy as np

    classes = list(dict.fromkeys(r["class"] for r in rows))
    rounds = sorted({r["round"] for r in rows})
    grid = np.full((len(classes), len(rounds)), np.nan)
    spars = {}
    for r in rows:
        grid[classes.index(r["class"]), rounds.index(r["round"])] = r["recall_delta_mean"]
        spars[r["round"]] = r["sparsity"]
    lim = max(1e-3, float(np.nanmax(np.abs(grid))))
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(rounds), 1.0 + 0.35 * len(classes)))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(rounds)), [f"{spars[r]:.2f}" for r in rounds], fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("sparsity")
    ax.set_title(f"recall change vs dense\n{title}", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def hooker_section(runs: list[Run], out: Path) -> list[Path]:
    """Hooker et al.'s table (impacted classes, PIEs) when the runs form populations at several sparsity levels
    with a dense one (e.g. a sweep of experiment=hooker_fashion over schedule.final_sparsity and seeds)."""
    from prunelab.analysis.hooker import hooker_table, pie_gallery

    try:
        rows, masks = hooker_table(runs)
    except (ValueError, FileNotFoundError, KeyError):
        return []  # not a population study
    if len(rows) < 2:
        return []
    write_csv(out / "hooker.csv", rows)
    cols = ["population", "models", "top1_mean", "top1_std", "impacted_classes", "pie_count", "acc_pie",
            "acc_non_pie", "dense_acc_pie", "dense_acc_non_pie"]  # fmt: skip
    lines = ["", "## Per-class impact and PIEs (Hooker et al.)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]  # fmt: skip
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    with open(out / "report.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    worst = max((n for n in masks if n.startswith("sparsity")), key=lambda n: float(n.split()[1]))
    import numpy as np

    idx = np.nonzero(masks[worst])[0]
    write_csv(
        out / "pies.csv", [{"population": n, "example": int(i)} for n, m in masks.items() for i in np.nonzero(m)[0]]
    )
    files = [out / "hooker.csv", out / "pies.csv"]
    images = _test_images(runs)
    if images is not None and len(idx):
        pie_gallery(images, None, idx, out / "pie_gallery.png")  # the sparsest level
        files.append(out / "pie_gallery.png")
    for name, mask in masks.items():  # one gallery per compressed population (sparsity levels and quantized)
        found = np.nonzero(mask)[0]
        if images is not None and len(found):
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")
            pie_gallery(images, None, found, out / f"pie_gallery_{slug}.png")
            files.append(out / f"pie_gallery_{slug}.png")
    return files


def _test_images(runs: list[Run]):
    """The test images of the runs' dataset, rebuilt from a run's config (None if the data cannot be loaded)."""
    from hydra.utils import instantiate

    try:
        run = next(r for r in runs if r.status == "complete")
        dm = instantiate(run.config["data"], _convert_="all")
        dm.setup()
        return dm.x_test.numpy()
    except Exception:
        return None


def report(root: Path, out: Path | None = None, x_axis: str = "sparsity") -> dict:
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no prunelab runs under {root}")
    out = Path(out) if out else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    labels = group_labels(runs)
    summary, deltas = aggregate(runs, labels), class_deltas(runs, labels)
    all_rows = [{"run": r.path.name, "population": labels[r.path], "seed": r.seed, **row}
                for r in runs if r.status == "complete" for row in r.rows]  # fmt: skip
    write_csv(out / "summary.csv", summary)
    write_csv(out / "rounds.csv", all_rows)
    write_csv(out / "class_deltas.csv", deltas)
    write_csv(out / "runs.csv", [{"run": r.path.name, "population": labels[r.path], "status": r.status,
                                  "error": r.error or ""} for r in runs])  # fmt: skip
    (out / "report.md").write_text(markdown(summary, runs))
    files = plots(summary, deltas, out, x_axis) if summary else []
    files += hooker_section(runs, out)
    groups = {str(r.config.get("logger", {}).get("wandb", {}).get("group") or "") for r in runs} - {""}
    return {"out": out, "runs": len(runs), "complete": sum(r.status == "complete" for r in runs), "plots": files,
            "wandb_group": groups.pop() if len(groups) == 1 else None}  # fmt: skip


def log_to_wandb(result: dict, tables: dict[str, list[dict]], project: str = "prunelab", group: str = "report") -> Path:
    """Log the report's tables and plots as one offline W&B run (``wandb sync`` uploads it later)."""
    import wandb

    run = wandb.init(project=project, group=group, job_type="report", dir=str(result["out"]), mode="offline",
                     name=f"report-{result['out'].parent.name}")  # fmt: skip
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
    parser.add_argument("folder", type=Path, help="a run folder, a multirun folder or an outputs folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <folder>/report)")
    parser.add_argument("--x", choices=sorted(X_AXES), default="sparsity", help="x axis of the metric plots")
    parser.add_argument("--wandb", action="store_true", help="also log the tables and plots to an offline W&B run")
    args = parser.parse_args(argv)
    try:
        result = report(args.folder, args.out, args.x)
    except FileNotFoundError as exc:
        print(f"prunelab: error: folder: {exc} (fix: give a folder holding prunelab run folders)", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{result['runs']} runs ({result['complete']} complete) -> {result['out']}/report.md")
    if args.wandb:
        tables = {n: _read_csv(result["out"] / f"{n}.csv") for n in ("summary", "class_deltas", "runs", "hooker")}
        group = result["wandb_group"] or "report"  # the sweep's own W&B group when the runs share one
        print(f"W&B (offline, group {group}): {log_to_wandb(result, tables, group=group)}")


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
