"""Hooker et al.'s per-class impact and Pruning Identified Exemplars (docs/methods.md §3), on prediction arrays.

Populations are arrays over models: ``preds`` (n_models, n_examples) predicted labels, ``labels`` (n_examples,).

- Impacted classes: for class c, Welch's two-sided t-test (``scipy.stats.ttest_ind(equal_var=False)``) between
  the dense models' ``recall_c - mean top-1 of the dense population`` and the compressed models'
  ``recall_c - mean top-1 of that population`` ("mean-shifted class accuracy"); p <= alpha (0.05) means the
  class is disparately impacted.
- PIEs: an example whose modal predicted label over the compressed population differs from the modal label over
  the dense population. Ties among modes go to the **largest** class index (the authors' ``mode().max()``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def per_class_recall(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(n_models, C) recall of each class for each model (NaN for a class absent from ``labels``)."""
    preds = np.atleast_2d(preds)
    out = np.full((len(preds), num_classes), np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[:, c] = (preds[:, mask] == c).mean(1)
    return out


def top1(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (np.atleast_2d(preds) == labels[None]).mean(1)


@dataclass
class ClassImpact:
    t: np.ndarray  # (C,) Welch t statistics
    p: np.ndarray  # (C,) two-sided p-values
    impacted: np.ndarray  # (C,) bool, p <= alpha
    shift: np.ndarray  # (C,) mean-shifted recall difference, compressed - dense

    @property
    def count(self) -> int:
        return int(self.impacted.sum())


def welch(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise Welch t statistics and two-sided p-values of a against b (``scipy.stats.ttest_ind(a, b,
    equal_var=False)``, which tests/test_hooker.py checks it equals; without its per-call overhead, which dominated
    the null draws). NaN where a column is constant in both or absent."""
    na, nb = len(a), len(b)
    va, vb = a.var(0, ddof=1) / na, b.var(0, ddof=1) / nb
    va, vb = np.where(va < 1e-24, 0.0, va), np.where(vb < 1e-24, 0.0, vb)  # rounding of a constant column
    with np.errstate(invalid="ignore", divide="ignore"):
        se2 = va + vb
        t = (a.mean(0) - b.mean(0)) / np.sqrt(se2)
        df = se2**2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        p = np.where(np.isinf(t), 0.0, 2 * stats.t.sf(np.abs(t), df))  # constant groups, different means: p = 0
    return np.asarray(t, float), np.asarray(p, float)


def class_impact(
    dense: np.ndarray, compressed: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float = 0.05
) -> ClassImpact:
    """Welch tests of mean-shifted per-class recall between two populations of predictions."""
    if len(dense) < 2 or len(compressed) < 2:
        raise ValueError("each population needs at least 2 models for a t-test")
    d = per_class_recall(dense, labels, num_classes) - top1(dense, labels).mean()
    c = per_class_recall(compressed, labels, num_classes) - top1(compressed, labels).mean()
    t, p = welch(c, d)
    impacted = np.nan_to_num(p, nan=1.0) <= alpha
    return ClassImpact(t, p, impacted, np.nanmean(c, 0) - np.nanmean(d, 0))


def modal_labels(preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Per example, the most frequent predicted label over the models; ties go to the largest label."""
    preds = np.atleast_2d(preds)
    counts = np.zeros((preds.shape[1], num_classes), dtype=np.int64)
    for row in preds:
        counts[np.arange(preds.shape[1]), row] += 1
    # argmax returns the first maximum: search the reversed class axis to get the largest tied label
    return num_classes - 1 - np.argmax(counts[:, ::-1], axis=1)


def pies(dense: np.ndarray, compressed: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean (n_examples,): Pruning Identified Exemplars (modal labels of the two populations differ)."""
    return modal_labels(dense, num_classes) != modal_labels(compressed, num_classes)


def pie_accuracy(preds: np.ndarray, labels: np.ndarray, pie: np.ndarray) -> dict[str, float]:
    """Mean top-1 of a population on the PIE and non-PIE subsets."""
    out = {"pie_count": int(pie.sum()), "pie_share": float(pie.mean())}
    for name, subset in (("pie", pie), ("non_pie", ~pie)):
        out[f"acc_{name}"] = (
            float(top1(np.atleast_2d(preds)[:, subset], labels[subset]).mean()) if subset.any() else float("nan")
        )
    return out


# -- over run folders ---------------------------------------------------------------------------------------------
def _population_predictions(runs, sub: str | None = None, round: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(preds (n_models, N), labels (N,)) from each run's last round (or ``round``; or its quantized predictions
    ``sub``)."""
    preds, labels = [], None
    for run in runs:
        last = f"r{(run.rows[-1]['round'] if round is None else round):02d}"
        path = run.path / "rounds" / last / (f"quant/{sub}/predictions.npz" if sub else "predictions.npz")
        data = np.load(path)
        if labels is not None and not np.array_equal(labels, data["labels"]):
            raise ValueError(f"{run.path}: test labels differ from the population's: not comparable runs")
        labels = data["labels"]
        preds.append(data["preds"])
    if labels is None:
        raise ValueError("no runs to read predictions from")
    return np.stack(preds), labels


def _level(run) -> float:
    sched = run.config.get("schedule", {})
    if "final_sparsity" in sched:
        return round(float(sched["final_sparsity"]), 4)
    return round(float(run.rows[-1]["target_sparsity"]), 4)


def hooker_table(
    runs, alpha: float = 0.05, modal: dict | None = None, names: dict | None = None
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Rows per compression level (and quantization method) against the dense population.

    Populations at several target sparsities with a dense one (sparsity 0): each level against it. Iterative runs
    (several rounds each, no dense level): per population (runs differing only in the seed), round 0 is the dense
    population and every later round a compressed one. Returns the table and, per compressed population, its PIE
    mask (for export and galleries); ``modal``, when given, receives each population's (dense, compressed) modal
    labels; ``names`` (run folder -> population name, e.g. the report's short names) names iterative populations.
    """
    done = [r for r in runs if r.status == "complete" and r.rows]
    levels: dict[float, list] = {}
    for run in done:
        levels.setdefault(_level(run), []).append(run)
    if 0.0 in levels:
        dense, labels = _population_predictions(levels[0.0])
        pops = {f"sparsity {lvl:g}": _population_predictions(rs)[0] for lvl, rs in sorted(levels.items())}
        quant = sorted({p.name for r in levels[0.0] for p in (r.path / "rounds").glob("r*/quant/*")})
        for method in quant:
            pops[f"{method} (dense)"] = _population_predictions(levels[0.0], method)[0]
        return _rows({name: (dense, preds) for name, preds in pops.items()}, labels, alpha, modal)
    if done and all(len(r.rows) > 1 for r in done):
        return _iterative(done, alpha, modal, names)
    raise ValueError("no dense population (sparsity 0, or round 0 of iterative runs) to compare with")


def _iterative(
    done: list, alpha: float, modal: dict | None, names: dict | None = None
) -> tuple[list[dict], dict[str, np.ndarray]]:
    from prunelab.analysis.context import short_labels
    from prunelab.runs.folders import group_labels

    names = names or short_labels(group_labels(done))
    by_label: dict[str, list] = {}
    for run in done:
        by_label.setdefault(names[run.path], []).append(run)
    pairs, labels = {}, None
    for label, members in sorted(by_label.items()):
        dense, labels = _population_predictions(members, round=0)
        rounds = sorted({row["round"] for row in members[0].rows})
        if any(sorted(row["round"] for row in m.rows) != rounds for m in members):
            continue  # members that stopped at different rounds: not one population per round
        for r in rounds:
            sparsity = float(np.mean([m.rows[r]["sparsity"] for m in members]))
            pairs[f"{label}, round {r} (sparsity {sparsity:.3g})"] = (
                dense,
                _population_predictions(members, round=r)[0],
            )
    if labels is None or not pairs:
        raise ValueError("no population with the same rounds in every member")
    return _rows(pairs, labels, alpha, modal)


def _rows(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray, alpha: float, modal: dict | None
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One row per (dense, compressed) pair of prediction populations."""
    num_classes = int(max(labels.max(), *(max(d.max(), c.max()) for d, c in pairs.values())) + 1)
    rows, masks = [], {}
    for name, (dense, preds) in pairs.items():
        acc = top1(preds, labels)
        row = {
            "population": name,
            "models": len(preds),
            "top1_mean": float(acc.mean()),
            "top1_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        }
        same = preds is dense or (preds.shape == dense.shape and np.array_equal(preds, dense))
        if not same and len(preds) >= 2 and len(dense) >= 2:
            impact = class_impact(dense, preds, labels, num_classes, alpha)
            row["impacted_classes"] = impact.count
            row["impacted_ids"] = " ".join(str(int(i)) for i in np.nonzero(impact.impacted)[0])
        pie = pies(dense, preds, num_classes)
        masks[name] = pie
        if modal is not None:
            modal[name] = (modal_labels(dense, num_classes), modal_labels(preds, num_classes))
        row.update(pie_accuracy(preds, labels, pie))
        dense_acc = pie_accuracy(dense, labels, pie)
        row["dense_acc_pie"], row["dense_acc_non_pie"] = dense_acc["acc_pie"], dense_acc["acc_non_pie"]
        rows.append(row)
    return rows, masks


def _scaled_rgb(images: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The chosen images as (n, h, w, 3), each scaled to [0, 1] on its own (grey repeated into RGB)."""
    x = np.asarray(images[chosen], dtype=float)
    if x.ndim == 4:  # (n, c, h, w) -> (n, h, w[, c])
        x = x[:, 0] if x.shape[1] == 1 else np.moveaxis(x, 1, -1)
    lo = x.reshape(len(x), -1).min(1).reshape(-1, *[1] * (x.ndim - 1))
    hi = x.reshape(len(x), -1).max(1).reshape(-1, *[1] * (x.ndim - 1))
    x = (x - lo) / np.maximum(hi - lo, 1e-12)
    if x.ndim == 3:  # grey -> RGB, as the gray colour map shows it
        x = np.repeat(x[..., None], 3, axis=-1)
    return x


def _mosaic(x: np.ndarray, columns: int, band: int) -> tuple[np.ndarray, int, int]:
    """The tiles on one RGBA canvas (alpha 0 between them), a label band above each: (canvas, cell h, cell w)."""
    n, h, w = x.shape[:3]
    rows, gap = -(-n // columns), max(2, w // 8)
    cell_h, cell_w = band + h, gap + w
    mosaic = np.zeros((rows * cell_h, columns * cell_w - gap, 4))
    for k, img in enumerate(x):
        top, left = (k // columns) * cell_h + band, (k % columns) * cell_w
        mosaic[top : top + h, left : left + w, :3] = img[..., :3]
        mosaic[top : top + h, left : left + w, 3] = 1.0
    return mosaic, cell_h, cell_w


def pie_gallery(
    images: np.ndarray,
    labels: np.ndarray | None,
    indices: np.ndarray,
    path,
    columns: int = 10,
    class_names: list[str] | None = None,
    title: str = "",
    modal: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """A labelled grid of PIE images (the first ``columns * 4``), each scaled to [0, 1], titled with its true class
    and, with ``modal`` (the dense and compressed populations' modal labels), "dense -> compressed". One image in
    one axes with the labels as text (a subplot per tile took ~1.8 s a gallery)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = np.asarray(indices)[: columns * 4]
    if len(chosen) == 0:
        return
    x = _scaled_rgb(images, chosen)
    n, h, w = x.shape[:3]
    rows = -(-n // columns)
    band = max(4, h * (4 if modal is not None else 2) // 5)  # above each tile: its labels
    mosaic, cell_h, cell_w = _mosaic(x, columns, band)
    fig_h = 1.35 * rows + 0.5
    fig = plt.figure(figsize=(1.15 * columns, fig_h))
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.5 / fig_h - 0.01))
    ax.imshow(mosaic, interpolation="nearest", aspect="equal")
    ax.axis("off")

    def named(c: int) -> str:
        return (class_names[c] if class_names and c < len(class_names) else str(c))[:10]

    if labels is not None:
        for k, i in enumerate(chosen):
            text = named(int(labels[i]))
            if modal is not None:
                text = f"{text}\n{named(int(modal[0][i]))}→{named(int(modal[1][i]))}"
            ax.text(
                (k % columns) * cell_w + w / 2,
                (k // columns) * cell_h + band - 1,
                text,
                fontsize=7,
                ha="center",
                va="bottom",
                linespacing=1.0,
            )
    what = "true class, then dense → compressed modal prediction" if modal else "titled with their true class"
    fig.suptitle(
        f"{title}: {len(indices)} PIEs (first {len(chosen)}; {what})" if title else f"{len(indices)} PIEs",
        fontsize=10,
        y=1 - 0.1 / fig_h,
        va="top",
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
