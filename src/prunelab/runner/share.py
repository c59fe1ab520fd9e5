"""Round 0 shared between runs (OpenLTH shares its level 0 the same way).

A criteria comparison (``-m criterion=magnitude,random seed=0``) trains the same dense round 0 once per
criterion. Round 0 depends only on what happens before any pruning: data, model (and the masks attached to it),
loss, optimizer, LR scheduler, trainer, seed, monitor, convergence, quantization, export settings, and a step-k
rewind point (saved during round 0). The hash of exactly those values is the round's *key*; a run whose round 0 is
not done looks under ``<root>/shared/round0/<key>`` first, where the root is the folder that holds the run and
the runs it can share with (:func:`root`): ``paths.output_dir`` for a run inside it, else the sweep folder of a
multirun job; a single run placed elsewhere (``hydra.run.dir=<d>``) shares nothing, so it writes nothing outside
``<d>``:

- found and intact (every file matches the checksum its ``metrics.json`` recorded, and the data fingerprint is
  this run's): the round's files are copied into the run folder, as if the run had stopped after round 0 and
  resumed (prunelab's resume gives the same results as an uninterrupted run);
- not found: the run trains round 0 itself and publishes it (an atomic rename).

The key's folder is locked (``flock``) from the look-up to the publication, so parallel jobs of a sweep with the
same round 0 wait for the first one instead of training it again. Not shared: populations, DDP runs, schedules
that prune inside the fit or at initialisation, runs that start from ``init_weights``, and ``share_round0=false``.
The attempt records where round 0 came from and the compute it saved (``sweep_summary.md`` adds it up).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from prunelab.config.identity import canonical, digest
from prunelab.pruning import masks as masking
from prunelab.runner import run_folder
from prunelab.runner.context import RunContext
from prunelab.runs import files as results

log = logging.getLogger("prunelab")
VERSION = "round0/3"  # changes when what round 0 writes, or how its key is computed, changes (2: issue 28; 3: the
# round keeps its validation predictions, val_predictions.npz, issue 29)
KEYS = (
    "data",
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "seed",
    "monitor",
    "converge",
    "quantize",
    "export",
)


def _value(cfg: Any, key: str) -> Any:
    value = cfg.get(key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def key(ctx: RunContext) -> str | None:
    """The hash of everything round 0 depends on, or None where round 0 is not shared."""
    cfg, schedule = ctx.cfg, ctx.schedule
    trainer = _value(cfg, "trainer") or {}
    ddp = "ddp" in str(trainer.get("strategy", "")) or str(trainer.get("devices", 1)) not in ("1", "auto")
    if (
        not cfg.get("share_round0", True)
        or int(cfg.get("population") or 1) > 1
        or ddp
        or schedule.in_fit
        or schedule.sparsity_at(0) != 0
        or cfg.get("init_weights")
        or root(ctx) is None
    ):
        return None
    ident = canonical(cfg, KEYS)  # as in the run id: names, not code paths; defaults and run_id_ignore left out
    ident["masked"] = masking.masked_names(ctx.module.model)
    ident["groups"] = [[g.kind, g.key, g.out_channels] for g in ctx.groups]
    ident["rewind_step"] = ctx.rewind.snapshot_step
    ident["version"] = VERSION
    return digest(ident, 16)


def root(ctx: RunContext) -> Path | None:
    """Where shared rounds 0 live for this run: ``paths.output_dir`` when the run folder is inside it, else the
    sweep folder of a multirun job it is inside; None for a single run placed elsewhere (nothing to share with,
    and nothing is written outside the folder the user chose)."""
    run_dir = Path(ctx.run_dir).resolve()
    output = Path(str(ctx.cfg.paths.output_dir)).resolve()
    if run_dir.is_relative_to(output):
        return output
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and str(HydraConfig.get().mode) in ("RunMode.MULTIRUN", "MULTIRUN"):
        sweep = Path(str(HydraConfig.get().sweep.dir)).resolve()
        if run_dir.is_relative_to(sweep):
            return sweep
    return None


def folder(ctx: RunContext, k: str) -> Path:
    base = root(ctx)
    assert base is not None, "key() returns None where there is no shared root"
    return base / "shared" / "round0" / k


def _files(run_dir: Path) -> list[tuple[Path, Path]]:
    """(source, relative path) of what round 0 leaves: its round folder (no checkpoints) and step snapshots."""
    rdir = results.round_dir(run_dir, 0)
    out = [(p, p.relative_to(run_dir)) for p in results.round_files(rdir)] + [
        (rdir / "metrics.json", (rdir / "metrics.json").relative_to(run_dir))
    ]
    return out + [(p, p.relative_to(run_dir)) for p in sorted((run_dir / "rewind").glob("step*.pt"))]


def _intact(cache: Path, fingerprint: str) -> dict | None:
    row, problem = results.verify_round(cache, 0)
    data = results.read_json_or_none(cache / "data.json") if (cache / "data.json").exists() else None
    if row is None or problem or not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        if problem:
            log.warning("shared round 0 in %s is broken (%s): trained again", cache, problem)
        return None
    return row


def _copy(pairs: list[tuple[Path, Path]], dest: Path) -> None:
    for src, rel in pairs:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


@contextmanager
def round0(ctx: RunContext) -> Iterator[dict | None]:
    """Yields round 0's record copied from the shared folder, or None (the caller trains it; it is published when
    the block ends without an error)."""
    k = key(ctx) if results.is_writer() else None
    if k is None:
        yield None
        return
    cache = folder(ctx, k)
    with run_folder.folder_lock(cache, wait=True):
        fingerprint = ctx.dm.describe()["fingerprint"]
        row = _intact(cache, fingerprint)
        if row is not None:
            _copy(_files(cache), ctx.run_dir)
            ctx.round0_from = {"shared_round0": str(cache), "saved_seconds": float(row.get("round_seconds") or 0)}
            log.info("round 0 reused from %s (saves %.0f s)", cache, ctx.round0_from["saved_seconds"])
            yield row
            return
        yield None
        _publish(ctx, cache)


def _publish(ctx: RunContext, cache: Path) -> None:
    """Copy the run's round 0 into the shared folder: into a temporary folder first, then renamed into place."""
    tmp = cache.parent / f".{cache.name}.tmp-{os.getpid()}-{int(time.time())}"
    try:
        _copy(_files(ctx.run_dir), tmp)
        shutil.copy2(ctx.run_dir / "data.json", tmp / "data.json")
        for item in tmp.iterdir():  # rounds/, rewind/, data.json (the lock file stays); we hold the lock
            target = cache / item.name
            if target.is_dir():
                shutil.rmtree(target)  # a broken earlier copy
            os.replace(item, target)
    except OSError as exc:  # sharing is an optimisation: never fail the run for it
        log.warning("could not share round 0 in %s: %s", cache, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
