"""Structure of a model: FLOPs of its Conv and Linear layers, counting masked weights as removed.

FLOPs follow ``torch.utils.flop_counter``'s convention: 2 per multiply-accumulate, per example. Only Conv and
Linear layers are counted (biases, BatchNorm, activations and pooling are left out; they are a small share).
A masked weight removes its multiply-accumulates, which is what an ideal sparse kernel could skip: it is a
*theoretical* count, not a speedup (unstructured sparsity does not make dense kernels faster).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Dense and effective (mask-aware) FLOPs for one example of shape ``input_shape`` (no batch dim)."""
    positions: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, _COUNTED):

            def hook(mod, inputs, output, name=name):
                if isinstance(mod, nn.Linear):
                    positions[name] = int(output[0].numel() // output.shape[-1]) if output.dim() > 2 else 1
                else:
                    positions[name] = int(output[0, 0].numel())

            hooks.append(module.register_forward_hook(hook))
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    dense = effective = 0.0
    for name, pos in positions.items():
        weight = cast(Tensor, model.get_submodule(name).weight)
        dense += 2.0 * weight.numel() * pos
        effective += 2.0 * float((weight != 0).sum()) * pos
    return {"flops": effective, "flops_dense": dense, "flops_ratio": effective / dense if dense else 1.0}


def _latency_ms(model: nn.Module, x: torch.Tensor, reps: int, key: str) -> dict[str, float]:
    """``key``: the median of ``reps`` timed forward passes (ms); ``key_iqr``: their interquartile range, so an
    outlier-ridden measurement shows as one; ``key_reps``: how many."""
    import statistics
    import time

    times = []
    with torch.inference_mode():
        model(x)  # warm-up
        for _ in range(reps):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
    quartiles = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {key: statistics.median(times), f"{key}_iqr": quartiles[2] - quartiles[0], f"{key}_reps": float(reps)}


def export_report(model: nn.Module, groups, sample: torch.Tensor, reps: int = 20) -> tuple[nn.Module, dict]:
    """Compact ``model`` physically, check it gives the same outputs, and time both (batch 1 and the sample)."""
    from prunelab.pruning.units import compact

    compacted = compact(model, groups).eval()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = sample.to(device).float()  # already as the model sees it (the test loader's transform applied)
    try:
        with torch.inference_mode():
            diff = float((model(x) - compacted(x)).abs().max())
        report = {
            "compact_max_abs_diff": diff,
            "compact_parameters": sum(p.numel() for p in compacted.parameters()),
            **_latency_ms(model, x[:1], reps, "latency_ms_b1_masked"),
            **_latency_ms(compacted, x[:1], reps, "latency_ms_b1_compact"),
            **_latency_ms(model, x, max(3, reps // 4), f"latency_ms_b{len(x)}_masked"),
            **_latency_ms(compacted, x, max(3, reps // 4), f"latency_ms_b{len(x)}_compact"),
        }
    finally:
        model.train(was_training)
    return compacted, report
