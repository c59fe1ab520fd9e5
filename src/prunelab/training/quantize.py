"""Post-training quantization as compression methods, evaluated with the same per-class metrics (Hooker et al.
2019 compare pruning with quantization; docs/methods.md §3).

Methods, all on CPU with what torch 2.14 ships (``torch.ao.quantization``, which torch marks deprecated in favour
of torchao; it still works here):
- ``fp16``: weights and activations in half precision (plain ``model.half()``; CPU float16 kernels).
- ``dynamic_int8``: dynamic quantization of Linear layers to int8 (``quantize_dynamic``; convs stay float, as
  dynamic quantization has no conv kernels).
- ``static_int8``: FX graph mode static quantization (``prepare_fx``/``convert_fx``, x86 backend, default qconfig:
  per-channel int8 weights, uint8 activations), calibrated on ``calibration_batches`` training batches.

Masks are folded into plain weights first, so a pruned model is quantized with its zeros.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings

import torch
from torch import Tensor, nn

from prunelab.errors import PrunelabError
from prunelab.pruning.units import bake

METHODS = ("fp16", "dynamic_int8", "static_int8")


class _Half(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()


def _calibrated_static(model: nn.Module, batches) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    first = batches[0][0]
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (first,))
    with torch.inference_mode():
        for x, _ in batches:
            prepared(x)
    return convert_fx(prepared)


def quantize(model: nn.Module, method: str, calibration: list[tuple[Tensor, Tensor]]) -> nn.Module:
    """A quantized CPU copy of ``model`` (masks folded in)."""
    if method not in METHODS:
        raise PrunelabError("quantize.methods", f"unknown method {method!r}", f"use any of {', '.join(METHODS)}")
    plain = bake(model).cpu().eval()
    with warnings.catch_warnings(), nondeterministic_ok():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        try:
            if method == "fp16":
                return _Half(plain).eval()
            if method == "dynamic_int8":
                from torch.ao.quantization import quantize_dynamic

                return quantize_dynamic(plain, {nn.Linear}, dtype=torch.qint8).eval()
            return _calibrated_static(plain, calibration).eval()
        except PrunelabError:
            raise
        except Exception as exc:  # e.g. an op FX static quantization cannot handle
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PrunelabError(
                "quantize.methods",
                f"{method} failed for {type(model).__name__}: {first}",
                f"drop {method} from quantize.methods",
            ) from exc


def serialized_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


@contextlib.contextmanager
def nondeterministic_ok():
    """Quantized CPU kernels have no deterministic variants (``quantized_resize_cpu_``); they are deterministic in
    practice on one machine, so the run's ``deterministic=true`` is lifted around them only."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


@torch.inference_mode()
def predict(model: nn.Module, loader) -> tuple[Tensor, Tensor, float]:
    """(probabilities, labels, seconds) over a loader, on CPU."""
    probs, labels = [], []
    start = time.perf_counter()
    with nondeterministic_ok():
        for x, y in loader:
            probs.append(torch.softmax(model(x.cpu().float()).float(), 1))
            labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels), time.perf_counter() - start
