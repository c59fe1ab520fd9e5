"""P2 mask overhead: a training step of a 90%-sparse masked model against the same model unmasked.

Three variants of one model, same weights, same batches, SGD with momentum:
- dense: the plain model (no masks), the baseline;
- prunelab: prunelab's masks (``prunelab.pruning.masks``: a parametrization ``w * mask`` with a persistent buffer),
  90% of the prunable weights masked (global magnitude);
- torch.nn.utils.prune: the same masks through ``prune.custom_from_mask`` (a forward pre-hook that recomputes
  ``weight = weight_orig * weight_mask`` before each forward);
- reference, not adopted: plain weights zeroed once, the gradient masked in place after it is accumulated (a
  post-accumulate-grad hook), no product in the forward pass. Exact only while the stored pruned weights stay 0
  (element-wise optimizers with masked state), which is why prunelab does not use it (docs/performance.md, P2).
Models: LeNet-300-100 and Conv-4 on MNIST-shaped batches of 128. Reported: median ms per step over ``--reps``
interleaved repetitions of ``--steps`` steps, and each variant's time as a multiple of dense (target <= 1.05).

    python -m benchmarks.mask_overhead [--reps 7] [--steps 40] [--conv-steps 3]
"""

from __future__ import annotations

import argparse
import copy
from functools import partial

import torch
from torch import nn
from torch.nn.utils import prune

from benchmarks.common import interleaved, print_table, verdict
from prunelab.models.convnets import ConvNet
from prunelab.models.mlp import MLP
from prunelab.pruning import masks as masking
from prunelab.training import fastpaths

SHAPE = (1, 28, 28)


def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "LeNet-300-100": MLP(SHAPE, 10, (300, 100)),
        "Conv-4": ConvNet(SHAPE, 10, channels=[64, 64, "M", 128, 128, "M"], hidden=[256, 256]),
    }


def sparse_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """Global magnitude masks over every Conv/Linear weight."""
    names = masking.prunable_names(model)
    weights = {n: model.get_parameter(n).detach() for n in names}
    flat = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = flat.kthvalue(int(sparsity * flat.numel())).values
    return {n: (w.abs() > threshold).float() for n, w in weights.items()}


def variants(base: nn.Module, sparsity: float) -> dict[str, nn.Module]:
    masks = sparse_masks(base, sparsity)
    ours = copy.deepcopy(base)
    fastpaths.install_mask_fast_path()  # as runs build their models (the lean mask property, P2)
    masking.attach_masks(ours, list(masks))
    masking.set_masks(ours, masks)
    theirs = copy.deepcopy(base)
    for name, mask in masks.items():
        mod, _, attr = name.rpartition(".")
        prune.custom_from_mask(theirs.get_submodule(mod), attr, mask)
    reference = copy.deepcopy(base)
    for name, mask in masks.items():
        param = reference.get_parameter(name)
        with torch.no_grad():
            param.mul_(mask)
        param.register_post_accumulate_grad_hook(partial(_mask_grad, mask=mask))
    return {
        "dense": base,
        "prunelab": ours,
        "torch.nn.utils.prune": theirs,
        "reference: stored zeros + in-place gradient mask (not adopted)": reference,
    }


def _mask_grad(param: torch.Tensor, mask: torch.Tensor) -> None:
    param.grad.mul_(mask)


def stepper(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def run() -> None:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    return run


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40, help="steps per repetition (LeNet-300-100)")
    parser.add_argument("--conv-steps", type=int, default=3, help="steps per repetition (Conv-4, ~1 s per step)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sparsity", type=float, default=0.9)
    args = parser.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    rows, results = [], []
    for model_name, base in models().items():
        steps = args.steps if model_name.startswith("LeNet") else args.conv_steps
        batches = [
            (
                torch.randn(args.batch_size, *SHAPE, generator=gen),
                torch.randint(0, 10, (args.batch_size,), generator=gen),
            )
            for _ in range(steps)
        ]
        vs = variants(base, args.sparsity)
        med = interleaved({k: stepper(m, batches) for k, m in vs.items()}, args.reps)
        for k, t in med.items():
            ratio = t / med["dense"]
            target = "" if k == "dense" or k.startswith("reference") else verdict(ratio, 1.05, higher_is_better=False)
            rows.append([model_name, k, 1000 * t / steps, ratio, target])
            results.append({"model": model_name, "variant": k, "ms_per_step": 1000 * t / steps, "x_dense": ratio})
    print_table(
        f"P2 mask overhead: {args.sparsity:.0%} sparse, batch {args.batch_size}, {torch.get_num_threads()} threads, "
        f"median of {args.reps} repetitions (target <= 1.05x dense)",
        ["model", "variant", "ms/step", "x dense", "target"],
        rows,
    )
    return results


if __name__ == "__main__":
    main()
