"""P7 ``prune.round_to``: CPU latency of compacted models whose kept filter counts are multiples of N, against the
same pruning with the counts as the ranking left them.

VGG-16 with BatchNorm for 32x32 inputs, 10 classes, eval mode. Each prunable conv loses the same share of its
filters (lowest L1 first; shares chosen so the kept counts are not multiples of 8, e.g. 64 -> 42); the "round_to"
model then gets each count rounded up to a multiple of N by prunelab's own ``filters.round_kept`` (the best-scored
removed filters return). Both are compacted (``filters.compact``) and timed with ``torch.inference_mode`` at batch
1 and 64, interleaved with the dense model (median of repetitions). Rounding up adds FLOPs; it pays off where the
latency ratio (round_to / as ranked) is below the FLOPs ratio.

    python -m benchmarks.round_to [--reps 30] [--multiple 8] [--share 0.35 0.6 0.8]
"""

from __future__ import annotations

import argparse
import copy
import math
from functools import partial

import torch
from torch import nn

from benchmarks.common import interleaved, print_table
from prunelab.models.vgg import VGG
from prunelab.pruning import masks as masking
from prunelab.pruning import units
from prunelab.pruning.cost import count_flops
from prunelab.pruning.groups import unit_groups

SHAPE = (3, 32, 32)
HEADER = [
    "share removed",
    "N",
    "batch",
    "kept (as ranked)",
    "kept (round_to)",
    "as ranked ms",
    "round_to ms",
    "latency ratio",
    "FLOPs ratio",
    "latency / FLOPs ratio",
]


def compacted(base: nn.Module, share: float, multiple: int | None) -> tuple[nn.Module, list[int], float]:
    """(compacted model, kept counts, FLOPs) with ``share`` of each conv's filters removed, lowest L1 first."""
    model = copy.deepcopy(base)
    groups = unit_groups(model)
    masking.attach_masks(model, masking.prunable_names(model))
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    alive = units.alive_units(model, groups)
    scores = {g.key: model.get_submodule(g.key).weight.detach().abs().flatten(1).sum(1) for g in groups}
    kept = {}
    for g in groups:
        keep = torch.zeros(g.out_channels, dtype=torch.bool)
        keep[torch.argsort(scores[g.key], descending=True)[: max(1, math.ceil((1 - share) * g.out_channels))]] = True
        kept[g.key] = keep
    if multiple:
        kept = units.round_kept(kept, alive, scores, multiple)
    masking.set_masks(model, units.group_masks(model, groups, kept))
    small = units.compact(model, groups).eval()
    return small, [int(k.sum()) for k in kept.values()], count_flops(small, SHAPE)["flops_dense"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--multiple", type=int, default=8)
    parser.add_argument("--share", type=float, nargs="+", default=[0.35, 0.6, 0.8])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base = VGG(SHAPE, 10, 16).eval()
    gen = torch.Generator().manual_seed(1)
    rows, results = [], []
    for share in args.share:
        ranked, counts, flops = compacted(base, share, None)
        rounded, counts_r, flops_r = compacted(base, share, args.multiple)
        for batch in (1, 64):
            x = torch.randn(batch, *SHAPE, generator=gen)
            reps = args.reps if batch == 1 else max(5, args.reps // 5)
            with torch.inference_mode():
                med = interleaved({"ranked": partial(ranked, x), "rounded": partial(rounded, x)}, reps)
            latency, flops_ratio = med["rounded"] / med["ranked"], flops_r / flops
            rows.append(
                [
                    f"{share:.0%}",
                    args.multiple,
                    batch,
                    "/".join(map(str, counts[:4])) + "/...",
                    "/".join(map(str, counts_r[:4])) + "/...",
                    1000 * med["ranked"],
                    1000 * med["rounded"],
                    latency,
                    flops_ratio,
                    latency / flops_ratio,
                ]
            )
            results.append({"share": share, "batch": batch, "latency_ratio": latency, "flops_ratio": flops_ratio})
    print_table(
        f"P7 prune.round_to={args.multiple}: VGG-16 (BN) 32x32, CPU, {torch.get_num_threads()} threads, "
        "inference_mode, median of interleaved repetitions (below 1 in the last column: rounding pays)",
        HEADER,
        rows,
    )
    return results


if __name__ == "__main__":
    main()
