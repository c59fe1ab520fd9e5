"""Cross-rank reduction for data-dependent criteria, so every rank of a multi-process (DDP) job prunes identically.

Under DDP each rank sees its own shard of the training batches. A criterion that scores from data reduces its
*statistics* before turning them into scores: sums and counts are summed over ranks (Taylor, SNIP, activation
energy), feature matrices are concatenated in rank order (PLS + VIP), so every rank computes the same scores from
the union of the shards, and :func:`check_identical` verifies the resulting masks with one all-reduce. Outside a
process group every helper is the identity. Works on any backend (gloo on CPU, NCCL on GPUs).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from prunelab.errors import PrunelabError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_sum(t: Tensor) -> Tensor:
    """The element-wise sum over ranks (a new tensor, on ``t``'s device and dtype)."""
    if world_size() == 1:
        return t
    out = t.detach().to(_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def all_cat(t: Tensor) -> Tensor:
    """Rows of ``t`` from every rank, concatenated in rank order (ranks may hold different numbers of rows)."""
    if world_size() == 1:
        return t
    dev = _device()
    n = torch.tensor([t.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    most = int(max(s.item() for s in sizes))
    padded = torch.zeros((most, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)]).to(t.device)


def check_identical(masks: dict[str, Tensor]) -> None:
    """Raise if the ranks' masks differ (compares a checksum: the min and max over ranks must agree)."""
    if world_size() == 1:
        return
    local = torch.stack(
        [
            m.detach().double().cpu().flatten().dot(torch.arange(1, m.numel() + 1).double())
            for _, m in sorted(masks.items())
        ]
    )
    lo, hi = local.clone().to(_device()), local.clone().to(_device())
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise PrunelabError(
            "criterion",
            "ranks computed different masks",
            "report this: criteria must reduce their statistics across ranks (prunelab.pruning.distributed)",
        )
