"""The report's "Class damage" section (issue 29): class-safe sparsity per run and population, the damage against
the dense round beside its dense-vs-dense floor, matched budgets, and the figures.

- ``class_damage.csv``: one row per run (final round): class-safe sparsity, accuracy, worst-class recall raw and
  recalibrated, flip rate, largest gap and largest excess gap with their floor, why it stopped, its budget.
- A ranking of populations by class-safe sparsity (then by final accuracy): criteria compared by how far they prune
  before some class pays more than ``class_tolerance`` beyond the average.
- ``class_gap_flip_<population>.png``: classes x sparsity heatmaps of the accuracy gap to the dense round (one
  symmetric colour scale for every gap panel of the report) and of the flip rate (one scale from 0 for every flip
  panel), mean over seeds.
- ``tolerance_band.png``: the largest excess gap (gap_c - mean gap) over sparsity, per population, against its
  bound epsilon + floor (dashed); the shaded band is the dense-vs-dense floor.
- ``recalibrated_worst_recall.png`` (``calibrate=thresholds`` runs): worst-class recall raw (solid) and after the
  validation-fitted thresholds (dashed).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from prunelab.runs.folders import Run
from prunelab.training.damage import class_safe_sparsity, key_name


def damaged(runs: list[Run]) -> list[Run]:
    """Complete runs whose rounds carry class-damage verdicts (and whose summary names the classes)."""
    return [
        r for r in runs if r.status == "complete" and r.rows and r.classes and "damage/passes_tolerance" in r.rows[-1]
    ]


def _get(row: dict, key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def run_rows(runs: list[Run], labels: dict[Path, str]) -> list[dict]:
    """One row per run: its final round's class damage and its class-safe sparsity."""
    out = []
    for run in damaged(runs):
        last = run.rows[-1]
        out.append(
            {
                "run": run.path.name,
                "population": labels[run.path],
                "seed": run.seed,
                "rounds": len(run.rows),
                "final_sparsity": last.get("sparsity"),
                "class_safe_sparsity": class_safe_sparsity(run.rows),
                "test_acc": _get(last, "test/acc"),
                "worst_recall": _get(last, "test/recall_worst"),
                "worst_recall_calibrated": _get(last, "calibrated/test/recall_worst"),
                "flip": _get(last, "damage/flip"),
                "gap_mean": _get(last, "damage/gap_mean"),
                "gap_max": _get(last, "damage/gap_max"),
                "worst_gap_class": last.get("damage/worst_class"),
                "excess_gap": _get(last, "damage/gap_excess_q100"),
                "floor_flip": _get(last, "floor/flip"),
                "floor_excess_gap": _get(last, "floor/gap_excess_q100"),
                "tolerance": _get(last, "damage/tolerance"),
                "gap_excess_median": _get(last, "damage/gap_excess_q50"),
                "flops_ratio": _get(last, "flops_ratio"),
                "compute_seconds": sum(float(r.get("round_seconds") or 0.0) for r in run.rows),
                "budget_target": last.get("budget/target"),
                "budget_value": _get(last, "budget/value"),
                "budget_achieved": _get(last, "budget/achieved"),
                "budget_tolerance": (run.config.get("budget") or {}).get("tolerance"),
            }
        )
    return out


def _stats(values: list[Any]) -> tuple[float | None, float | None]:
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return None, None
    return statistics.fmean(kept), statistics.stdev(kept) if len(kept) > 1 else 0.0


def seed_floor(runs: list[Run]) -> dict[str, float] | None:
    """Where a population holds several seeds: the mean, over pairs of its dense round-0 models (both directions),
    of the flip rate and of the largest excess gap between them (the seed spread as a floor, instead of one null
    model)."""
    from itertools import permutations

    from prunelab.training.damage import damage_fields

    dense = []
    for run in runs:
        try:
            probs, labels = run.predictions(0)
        except (OSError, KeyError, ValueError):
            return None
        dense.append((probs.astype(np.float64), labels))
    if len(dense) < 2 or any(not np.array_equal(dense[0][1], d[1]) for d in dense):
        return None
    # both directions of every pair: the excess gap of a against b is not that of b against a
    pairs = [damage_fields(a[0], b[0], a[1], runs[0].classes) for a, b in permutations(dense, 2)]
    return {
        "seed_floor_flip": statistics.fmean(p["damage/flip"] for p in pairs),
        "seed_floor_excess_gap": statistics.fmean(p["damage/gap_excess_q100"] for p in pairs),
        "seed_pairs": float(len(pairs) // 2),
    }


def safe_with_floor(run: Run, floor_excess: float) -> float | None:
    """Class-safe sparsity of ``run`` with its verdicts recomputed against another floor (the seed spread)."""
    safe = None
    for row in run.rows:
        excess, eps = row.get("damage/gap_excess_q100"), row.get("damage/tolerance")
        if excess is None or eps is None or excess > eps + max(0.0, floor_excess) + 1e-12:
            break
        safe = float(row["sparsity"]) if safe is None else max(safe, float(row["sparsity"]))
    return safe


def ranking(rows: list[dict], runs: list[Run] | None = None, labels: dict[Path, str] | None = None) -> list[dict]:
    """Populations ranked by mean class-safe sparsity, then by mean final accuracy (both higher first)."""
    pops: dict[str, list[dict]] = {}
    for r in rows:
        pops.setdefault(r["population"], []).append(r)
    table: list[dict[str, Any]] = []
    for pop, rs in pops.items():
        safe, safe_sd = _stats([r["class_safe_sparsity"] for r in rs])
        acc, acc_sd = _stats([r["test_acc"] for r in rs])
        final, _ = _stats([r["final_sparsity"] for r in rs])
        entry: dict[str, Any] = {
            "population": pop,
            "n": len(rs),
            "class_safe_sparsity_mean": safe,
            "class_safe_sparsity_std": safe_sd,
            "final_sparsity_mean": final,
            "test_acc_mean": acc,
            "test_acc_std": acc_sd,
        }
        members = [r for r in damaged(runs or []) if labels and labels[r.path] == pop]
        spread = seed_floor(members) if len(members) > 1 else None
        if spread:
            entry.update(spread)
            entry["class_safe_sparsity_seed_floor_mean"], _ = _stats(
                [safe_with_floor(r, spread["seed_floor_excess_gap"]) for r in members]
            )
        table.append(entry)
    table.sort(key=lambda t: (-(t["class_safe_sparsity_mean"] or -1.0), -(t["test_acc_mean"] or -1.0)))
    for i, t in enumerate(table, 1):
        t["rank_class_safe"] = i
    by_acc = sorted(table, key=lambda t: -(t["test_acc_mean"] or -1.0))
    for i, t in enumerate(by_acc, 1):
        t["rank_accuracy"] = i
    return table


def budget_lines(rows: list[dict]) -> list[str]:
    """Whether runs launched with the same budget landed within its tolerance of each other."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        if r["budget_target"] is not None and r["budget_achieved"] is not None:
            groups.setdefault((r["budget_target"], r["budget_value"]), []).append(r)
    lines = []
    for (target, value), rs in sorted(groups.items()):
        got = [float(r["budget_achieved"]) for r in rs]
        tol = max(float(r["budget_tolerance"] or 0.01) for r in rs)
        spread = max(got) - min(got)
        far = max(abs(g - value) for g in got)
        verdict = "within" if spread <= tol and far <= tol else "NOT within"
        lines.append(
            f"- budget {target} = {value:g}: {len(rs)} runs reached {min(got):.4f} .. {max(got):.4f} of the dense "
            f"{target} (spread {spread:.4f}, furthest from the target {far:.4f}): {verdict} the tolerance {tol:g}"
        )
    return lines


METHOD_COLUMNS = [
    ("test_acc", "accuracy"),
    ("worst_recall", "worst-class recall"),
    ("worst_recall_calibrated", "recalibrated"),
    ("gap_excess_median", "excess gap q50"),
    ("excess_gap", "excess gap max"),
    ("flip", "flip"),
    ("class_safe_sparsity", "class-safe sparsity"),
    ("compute_seconds", "compute s"),
]


def methods_lines(rows: list[dict]) -> list[str]:
    """Methods (populations) x metrics of the final round, mean ± std over seeds."""
    pops: dict[str, list[dict]] = {}
    for r in rows:
        pops.setdefault(r["population"], []).append(r)
    head = "| method | n | " + " | ".join(name for _, name in METHOD_COLUMNS) + " |"
    lines = ["", head, "|" + "---|" * (2 + len(METHOD_COLUMNS))]
    for pop, rs in sorted(pops.items()):
        cells = []
        for key, _ in METHOD_COLUMNS:
            mean, sd = _stats([r[key] for r in rs])
            cells.append(_pm(mean, sd, len(rs)) if key != "compute_seconds" or mean is None else f"{mean:.1f}")
        lines.append(f"| {pop} | {len(rs)} | " + " | ".join(cells) + " |")
    return lines


def _f(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(float(value), spec)


def _pm(mean: Any, sd: Any, n: int) -> str:
    return "-" if mean is None else (f"{mean:.4f} ± {sd:.4f}" if n > 1 else f"{mean:.4f}")


def section(runs: list[Run], labels: dict[Path, str], files: list[Path]) -> str:
    rows = run_rows(runs, labels)
    if not rows:
        return ""
    eps = rows[0]["tolerance"]
    floors = sum(r["floor_excess_gap"] is not None for r in rows)
    lines = [
        "",
        "## Class damage",
        "",
        f"Against each run's dense round 0. A round passes when every class's accuracy gap is within epsilon "
        f"({_f(eps, 'g')}) of the mean gap, beyond the dense-vs-dense floor; class-safe sparsity is the highest "
        f"sparsity before the first round that fails. {floors} of {len(rows)} runs have a floor "
        "(class_metrics.null_seed); the others are judged against a floor of 0. Where a population holds several "
        "seeds, the spread of its dense models (mean over pairs) is a second floor, and class-safe sparsity is "
        "also given against it.",
        "",
        "| rank | population | n | class-safe sparsity | final sparsity | test accuracy | accuracy rank | "
        "seed floor: flip, max excess gap | class-safe with the seed floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in ranking(rows, runs, labels):
        seed = (
            f"{t['seed_floor_flip']:.4f}, {t['seed_floor_excess_gap']:.4f} ({int(t['seed_pairs'])} pairs)"
            if "seed_floor_flip" in t
            else "-"
        )
        lines.append(
            f"| {t['rank_class_safe']} | {t['population']} | {t['n']} | "
            f"{_pm(t['class_safe_sparsity_mean'], t['class_safe_sparsity_std'], t['n'])} | "
            f"{_f(t['final_sparsity_mean'])} | {_pm(t['test_acc_mean'], t['test_acc_std'], t['n'])} | "
            f"{t['rank_accuracy']} | {seed} | {_f(t.get('class_safe_sparsity_seed_floor_mean'))} |"
        )
    lines += [
        "",
        "| run | population | class-safe | final sparsity | flip (floor) | max gap | max excess gap (floor) | "
        "worst recall | recalibrated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['population']} | {_f(r['class_safe_sparsity'])} | {_f(r['final_sparsity'])} | "
            f"{_f(r['flip'])} ({_f(r['floor_flip'])}) | {_f(r['gap_max'])} ({r['worst_gap_class']}) | "
            f"{_f(r['excess_gap'])} ({_f(r['floor_excess_gap'])}) | {_f(r['worst_recall'])} | "
            f"{_f(r['worst_recall_calibrated'])} |"
        )
    lines += methods_lines(rows)
    budget = budget_lines(rows)
    if budget:
        lines += ["", "Matched budgets:", "", *budget]
    lines += [""] + [f"![{p.stem}]({p.name})" for p in files]
    return "\n".join(lines) + "\n"


# -- figures -----------------------------------------------------------------------------------------------------
def _grids(runs: list[Run], key: str) -> tuple[list[str], list[float], np.ndarray]:
    """Classes x rounds of ``damage/<key>/<class>``, mean over the runs (rounds matched by index)."""
    classes = runs[0].classes
    depth = min(len(r.rows) for r in runs)
    grid = np.full((len(classes), depth), np.nan)
    for j in range(depth):
        for i, c in enumerate(classes):
            vals = [r.rows[j].get(f"damage/{key}/{key_name(c)}") for r in runs]
            kept = [float(v) for v in vals if v is not None and not math.isnan(v)]
            grid[i, j] = statistics.fmean(kept) if kept else np.nan
    sparsity = [statistics.fmean(float(r.rows[j]["sparsity"]) for r in runs) for j in range(depth)]
    floor = [[r.rows[-1].get(f"floor/{key}/{key_name(c)}") for r in runs] for c in classes]
    if all(v is not None for vals in floor for v in vals):  # the dense-vs-dense floor as a last column
        column = np.array([[statistics.fmean(float(v) for v in vals if v is not None)] for vals in floor])
        grid = np.hstack([grid, column])
    return classes, sparsity, grid


def _populations(runs: list[Run], labels: dict[Path, str]) -> dict[str, list[Run]]:
    pops: dict[str, list[Run]] = {}
    for r in damaged(runs):
        pops.setdefault(labels[r.path], []).append(r)
    return pops


def figures(runs: list[Run], labels: dict[Path, str], out: Path) -> list[Path]:
    from prunelab.analysis import figures as fig_mod

    pops = _populations(runs, labels)
    if not pops:
        return []
    plt = fig_mod._pyplot()
    grids = {p: {k: _grids(rs, k) for k in ("gap", "flip")} for p, rs in pops.items()}
    gap_lim = max([0.01, *(float(np.nanmax(np.abs(g["gap"][2]))) for g in grids.values() if g["gap"][2].size)])
    flip_lim = max([0.01, *(float(np.nanmax(g["flip"][2])) for g in grids.values() if g["flip"][2].size)])
    files = []
    for pop, g in grids.items():
        classes, sparsity, _ = g["gap"]
        height = max(2.8, 1.6 + 0.36 * len(classes))
        fig, axes = plt.subplots(1, 2, figsize=(3.6 + 1.1 * (len(sparsity) + 1), height))
        for ax, key, cmap, lo, hi, label in (
            (axes[0], "gap", "RdBu_r", -gap_lim, gap_lim, "accuracy gap to dense (dense - pruned)"),
            (axes[1], "flip", "Purples", 0.0, flip_lim, "flip rate vs dense"),
        ):
            grid = g[key][2]
            im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            if grid.size <= 300:
                for (i, j), v in np.ndenumerate(grid):
                    if not math.isnan(v):
                        strong = abs(v) > 0.6 * max(abs(lo), hi)
                        ax.text(
                            j,
                            i,
                            f"{v:.2f}",
                            ha="center",
                            va="center",
                            fontsize=6.5,
                            color="white" if strong else "black",
                        )
            ticks = [f"{s:.2f}" for s in sparsity] + (["floor"] if grid.shape[1] > len(sparsity) else [])
            ax.set_xticks(range(len(ticks)), ticks)
            ax.set_yticks(range(len(classes)), classes)
            ax.set_xlabel("sparsity (floor: a second dense model)" if "floor" in ticks else "sparsity")
            ax.set_ylabel("class")
            ax.set_title(label, fontsize=9)
            fig.colorbar(im, ax=ax).set_label(f"shared scale {lo:+.2f} .. {hi:.2f}", fontsize=7)
        fig.suptitle(f"class damage: {_short(pop, 90)}", fontsize=9)
        fig.tight_layout()
        path = out / f"class_gap_flip_{fig_mod.slug(pop)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        fig_mod.MANIFEST.append(
            {"file": path.name, "kind": "class_gap_flip", "population": pop, "gap_scale": [-gap_lim, gap_lim],
             "flip_scale": [0.0, flip_lim], "xlabel": "sparsity", "ylabel": "class"}
        )  # fmt: skip
        files.append(path)
    files.append(_tolerance_band(plt, pops, out))
    if any("calibrated/test/recall_worst" in r.rows[-1] for rs in pops.values() for r in rs):
        files.append(_recalibrated(plt, pops, out))
    files.append(_recall_vs_cost(plt, run_rows(runs, labels), out))
    return files


def _recall_vs_cost(plt: Any, rows: list[dict], out: Path) -> Path:
    """Worst-class recall against the model's cost (the budget's measure where the runs have one, else FLOPs), one
    point per run (method and seed), the budget value marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4 + 0.09 * len(rows)))
    budgeted = [r for r in rows if r["budget_achieved"] is not None]
    key, label = ("budget_achieved", f"{budgeted[0]['budget_target']} (share of dense)") if budgeted else (
        "flops_ratio", "FLOPs (share of dense)")  # fmt: skip
    for k, pop in enumerate(sorted({r["population"] for r in rows})):
        pts = [(r[key], r["worst_recall"]) for r in rows if r["population"] == pop and r[key] is not None]
        if pts:
            marker = "osD^v<>ph*"[k % 10]  # shapes and shrinking sizes: runs at one budget stack, all still visible
            size = max(4.0, 12.0 - 1.5 * k)
            ax.plot(
                *zip(*pts, strict=True), marker, color=f"C{k % 10}", label=_short(pop), ms=size, mfc="none", mew=1.5
            )
    for value in sorted({float(r["budget_value"]) for r in budgeted}):
        ax.axvline(value, color="0.3", linestyle="--", linewidth=1, label=f"budget {value:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("worst-class recall (test, final round)")
    title = "one point per run (method and seed); dashed: the budget"
    return _save(plt, fig, ax, out / "worst_recall_vs_cost.png", title, len(rows), xlabel=label)


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _legend(ax: Any, entries: int) -> None:
    """Under the plot, so that long population labels never cover the curves."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1 if entries > 4 else 2, frameon=False)


def _series(runs: list[Run], key: str) -> tuple[list[float], list[float]]:
    depth = min(len(r.rows) for r in runs)
    xs = [statistics.fmean(float(r.rows[j]["sparsity"]) for r in runs) for j in range(depth)]
    ys = [statistics.fmean(float(r.rows[j].get(key, float("nan"))) for r in runs) for j in range(depth)]
    return xs, ys


def _tolerance_band(plt: Any, pops: dict[str, list[Run]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.4 + 0.18 * len(pops)))
    bounds = {}
    for k, (pop, rs) in enumerate(sorted(pops.items())):
        xs, ys = _series(rs, "damage/gap_excess_q100")
        ax.plot(xs, ys, "o-", color=f"C{k % 10}", label=_short(pop))
        eps = float(rs[0].rows[-1].get("damage/tolerance", 0.0))
        floor = statistics.fmean(max(0.0, float(r.rows[-1].get("floor/gap_excess_q100", 0.0))) for r in rs)
        bounds[pop] = (k, xs, eps, floor)
    same = len({(e, f) for _, _, e, f in bounds.values()}) == 1  # one bound for all: drawn once, in grey
    for pop, (k, xs, eps, floor) in bounds.items():
        colour = "0.3" if same else f"C{k % 10}"
        label = f"epsilon {eps:g} + floor {floor:.3f}" + ("" if same else f" ({_short(pop, 30)})")
        ax.plot([0, max(xs)], [eps + floor] * 2, "--", color=colour, linewidth=1, label=label)
        if floor > 0:
            ax.fill_between([0, max(xs)], 0, floor, color=colour, alpha=0.12)
        if same:
            break
    ax.set_ylabel("largest excess gap (gap_c - mean gap)")
    title = "class tolerance: solid = run, dashed = epsilon + floor, band = dense-vs-dense floor"
    return _save(plt, fig, ax, out / "tolerance_band.png", title, 2 * len(pops))


def _save(plt: Any, fig: Any, ax: Any, path: Path, title: str, entries: int, xlabel: str = "sparsity") -> Path:
    """x label, title, legend under the plot, grid; saved and listed in figures.json."""
    from prunelab.analysis import figures as fig_mod

    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=8)
    _legend(ax, entries)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    fig_mod.MANIFEST.append(
        {"file": path.name, "kind": path.stem, "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}
    )
    return path


def _recalibrated(plt: Any, pops: dict[str, list[Run]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.4 + 0.18 * len(pops)))
    for k, (pop, rs) in enumerate(sorted(pops.items())):
        colour = f"C{k % 10}"
        xs, raw = _series(rs, "test/recall_worst")
        _, cal = _series(rs, "calibrated/test/recall_worst")
        ax.plot(xs, raw, "o-", color=colour, label=f"{_short(pop)} (raw)")
        ax.plot(xs, cal, "s--", color=colour, label=f"{_short(pop)} (recalibrated)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("worst-class recall (test)")
    title = "raw vs thresholds fitted on validation (calibrate=thresholds)"
    return _save(plt, fig, ax, out / "recalibrated_worst_recall.png", title, 2 * len(pops))
