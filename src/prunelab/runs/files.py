"""The run folder, the source of truth: atomic writes, per-round records, results.jsonl, summary.json, the table.

Layout::

    <run>/run_config.yaml        the resolved config (identity of the folder; checked on rerun)
    <run>/rewind/init.pt         round-0 initial weights (and step<k>.pt for step rewinding)
    <run>/data.json              the data's description and fingerprint (identity of the data; checked on rerun)
    <run>/rounds/rNN/            checkpoints/ (Lightning, masks inside), model.pt, masks.pt,
                                 predictions.npz (test probabilities, labels), metrics.json (written last, with
                                 the size and SHA-1 of every other file of the round)
    <run>/results.jsonl          one line per finished round
    <run>/summary.json           status: running | failed | interrupted | complete
    <run>/attempts.jsonl         one line per attempt (outcome, wall time, error)
    <run>/.lock                  held (flock) by the process working in the folder
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def is_writer() -> bool:
    """Only global rank 0 writes the run folder (multi-process DDP runs share it; the other ranks compute)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see a partial file (rank 0 only;
    the file gets the umask's permissions, not mkstemp's 0600: results are meant to be shared)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename (rank 0 only); a failed write leaves no file."""
    if not is_writer():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a failed write() names no file: name the one being written
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path | str, key: str, fix: str = "rerun the run that wrote it") -> Any:
    """The only ``torch.load`` in prunelab: ``weights_only=True`` (tensors and plain containers, never a pickled object)
    on the CPU; any failure is one PrunelabError naming ``path`` (and never advice to turn ``weights_only`` off)."""
    import pickle

    import torch

    from prunelab.errors import PrunelabError

    path = Path(path)
    if not path.is_file():
        raise PrunelabError(key, f"{path} does not exist", fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        what = next((line.strip()[:100] for line in lines if "GLOBAL" in line), "")
        if what:  # a pickled class or function: refused, never called
            raise PrunelabError(
                key,
                f"{path} holds more than tensors ({what}); prunelab never unpickles objects from a file",
                f"the file is not prunelab's: {fix}",
            ) from None
        raise PrunelabError(
            key, f"cannot read {path} (not a tensor file)", f"the file is truncated or not prunelab's: {fix}"
        ) from None
    except Exception as exc:  # truncated, not a zip archive, a directory, a read error, ...
        head = (str(exc).strip().splitlines() or [""])[0][:120]
        raise PrunelabError(
            key,
            f"cannot read {path} ({type(exc).__name__}{': ' + head if head else ''})",
            f"the file is truncated or not prunelab's: {fix}",
        ) from None


def atomic_save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`: a full disk is an OSError (not torch's RuntimeError) and
    readers never see a torn file."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; missing = not defined (e.g. AUROC of an absent class)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def read_json_or_none(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, unreadable or not JSON (a torn or corrupt file)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def record_attempt(run_dir: Path, outcome: str, wall_seconds: float, **info: Any) -> None:
    """Append one attempt line to ``<run>/attempts.jsonl`` (one short ``write``; a torn last line is ignored)."""
    if not is_writer():
        return
    import torch

    line = {
        "outcome": outcome,
        "at": round(time.time(), 3),
        "wall_seconds": round(float(wall_seconds), 2),
        "torch_threads": torch.get_num_threads(),
        **info,
    }  # threads change float sums (not the run id)
    with open(Path(run_dir) / "attempts.jsonl", "a") as f:
        f.write(json.dumps(_clean(line)) + "\n")


def read_attempts(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "attempts.jsonl"
    out = []
    if path.exists():
        for text in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(text))
            except json.JSONDecodeError:  # a line torn by a kill
                continue
    return out


def round_dir(run_dir: Path, round_: int) -> Path:
    return Path(run_dir) / "rounds" / f"r{round_:02d}"


def round_done(run_dir: Path, round_: int) -> bool:
    return (round_dir(run_dir, round_) / "metrics.json").exists()


# -- file checksums -------------------------------------------------------------------------------------------------
def digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha1": h.hexdigest()}


def record_files(run_dir: Path, paths: list[Path]) -> dict[str, dict[str, Any]]:
    """``{path relative to the run folder: {bytes, sha1}}`` for ``paths``."""
    return {p.relative_to(run_dir).as_posix(): digest(p) for p in sorted(paths)}


def round_files(rdir: Path) -> list[Path]:
    """The files a finished round keeps (not its resume checkpoints, temporary files or metrics.json itself)."""
    return [
        p
        for p in rdir.rglob("*")
        if p.is_file()
        and "checkpoints" not in p.relative_to(rdir).parts
        and not p.name.startswith(".")
        and p.name != "metrics.json"
    ]


def verify_round(run_dir: Path, r: int) -> tuple[dict | None, str | None]:
    """(record, None) for a finished round whose files all match; (None, None) for a round not finished;
    (None, reason) for a broken one."""
    path = round_dir(run_dir, r) / "metrics.json"
    if not path.exists():
        return None, None
    row = read_json_or_none(path)
    if not isinstance(row, dict) or row.get("round") != r:
        return None, f"{path.relative_to(run_dir)} is unreadable (corrupt or truncated)"
    files = row.get("files")
    if not isinstance(files, dict) or not files:
        return None, f"{path.relative_to(run_dir)} has no file checksums (written by an older prunelab)"
    for rel, want in files.items():
        p = run_dir / rel
        if not p.is_file():
            return None, f"{rel} is missing"
        if digest(p) != want:
            return None, f"{rel} does not match its checksum (changed or truncated)"
    return row, None


def intact_rounds(run_dir: Path, key: str, fix: str) -> list[dict]:
    """The records of rounds 0, 1, ... that are finished and intact, up to the first missing one; a broken round
    is refused on one line naming ``key`` (and ``fix``)."""
    from prunelab.errors import PrunelabError

    rows: list[dict] = []
    while True:
        row, problem = verify_round(run_dir, len(rows))
        if problem:
            raise PrunelabError(key, f"{run_dir}: {problem}", fix)
        if row is None:
            return rows
        rows.append(row)


def compute_seconds(rows: Sequence[dict]) -> float:
    """The recorded time of these rounds (fit + evaluation + export): what skipping them saves."""
    return round(sum(float(row.get("round_seconds") or 0.0) for row in rows), 2)


def load_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A round's test-set class probabilities and labels (``predictions.npz``)."""
    with np.load(path) as f:
        return f["probs"], f["labels"]


def save_predictions(path: Path, probs, labels) -> None:
    if not is_writer():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    p = np.asarray(probs, dtype=np.float32)
    np.savez_compressed(tmp, probs=p, labels=np.asarray(labels, dtype=np.int64), preds=p.argmax(1))
    os.replace(tmp, path)


def strip_record(row: dict) -> dict:
    """A round's record without its file checksums and data fingerprint (they stay in the round's metrics.json)."""
    return {k: v for k, v in row.items() if k not in ("files", "data_fingerprint")}


def jsonl_lines(rows: Sequence[dict]) -> list[str]:
    return [json.dumps(_clean(strip_record(r))) for r in rows]


def write_results(run_dir: Path, rows: Sequence[dict]) -> list[dict]:
    """results.jsonl: one line per finished round, from the rounds' verified records (rebuilt whole, atomically)."""
    atomic_write_text(Path(run_dir) / "results.jsonl", "".join(f"{line}\n" for line in jsonl_lines(rows)))
    return [strip_record(r) for r in rows]


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_table(rows: Sequence[dict]) -> str:
    """The per-round table printed at the end of a run."""
    head = ["round", "sparsity", "nonzero", "flops", "accuracy", "auroc_macro", "worst class", "worst recall"]
    body = [
        [
            str(r["round"]),
            _fmt(r["sparsity"], ".4f"),
            str(r["nonzero_parameters"]),
            _fmt(r.get("flops_ratio"), ".3f"),
            _fmt(r.get("test/acc"), ".4f"),
            _fmt(r.get("test/auroc_macro"), ".4f"),
            str(r.get("worst_class", "-")),
            _fmt(r.get("worst_class_recall"), ".4f"),
        ]
        for r in rows
    ]
    if any("test/fnr" in r for r in rows):  # a binary task: the positive class's miss and false-alarm rates
        head += ["fnr", "fpr"]
        for cells, r in zip(body, rows):
            cells += [_fmt(r.get("test/fnr"), ".4f"), _fmt(r.get("test/fpr"), ".4f")]
    if any("damage/passes_tolerance" in r for r in rows):  # class damage against round 0 (runner.class_damage)
        head += ["flip", "max gap", "class tol."]
        for cells, r in zip(body, rows):
            verdict = r.get("damage/passes_tolerance")
            cells += [
                _fmt(r.get("damage/flip"), ".4f"),
                _fmt(r.get("damage/gap_max"), ".4f"),
                "-" if verdict is None else ("pass" if verdict else "FAIL"),
            ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    table = [line(head), line(["-" * w for w in widths]), *(line(b) for b in body)]
    return "\n".join(table + class_damage_lines(rows))


def class_damage_lines(rows: Sequence[dict]) -> list[str]:
    """The class-safe sparsity and the dense-vs-dense floor, under the final table."""
    from prunelab.training.damage import class_safe_sparsity

    last = next((r for r in reversed(rows) if "damage/passes_tolerance" in r), None)
    if last is None:
        return []
    eps, safe = last.get("damage/tolerance"), class_safe_sparsity(rows)
    lines = [
        f"class-safe sparsity: {_fmt(safe, '.4f')} (every class's accuracy gap within {_fmt(eps, '.3f')} of the"
        " mean gap up to it; class_tolerance)"
    ]
    if last.get("damage/has_floor"):
        lines.append(
            "noise floor, dense vs dense (class_metrics.null_seed): flip "
            f"{_fmt(last.get('floor/flip'), '.4f')}, max gap {_fmt(last.get('floor/gap_max'), '.4f')},"
            f" max excess gap {_fmt(last.get('floor/gap_excess_q100'), '.4f')}"
        )
    else:
        lines.append("no noise floor: set class_metrics.null_seed to compare with a second dense model")
    return lines


class SnapshotFolder:
    """A run's weight snapshots, ``<run>/rewind/<name>`` (:class:`prunelab.pruning.rewind.Snapshots`): written
    atomically, read as tensors only and checked to be a state dict (names to tensors)."""

    FIX = "delete that file: prunelab rewrites init.pt from the seed"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def exists(self, name: str) -> bool:
        return (self.folder / name).exists()

    def load(self, name: str) -> dict:
        import torch

        from prunelab.errors import PrunelabError

        path = self.folder / name
        state = load_tensors(path, "rewind", self.FIX)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise PrunelabError("rewind", f"{path} is not a weight snapshot (names to tensors)", self.FIX)
        return state

    def save(self, name: str, state: dict) -> None:
        atomic_save_torch(state, self.folder / name)
