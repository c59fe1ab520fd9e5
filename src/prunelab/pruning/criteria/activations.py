"""Activation-based relevance of kernels, for the progressive simplification of Osaku et al. 2021.

- ``ActivationEnergy`` (the objective criterion; prunelab's choice, the paper's formula is not available): the
  mean squared value of each kernel's output map after its BatchNorm and ReLU, over ``num_samples`` training
  examples. Activation statistics as kernel relevance follow Hu et al. 2016 (APoZ) and the mean-activation
  criterion of Molchanov et al. 2017 ("Pruning convolutional neural networks for resource efficient inference").
- ``HumanRatings`` (the subjective criterion, a real human in the loop): for the layer being simplified it writes
  ``<run>/kernels/<layer>.png``, a grid of each kernel's activation maps on a few training images (one row per
  kernel), and a ratings template ``<layer>.csv``; a person marks kernels ``keep`` or ``drop`` in the ratings file
  (``layer,kernel,decision``) and reruns the same command. Scores are 1 (keep) and 0 (drop): use it with
  ``schedule=progressive schedule.rate=null schedule.threshold=0.5``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning import distributed
from prunelab.pruning.criteria import ScoringContext, record_outputs, required


@torch.no_grad()
def kernel_maps(model: nn.Module, groups, batches, num_samples: int) -> dict[str, Tensor]:
    """Post-BatchNorm, post-ReLU output maps (N, C, H, W) of every group's conv, for ``num_samples`` examples."""
    store: dict[str, list[Tensor]] = {g.key: [] for g in groups}

    def tap(conv: str):
        return lambda out: store[conv].append(functional.relu(out).float().cpu())

    taps = {(g.batchnorms[-1] if g.batchnorms else g.key): tap(g.key) for g in groups}
    record_outputs(model, batches, num_samples, taps)
    return {c: torch.cat(v)[:num_samples] for c, v in store.items()}


class ActivationEnergy:
    structured = True
    group_kinds = ("conv", "flatten")  # one output map per kernel
    needs_data = True
    scope = "layer"

    def __init__(self, num_samples: int = 1000):
        self.num_samples = int(num_samples)

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        if batches is None:
            raise PrunelabError("criterion", "activation_energy needs training batches", "run it through prunelab")
        maps = kernel_maps(model, context.groups, batches, self.num_samples)
        out = {}
        for c, m in maps.items():  # DDP: sums and counts over every rank's samples, then the mean
            total = distributed.all_sum(m.double().pow(2).sum((0, 2, 3)))
            count = distributed.all_sum(
                torch.tensor([float(m.shape[0] * m.shape[2] * m.shape[3])], dtype=torch.float64)
            )
            out[c] = (total / count).float()
        return out


def save_kernel_grid(maps: Tensor, path: Path, images: int = 8) -> None:
    """One row per kernel, one column per image; each map scaled to [0, 1] on its own."""
    from torchvision.utils import save_image

    m = maps[:images].transpose(0, 1)  # (C, images, H, W)
    lo = m.amin((2, 3), keepdim=True)
    hi = m.amax((2, 3), keepdim=True)
    m = (m - lo) / (hi - lo).clamp(min=1e-12)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(m.reshape(-1, 1, *m.shape[2:]), path, nrow=m.shape[1], padding=1, pad_value=1.0)


def read_ratings(path: Path) -> dict[str, dict[int, str]]:
    out: dict[str, dict[int, str]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            decision = row["decision"].strip().lower()
            if decision not in ("keep", "drop"):
                raise PrunelabError(
                    "criterion.ratings",
                    f"{path}: decision {decision!r} for {row['layer']} kernel {row['kernel']}",
                    "write keep or drop",
                )
            out.setdefault(row["layer"].strip(), {})[int(row["kernel"])] = decision
    return out


class HumanRatings:
    structured = True
    group_kinds = ("conv", "flatten")  # one output map per kernel
    needs_data = True
    scope = "layer"
    interactive = True

    def __init__(self, ratings: str | None = None, export_dir: str | None = None, images: int = 8):
        self.ratings = Path(ratings) if ratings else None
        self.export_dir = Path(export_dir) if export_dir else None
        self.images = int(images)

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        layer = context.extra.get("layer")
        groups = [g for g in context.groups if layer is None or g.key == layer]
        export = self.export_dir or Path(context.extra.get("run_dir", ".")) / "kernels"
        rated = read_ratings(self.ratings) if self.ratings and self.ratings.exists() else {}
        missing = [g for g in groups if len(rated.get(g.key, {})) < g.out_channels]
        if missing:
            maps = kernel_maps(model, missing, batches, self.images)
            for g in missing:
                save_kernel_grid(maps[g.key], export / f"{g.key}.png", self.images)
                (export / f"{g.key}.csv").write_text(
                    "layer,kernel,decision\n" + "".join(f"{g.key},{k},keep\n" for k in range(g.out_channels))
                )
            where, layer = self.ratings or "<ratings file>", missing[0].key
            grid, template = export / f"{layer}.png", export / f"{layer}.csv"
            raise PrunelabError(
                "criterion.ratings",
                f"no ratings for layer {layer} in {where}: look at {grid} (row k = kernel k, one column per image)",
                f"add the rows of {template} to {where}, mark each kernel keep or drop, and rerun the same command",
            )
        return {
            g.key: torch.tensor([1.0 if rated[g.key][k] == "keep" else 0.0 for k in range(g.out_channels)])
            for g in groups
        }
