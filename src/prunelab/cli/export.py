"""``prunelab export <run_dir> [--round N] --format onnx|torchscript|pt2 [--out FILE]``.

Exports a round's model for use outside prunelab: for structured runs the physically compacted model (smaller
tensors, fewer FLOPs), otherwise the model with its masks folded in (pruned weights are exact zeros; the tensors
keep their shapes). Before the file is kept, its outputs are compared with the masked model's on a batch of
random inputs of the run's input shape; a difference above ``--atol`` deletes it and fails.

- ``onnx``: ``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension, checked with onnxruntime (needs
  ``pip install 'prunelab[onnx]'``);
- ``torchscript``: ``torch.jit.trace`` (deprecated by PyTorch in favour of ``torch.export``, still widely loaded);
- ``pt2``: ``torch.export`` (an ``ExportedProgram``, ``torch.export.load``), dynamic batch dimension.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunelab.errors import PrunelabError

FORMATS = {"onnx": ".onnx", "torchscript": ".ts.pt", "pt2": ".pt2"}


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str] | None = None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise PrunelabError(
            "--format",
            "onnx needs onnx, onnxscript and onnxruntime",
            "pip install 'prunelab[onnx]', or use --format torchscript|pt2",
        ) from exc
    batch = torch.export.Dim("batch", min=1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamic_shapes=({0: batch},), dynamo=True, external_data=False
        )  # one self-contained file (models under 2 GB)
    if meta:  # class names, normalisation and provenance travel with the file (ONNX metadata_props)
        import onnx

        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, meta)
        onnx.save(proto, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.save(torch.jit.trace(model, example), str(path))
        return torch.jit.load(str(path))


def _pt2(model: nn.Module, example: torch.Tensor, path: Path) -> Any:
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), str(path))
    return torch.export.load(str(path)).module()


def export(
    run_dir: str | Path, fmt: str, round: int = -1, out: str | Path | None = None, atol: float = 1e-4
) -> tuple[Path, float, bool]:
    """Write the round's model in ``fmt``; returns (file, max |output - masked model output|, compacted)."""
    from prunelab.runs import api, trust
    from prunelab.runs import files as results

    if fmt not in FORMATS:
        raise PrunelabError("--format", f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    trust.recorded_config(run_dir)  # a run folder at all
    r, _ = api._round(run_dir, round)
    compact = (results.round_dir(run_dir, r) / "kept.json").exists()
    masked = api.load_model(run_dir, r)
    model = api.load_model(run_dir, r, compact=True) if compact else masked
    shape = tuple(api._data_record(run_dir)["input_shape"])
    gen = torch.Generator().manual_seed(0)
    example, check = torch.randn(2, *shape, generator=gen), torch.randn(16, *shape, generator=gen)
    path = Path(out) if out else run_dir / "export" / f"r{r:02d}{'-compact' if compact else ''}{FORMATS[fmt]}"
    if path.is_dir():
        raise PrunelabError(
            "--out", f"{path} is a folder", f"give a file name, e.g. --out {path / path.name}{FORMATS[fmt]}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PrunelabError(
            "--out", f"cannot create {path.parent} ({exc.strerror or exc})", "give --out <a file in a writable folder>"
        ) from None
    tmp = path.with_name(f".tmp-{path.name}")  # torch.export wants the .pt2 suffix
    try:
        if fmt == "onnx":
            loaded = _onnx(model, example, tmp, metadata(run_dir, r))
        else:
            loaded = {"torchscript": _torchscript, "pt2": _pt2}[fmt](model, example, tmp)
        with torch.no_grad():
            diff = float((loaded(check) - masked(check)).abs().max())
        if not diff <= atol:
            raise PrunelabError(
                "--format",
                f"the exported {fmt} model's outputs differ from the masked model's by {diff:.2e} (> {atol:g})",
                "report it; use another --format meanwhile",
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path, diff, compact


def metadata(run_dir: Path, r: int) -> dict[str, str]:
    """What a user of the exported file needs beside the weights: class names (output order), the input's
    normalisation and shape, and where the model came from (JSON strings, from the run's ``data.json``)."""
    import json

    from prunelab.runs import api

    record = api._data_record(run_dir)
    return {
        "prunelab.classes": json.dumps(record.get("classes")),
        "prunelab.normalisation": json.dumps(record.get("normalisation")),
        "prunelab.input_shape": json.dumps(record.get("input_shape")),
        "prunelab.dataset": str(record.get("dataset")),
        "prunelab.run": f"{run_dir.name} round {r}",
    }


def _tolerance(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0 (e.g. 1e-4)")
    return value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="prunelab export", description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", required=True, choices=sorted(FORMATS))
    parser.add_argument("--round", type=int, default=-1, help="a finished round (default: the last)")
    parser.add_argument("--out", type=Path, default=None, help="default: <run_dir>/export/rNN[-compact].<ext>")
    parser.add_argument("--atol", type=_tolerance, default=1e-4, help="largest accepted output difference (>= 0)")
    args = parser.parse_args(argv)
    try:
        path, diff, compact = export(args.run_dir, args.format, args.round, args.out, args.atol)
    except OSError as exc:  # a read-only run folder, a full disk
        error = PrunelabError(
            "--out",
            f"cannot write {exc.filename or args.out} ({exc.strerror or exc})",
            "give --out <a file in a writable folder>",
        )
        print(f"prunelab: error: {error.one_line()}", file=sys.stderr)
        raise SystemExit(2) from None
    except PrunelabError as exc:
        print(f"prunelab: error: {exc.one_line()}", file=sys.stderr)
        raise SystemExit(2) from None
    kind = "compacted" if compact else "masks folded in"
    print(f"wrote {path} ({args.format}, {kind}; outputs within {diff:.1e} of the masked model's)")
