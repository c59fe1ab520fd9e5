"""P8 structural reach: what structured pruning can remove from five models, the issue-14 table's prunelab column.

Each model at initialisation (seed 0), every prunable group of the default kinds (``auto``: all four for L1) loses
50% of its units by L1 norm (``scope=layer``: half of each group), masks are compacted (``filters.compact``), and
the table gives the parameters and FLOPs left (``torch.utils.flop_counter`` on the compacted copy against the
dense model) and the largest output difference compact vs masked. A last block gives VGG-11's kept share per conv
after a *global* L1 ranking to 50% of all filters with ``prune.normalize`` none (raw) and auto (mean, the
structured default). No training: structure only.

    python -m benchmarks.reach
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import print_table
from prunelab.models.convnets import ConvNet
from prunelab.models.mlp import MLP
from prunelab.models.resnet import ResNet
from prunelab.models.vgg import VGG
from prunelab.models.wide_resnet import WideResNet
from prunelab.pruning import masks as masking
from prunelab.pruning import rewind as rewinding
from prunelab.pruning import units
from prunelab.pruning.allocation import Allocation
from prunelab.pruning.callback import PruningCallback
from prunelab.pruning.criteria import ScoringContext
from prunelab.pruning.criteria.filters import L1Filter
from prunelab.pruning.groups import refused, unit_groups
from prunelab.pruning.schedules import OneShot

MODELS = {
    "LeNet-300-100": (lambda: MLP((1, 28, 28), 10, (300, 100)), (1, 28, 28)),
    "cnn_small_bn": (lambda: ConvNet((1, 28, 28), 10, [32, "M", 64, "M", 64], (128,), batch_norm=True), (1, 28, 28)),
    "VGG-11": (lambda: VGG((3, 32, 32), 10, 11), (3, 32, 32)),
    "ResNet-20 (option A)": (lambda: ResNet((3, 32, 32), 10, 20), (3, 32, 32)),
    "WRN-16-4": (lambda: WideResNet((3, 32, 32), 10, 16, 4), (3, 32, 32)),
}


def flops(model: torch.nn.Module, shape) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    return counter.get_total_flops()


def pruned(make, kinds="all", allocation: Allocation | None = None, scope: str = "layer"):
    """(dense, masked, groups) with half of each group's units (or of all units: scope global) removed by L1."""
    torch.manual_seed(0)
    dense = make().eval()
    model = make().eval()
    model.load_state_dict(dense.state_dict())
    masking.attach_masks(model, masking.prunable_names(model))
    groups = unit_groups(model, kinds)
    masking.attach_masks(model, units.companion_names(groups, model), primary=False)
    cb = PruningCallback(
        L1Filter(scope),
        OneShot(0.5),
        rewinding.Rewind(),
        1,
        "unused",
        groups=groups,
        allocation=allocation or Allocation(),
    )
    context = ScoringContext(round=1, seed=0, groups=groups)
    current = masking.get_masks(model, primary_only=True)
    masking.set_masks(
        model, cb.select_masks(model, cb.criterion.scores(model, current, context=context), current, 0.5, context)
    )
    return dense, model, groups


def reach_rows() -> list[list[object]]:
    rows = []
    for name, (make, shape) in MODELS.items():
        dense, model, groups = pruned(make)
        small = units.compact(model, groups).eval()
        x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = float((small(x) - model(x)).abs().max())
        kinds = {k: sum(g.kind == k for g in groups) for k in ("conv", "flatten", "linear", "residual")}
        params = sum(p.numel() for p in small.parameters()) / sum(p.numel() for p in dense.parameters())
        refused_layers = [n for n, why in refused(dense).items() if "output" not in why]  # not the logits layer
        rows.append(
            [
                name,
                ", ".join(f"{v} {k}" for k, v in kinds.items() if v),
                len(refused_layers),
                f"{params:.1%}",
                f"{flops(small, shape) / flops(dense, shape):.1%}",
                f"{diff:.1e}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    print_table(
        "P8 structural reach: L1, 50% of each group's units, compacted (no training)",
        ["model", "groups (kind)", "layers refused", "parameters left", "FLOPs left", "max |compact - masked|"],
        reach_rows(),
    )
    rows = []
    for how in ("none", "mean"):
        _, model, groups = pruned(MODELS["VGG-11"][0], "conv", Allocation(normalize=how), scope="global")
        alive = units.alive_units(model, groups)
        rows.append([how] + [f"{int(alive[g.key].sum())}/{g.out_channels}" for g in groups])
    names = [g.key for g in unit_groups(MODELS["VGG-11"][0](), "conv")]
    print_table("VGG-11 at init, global L1 to 50% of all conv filters: kept per layer", ["normalize", *names], rows)


if __name__ == "__main__":
    main()
