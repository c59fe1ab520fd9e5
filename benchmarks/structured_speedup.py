"""P4 structured speedup: CPU latency of a compacted VGG-16 against the dense one, next to the FLOPs ratio.

VGG-16 with BatchNorm for 32x32 inputs (prunelab's CIFAR variant), 10 classes, eval mode. Filters are removed with
the same share in every prunable conv (lowest L1 norm first; the share is found by bisection so that the model's
FLOPs fall by 50% and 80%), the masked model is compacted (``prunelab.pruning.units.compact``: the removed
filters, their BatchNorm channels and the next conv's input channels are physically dropped), and both models are
timed with ``torch.inference_mode`` at batch 1 and 64 (median of interleaved repetitions). The compacted model's
outputs are checked against the masked model's. Target: speedup >= 0.8 x (dense FLOPs / compacted FLOPs).

    python -m benchmarks.structured_speedup [--reps 30] [--reduction 0.5 0.8]
"""

from __future__ import annotations

import argparse
import copy
import math
from functools import partial

import torch
from torch import nn

from benchmarks.common import interleaved, print_table, verdict
from prunelab.models.vgg import VGG
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.cost import count_flops
from prunelab.pruning.groups import unit_groups

SHAPE = (3, 32, 32)
HEADER = [
    "FLOPs removed",
    "batch",
    "dense ms",
    "compacted ms",
    "speedup",
    "FLOPs ratio",
    "speedup / FLOPs ratio",
    "target",
    "max |out diff|",
]


def prune_uniform(base: nn.Module, share: float) -> tuple[nn.Module, list]:
    """A masked copy of ``base`` with ``share`` of every prunable conv's filters removed (lowest L1 first)."""
    model = copy.deepcopy(base)
    groups = unit_groups(model)
    masking.attach_masks(model, masking.prunable_names(model))
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    alive = {}
    for g in groups:
        norms = model.get_submodule(g.key).weight.detach().abs().flatten(1).sum(1)
        keep = max(1, math.ceil((1 - share) * g.out_channels))
        mask = torch.zeros(g.out_channels, dtype=torch.bool)
        mask[torch.argsort(norms, descending=True)[:keep]] = True
        alive[g.key] = mask
    masking.set_masks(model, units.group_masks(model, groups, alive))
    return model, groups


def for_reduction(base: nn.Module, reduction: float) -> tuple[nn.Module, nn.Module, float]:
    """(masked, compacted, FLOPs ratio dense/compacted) with FLOPs reduced by about ``reduction``."""
    dense = count_flops(base, SHAPE)["flops_dense"]
    lo, hi = 0.0, 0.99
    for _ in range(20):
        mid = (lo + hi) / 2
        model, groups = prune_uniform(base, mid)
        if count_flops(model, SHAPE)["flops"] / dense > 1 - reduction:
            lo = mid
        else:
            hi = mid
    model, groups = prune_uniform(base, hi)
    compacted = units.compact(model, groups).eval()
    return model.eval(), compacted, dense / count_flops(compacted, SHAPE)["flops_dense"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--reduction", type=float, nargs="+", default=[0.5, 0.8])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base = VGG(SHAPE, 10, 16).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics so the output check means something
        for m in base.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    gen = torch.Generator().manual_seed(1)
    rows, results = [], []
    for reduction in args.reduction:
        masked, compacted, flops_ratio = for_reduction(base, reduction)
        for batch in (1, 64):
            x = torch.randn(batch, *SHAPE, generator=gen)
            with torch.inference_mode():
                diff = float((masked(x) - compacted(x)).abs().max())

                reps = args.reps if batch == 1 else max(5, args.reps // 5)
                med = interleaved({"dense": partial(base, x), "compacted": partial(compacted, x)}, reps)
            speedup = med["dense"] / med["compacted"]
            share = speedup / flops_ratio
            rows.append(
                [
                    f"{reduction:.0%}",
                    batch,
                    1000 * med["dense"],
                    1000 * med["compacted"],
                    speedup,
                    flops_ratio,
                    share,
                    verdict(share, 0.8),
                    f"{diff:.1e}",
                ]
            )
            results.append({"reduction": reduction, "batch": batch, "speedup": speedup, "flops_ratio": flops_ratio})
    print_table(
        f"P4 structured speedup: VGG-16 (BN) 32x32, CPU, {torch.get_num_threads()} threads, inference_mode, "
        f"median of interleaved repetitions (target: speedup >= 0.8 x FLOPs ratio)",
        HEADER,
        rows,
    )
    return results


if __name__ == "__main__":
    main()
