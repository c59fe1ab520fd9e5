"""Read an offline W&B run (``run-<id>.wandb``) back without a network or an account.

The file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version) then LevelDB-style 32 KiB blocks
of records (4-byte CRC, 2-byte length, 1-byte type: full / first / middle / last), each a protobuf ``Record``.
Used by the tests to check what was logged, and by users to inspect a run before ``wandb sync``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file")
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        payload, pos = data[pos : pos + length], pos + length
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            yield pending + payload
        else:
            break


def run_files(folder: Path) -> list[Path]:
    """Every offline run file under ``folder`` (a run folder or its wandb/ dir), oldest first; the folders a resumed
    run superseded (``.wandb_superseded/``, replayed into the current one) are left out."""
    return sorted(p for p in Path(folder).rglob("offline-run-*/run-*.wandb") if ".wandb_superseded" not in p.parts)


def read_history(path: Path) -> list[dict]:
    """The ``history`` rows (what ``wandb.log`` received), values decoded from JSON."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = []
    for chunk in _chunks(Path(path).read_bytes()):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf class
        record.ParseFromString(chunk)
        if record.WhichOneof("record_type") != "history":
            continue
        rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in record.history.item})
    return rows


def _updates(path: Path, kind: str) -> Iterator[tuple[str, Any]]:
    """(key, decoded value) of every item of the ``kind`` records (``summary`` or ``config``), in file order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for chunk in _chunks(Path(path).read_bytes()):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf class
        record.ParseFromString(chunk)
        if record.WhichOneof("record_type") == kind:
            for item in getattr(record, kind).update:
                yield item.key or "/".join(item.nested_key), json.loads(item.value_json)


def read_summary(path: Path) -> dict:
    """The run summary as last written (``run.summary[...] = ...``: ``summary`` records, later ones winning)."""
    return dict(_updates(path, "summary"))


def read_config(path: Path) -> dict:
    """The run's config as last written (``config`` records; W&B's ``{"value": ...}`` wrappers removed)."""
    return {k: v.get("value", v) if isinstance(v, dict) else v for k, v in _updates(path, "config")}


def read_run_info(path: Path) -> dict:
    """The run's id, group, name, job type, tags, the x-axis each metric was defined against (``define_metric``)
    and whether it was closed (its exit record and exit code)."""
    from wandb.proto import wandb_internal_pb2 as pb

    info: dict = {
        "group": None,
        "name": None,
        "tags": [],
        "exited": False,
        "exit_code": None,
        "id": None,
        "job_type": None,
        "step_metrics": {},
    }
    for chunk in _chunks(Path(path).read_bytes()):
        record = pb.Record()  # type: ignore[attr-defined]  # generated protobuf class
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(
                group=record.run.run_group,
                name=record.run.display_name,
                tags=list(record.run.tags),
                id=record.run.run_id,
                job_type=record.run.job_type,
            )
        elif kind == "metric" and record.metric.step_metric:  # define_metric(name or glob, step_metric=...)
            info["step_metrics"][record.metric.name or record.metric.glob_name] = record.metric.step_metric
        elif kind == "exit":
            info.update(exited=True, exit_code=record.exit.exit_code)
    return info
