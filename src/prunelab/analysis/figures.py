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
    cols = 1 if len(metrics) == 1 else 2
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
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
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
    ax.set_xlabel("FLOPs left (share of dense; masked weights counted as removed)")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy against FLOPs (a count, not a speed-up)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    fig.tight_layout()
    path = out / "flops_vs_accuracy.png"
    fig.savefig(path, dpi=120)
    MANIFEST.append({"file": path.name, "kind": "flops", "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()})
    plt.close(fig)
    return path


def shared_limit(deltas: list[dict]) -> float:
    """The colour limit every heatmap of a report uses: the largest |mean recall change|, at least 0.01."""
    values = [abs(d["recall_delta_mean"]) for d in deltas if d.get("recall_delta_mean") is not None]
    return max([0.01, *[v for v in values if not math.isnan(v)]])


def class_heatmap(rows: list[dict], population: str, out: Path, lim: float) -> Path:
    plt = _pyplot()
    classes = list(dict.fromkeys(str(r["class"]) for r in rows))
    levels = sorted({r["round"] for r in rows}, key=float)
    grid = np.full((len(classes), len(levels)), np.nan)
    left = {}
    for r in rows:
        grid[classes.index(str(r["class"])), levels.index(r["round"])] = r["recall_delta_mean"]
        left[r["round"]] = 1 - float(r["sparsity"])
    fig, ax = plt.subplots(figsize=(2.4 + 0.75 * len(levels), 1.4 + 0.38 * len(classes)))
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    if grid.size <= 400:
        for (i, j), v in np.ndenumerate(grid):
            if not math.isnan(v):
                ax.text(
                    j,
                    i,
                    f"{v:+.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(v) > 0.6 * lim else "black",
                )
    ax.set_xticks(range(len(levels)), [f"{left[lv]:.3g}" for lv in levels])
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("weights remaining")
    ax.set_ylabel("class")
    ax.set_title(f"recall change vs dense: {population}", fontsize=9)
    bar = fig.colorbar(im, ax=ax)
    bar.set_label(f"recall change (scale ±{lim:.2f}, shared by the report)")
    fig.tight_layout()
    path = out / f"class_delta_{slug(population)}.png"
    fig.savefig(path, dpi=120)
    vmin, vmax = im.get_clim()
    MANIFEST.append(
        {
            "file": path.name,
            "kind": "class_delta",
            "population": population,
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "vmin": float(vmin),
            "vmax": float(vmax),
        }
    )
    plt.close(fig)
    return path


def most_impacted(deltas: list[dict], k: int = 3) -> dict[str, list[tuple[str, float, float]]]:
    """Per population, the ``k`` classes whose recall fell most at its sparsest level: (class, change, level's
    weights remaining)."""
    out = {}
    for pop in sorted({d["population"] for d in deltas}):
        rows = [d for d in deltas if d["population"] == pop]
        last = max(rows, key=lambda d: float(d["sparsity"]))["sparsity"]
        at = sorted((d for d in rows if d["sparsity"] == last), key=lambda d: d["recall_delta_mean"])
        out[pop] = [(str(d["class"]), float(d["recall_delta_mean"]), 1 - float(last)) for d in at[:k]]
    return out
