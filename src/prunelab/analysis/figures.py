"""The report's figures, drawn to be put in a paper as they are.

- ``metrics_vs_<x>.png``: one panel per metric (named in words, with a y-label), two panels per row, one curve
  per population. Populations that differ only in their target sparsity (single-fit runs, e.g. one gradual run
  per level) are joined into one curve. The default x-axis is the share of weights remaining on a log scale, as
  the lottery-ticket literature plots iterative pruning; ``sparsity`` and ``flops`` are the alternatives. Error
  bars are one standard deviation over seeds, clipped to [0, 1] for rates.
- ``flops_vs_accuracy.png``: test accuracy against the FLOPs left.
- ``class_delta_<population>.png``: per-class recall change against the dense baseline, classes x level, **one
  symmetric colour scale for every heatmap of the report** (two criteria can be compared by colour), each cell
  annotated with its value.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

NAMES = {
    "test/acc": "test accuracy",
    "test/auroc_macro": "macro AUROC (one-vs-rest)",
    "test/recall_worst": "worst-class recall",
    "test/fnr": "false-negative rate (positive class)",
    "test/fpr": "false-positive rate (positive class)",
    "flops_ratio": "FLOPs (share of dense)",
}
RATES = {"test/acc", "test/auroc_macro", "test/recall_worst", "test/fnr", "test/fpr"}
X_AXES = {
    "density": ("sparsity", "weights remaining (log scale)"),
    "sparsity": ("sparsity", "sparsity"),
    "flops": ("flops_ratio", "FLOPs (share of dense)"),
}
MANIFEST: list[dict[str, Any]] = []  # what each figure of the current report shows (figures.json)
LEVEL = re.compile(r"(^|, )schedule\.(final_sparsity|sparsity)=[^,]*")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "all"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})
    return plt


def curve_name(population: str) -> str:
    """The curve a population belongs to: its label without a target-sparsity setting."""
    name = LEVEL.sub("", population).strip(", ")
    return name or "all runs"


def _curves(summary: list[dict], metric: str, key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in summary:
        if f"{metric}_mean" in r and f"{key}_mean" in r:
            out.setdefault(curve_name(r["population"]), []).append(r)
    return {k: sorted(v, key=lambda r: r[f"{key}_mean"]) for k, v in sorted(out.items())}


def _x(rows: list[dict], key: str, x_axis: str) -> list[float]:
    return [max(1 - r[f"{key}_mean"], 1e-4) if x_axis == "density" else r[f"{key}_mean"] for r in rows]


def _errors(rows: list[dict], metric: str) -> np.ndarray:
    mean = np.array([r[f"{metric}_mean"] for r in rows], dtype=float)
    std = np.nan_to_num(np.array([r.get(f"{metric}_std") or 0.0 for r in rows], dtype=float))
    if metric not in RATES:
        return np.vstack([std, std])
    return np.vstack([np.minimum(std, mean), np.minimum(std, 1 - mean)])  # an error bar never leaves [0, 1]


def _axis(ax: Any, x_axis: str, label: str, xs: list[float]) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xlabel(label)
    ax.grid(alpha=0.3)
    if x_axis == "density":
        ax.set_xscale("log")
        ticks = sorted(set(round(x, 4) for x in xs), reverse=True)
        if 0 < len(ticks) <= 10:  # the levels themselves, written plainly (not 6x10^-1)
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()  # left: dense; right: sparser


def metric_panels(summary: list[dict], out: Path, x_axis: str = "density") -> Path:
    plt = _pyplot()
    key, label = X_AXES[x_axis]
    metrics = [m for m in NAMES if m != "flops_ratio" and any(f"{m}_mean" in r for r in summary)]
    cols = min(3, len(metrics))  # one row up to three panels; a spare slot holds the legend, never an empty frame
    rows_n = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.6 * rows_n + 0.6), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        xs: list[float] = []
        for name, rows in _curves(summary, metric, key).items():
            xs += _x(rows, key, x_axis)
            ax.errorbar(
                _x(rows, key, x_axis),
                [r[f"{metric}_mean"] for r in rows],
                yerr=_errors(rows, metric),
                marker="o",
                markersize=4,
                capsize=3,
                label=name,
            )
        ax.set_title(NAMES[metric])
        ax.set_ylabel(NAMES[metric].split(" (")[0])
        _axis(ax, x_axis, label, xs)
    spare = list(axes.flat)[len(metrics) :]
    for ax in spare:
        ax.set_axis_off()
    handles, names = axes.flat[0].get_legend_handles_labels()
    if spare:  # the legend in the first spare slot
        spare[0].legend(handles, names, loc="center", frameon=False, title="population")
        fig.tight_layout()
    else:
        fig.legend(handles, names, loc="lower center", ncol=min(3, max(1, len(names))), frameon=False)
        fig.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(names) / 3), 1, 1))
    path = out / f"metrics_vs_{x_axis}.png"
    fig.savefig(path, dpi=120)
    MANIFEST.append(
        {"file": path.name, "kind": "metrics", "panels": [NAMES[m] for m in metrics], "xlabel": label, "curves": names}
    )
    plt.close(fig)
    return path


def flops_accuracy(summary: list[dict], out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for name, rows in _curves(summary, "test/acc", "flops_ratio").items():
        ax.errorbar(
            [r["flops_ratio_mean"] for r in rows],
            [r["test/acc_mean"] for r in rows],
            yerr=_errors(rows, "test/acc"),
            marker="o",
            markersize=4,
            capsize=3,
            label=name,
        )
    xs = [r["flops_ratio_mean"] for r in summary if r.get("flops_ratio_mean")]
    _axis(ax, "density", "FLOPs left (share of dense, log; masked weights counted as removed)", xs)
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy against FLOPs (a count, not a speed-up)")
    ax.legend(frameon=False)
    fig.tight_layout()
    path = out / "flops_vs_accuracy.png"
    fig.savefig(path, dpi=120)
    MANIFEST.append({"file": path.name, "kind": "flops", "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()})
    plt.close(fig)
    return path


def shared_limit(deltas: list[dict], scale: str = "robust") -> float:
    """The colour limit of the class heatmap: ``max``, the largest |mean recall change|; ``robust`` (the default),
    its 95th percentile, so one collapsed population (random pruning) does not wash the others out (cells beyond
    it show the saturated colour and their number). At least 0.01."""
    values = [abs(d["recall_delta_mean"]) for d in deltas if d.get("recall_delta_mean") is not None]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return 0.01
    top = max(values) if scale == "max" else float(np.percentile(values, 95))
    return max(0.01, top)


def _noise(row: dict) -> bool:
    """A cell whose mean change is within one seed-to-seed standard deviation (several seeds only)."""
    std = row.get("recall_delta_std")
    return int(row.get("n") or 1) > 1 and std is not None and abs(row["recall_delta_mean"]) < std


def class_delta_grid(deltas: list[dict], out: Path, lim: float) -> Path:
    """One figure: class x sparsity heatmaps of the mean recall change against dense, one panel per population side
    by side on one colour scale; each cell shows the mean; hatched cells are within one seed standard deviation."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    pops = sorted({d["population"] for d in deltas})
    classes = list(dict.fromkeys(str(d["class"]) for d in deltas))
    widths = [len({d["round"] for d in deltas if d["population"] == p}) for p in pops]
    fig, axes = plt.subplots(
        1, len(pops), figsize=(1.6 + sum(0.7 * w + 0.9 for w in widths), 1.6 + 0.36 * len(classes)),
        squeeze=False, gridspec_kw={"width_ratios": widths},
    )  # fmt: skip
    im = None
    for ax, pop in zip(axes[0], pops, strict=True):
        rows = [d for d in deltas if d["population"] == pop]
        levels = sorted({r["round"] for r in rows}, key=float)
        grid = np.full((len(classes), len(levels)), np.nan)
        left = {r["round"]: 1 - float(r["sparsity"]) for r in rows}
        for r in rows:
            i, j = classes.index(str(r["class"])), levels.index(r["round"])
            grid[i, j] = r["recall_delta_mean"]
            if _noise(r):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, color="0.55"))
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        if grid.size <= 600:
            for (i, j), v in np.ndenumerate(grid):
                if not math.isnan(v):
                    color = "white" if abs(v) > 0.6 * lim else "black"
                    ax.text(j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7, color=color)
        n = max(int(r.get("n") or 1) for r in rows)
        ax.set_xticks(range(len(levels)), [f"{left[lv]:.2g}" for lv in levels], fontsize=8)
        ax.set_yticks(range(len(classes)), classes if ax is axes[0][0] else [""] * len(classes))
        ax.set_xlabel("weights remaining")
        ax.set_title(f"{pop}\n(n={n})", fontsize=9)
    axes[0][0].set_ylabel("class")
    bar = fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02)
    bar.set_label(f"recall change vs dense (±{lim:.2f})")
    path = out / "class_delta.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    MANIFEST.append(
        {
            "file": path.name,
            "kind": "class_delta",
            "populations": pops,
            "xlabel": "weights remaining",
            "ylabel": "class",
            "vmin": -float(lim),
            "vmax": float(lim),
        }
    )
    plt.close(fig)
    return path


def per_class_recall(tidy: list[dict], out: Path) -> Path | None:
    """Per population (panels side by side), each class's test recall (mean over seeds, band: ± std) against the
    weights remaining (log scale); round 0 is the dense model."""
    if not tidy:
        return None
    plt = _pyplot()
    pops = sorted({r["population"] for r in tidy})
    classes = list(dict.fromkeys(str(r["class"]) for r in tidy))
    fig, axes = plt.subplots(1, len(pops), figsize=(1.0 + 3.4 * len(pops), 3.6), squeeze=False, sharey=True)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, pop in zip(axes[0], pops, strict=True):
        rows = [r for r in tidy if r["population"] == pop and r.get("recall") is not None]
        n = len({r["run"] for r in rows})
        xs: list[float] = []
        for k, name in enumerate(classes):
            by_round: dict[int, list[dict]] = {}
            for r in rows:
                if str(r["class"]) == name:
                    by_round.setdefault(int(r["round"]), []).append(r)
            if not by_round:
                continue
            rounds = sorted(by_round)
            x = [max(1e-4, 1 - float(np.mean([r["sparsity"] for r in by_round[q]]))) for q in rounds]
            m = np.array([np.mean([r["recall"] for r in by_round[q]]) for q in rounds])
            sd = np.array([np.std([r["recall"] for r in by_round[q]], ddof=1) if len(by_round[q]) > 1 else 0.0
                           for q in rounds])  # fmt: skip
            ax.plot(x, m, marker="o", ms=3, lw=1.2, color=cmap(k % cmap.N), label=name)
            low, high = np.clip(m - sd, 0, 1), np.clip(m + sd, 0, 1)
            ax.fill_between(x, low, high, color=cmap(k % cmap.N), alpha=0.12, lw=0)
            xs += x
        _axis(ax, "density", "weights remaining (log)", xs)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{pop} (n={n})", fontsize=9)
    axes[0][0].set_ylabel("test recall")
    axes[0][-1].legend(title="class", bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    path = out / "per_class_recall.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    MANIFEST.append(
        {"file": path.name, "kind": "per_class_recall", "populations": pops, "xlabel": "weights remaining (log)",
         "ylabel": "test recall"}
    )  # fmt: skip
    plt.close(fig)
    return path


def most_impacted(deltas: list[dict], k: int = 3) -> dict[str, list[tuple[str, float, float]]]:
    """Per population, up to ``k`` classes whose recall fell most at its sparsest level *beyond seed noise*: the
    mean drop is larger than its seed-to-seed standard deviation (with one seed there is no noise estimate and
    nothing is listed). Entries: (class, change, level's weights remaining)."""
    out = {}
    for pop in sorted({d["population"] for d in deltas}):
        rows = [d for d in deltas if d["population"] == pop]
        last = max(rows, key=lambda d: float(d["sparsity"]))["sparsity"]
        at = sorted((d for d in rows if d["sparsity"] == last), key=lambda d: d["recall_delta_mean"])
        real = [d for d in at if int(d.get("n") or 1) > 1 and d["recall_delta_mean"] < -(d["recall_delta_std"] or 0)]
        out[pop] = [(str(d["class"]), float(d["recall_delta_mean"]), 1 - float(last)) for d in real[:k]]
    return out
