"""The fast paths' gate (prunelab.training.fastpaths): private Lightning/torch names live in one module
(prunelab.training.internals), taken only on the releases they were checked on; otherwise, or when that module
cannot be imported, runs take the public paths with the same results."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from tests.conftest import TINY_RUN, cli

SRC = Path(__file__).resolve().parents[1] / "src" / "prunelab"
VOLATILE = ("fit_seconds", "round_seconds", "training_loop", "best_checkpoint")

# What a Lightning release that renamed a private class looks like to prunelab: Lightning itself still works (its
# own modules bound the name when they were imported), but ``from ... import _TrainingEpochLoop`` fails
BREAK_PRIVATE = """
    import lightning.pytorch  # noqa: F401  (Lightning's own modules bind the name first)
    import lightning.pytorch.loops.training_epoch_loop as loop

    del loop._TrainingEpochLoop
"""


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _loops(run: Path) -> list[str]:
    return [json.loads(p.read_text())["training_loop"] for p in sorted(run.glob("rounds/r*/metrics.json"))]


def test_private_names_are_used_in_one_module_only():
    private = re.compile(
        r"from (lightning|torch)[\w.]*\._\w+ import|import (lightning|torch)[\w.]*\._|\b_[A-Z]\w*Loop\b"
    )
    users = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if private.search(p.read_text()))
    assert users == ["training/internals.py"], users
    door = re.compile(r"from prunelab\.training import internals|prunelab\.training\.internals import")
    doors = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if door.search(p.read_text()))
    assert doors == ["training/fastpaths.py"], doors


def test_the_public_paths_give_the_same_results(tmp_path):
    args = [*TINY_RUN, "share_round0=false"]  # each run trains its own round 0
    fast = cli([*args, f"hydra.run.dir={tmp_path / 'fast'}"], tmp_path)
    public = cli([*args, f"hydra.run.dir={tmp_path / 'public'}"], tmp_path, env_extra={"PRUNELAB_FAST_PATHS": "0"})
    assert fast.returncode == 0 and public.returncode == 0, public.stderr[-2000:]
    assert _rows(tmp_path / "fast") == _rows(tmp_path / "public")
    assert set(_loops(tmp_path / "fast")) == {"lean"}
    assert set(_loops(tmp_path / "public")) == {"lightning: PRUNELAB_FAST_PATHS=0"}


def test_both_loops_train_when_the_private_imports_fail(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BREAK_PRIVATE))
    env = {"PYTHONPATH": str(site)}
    for loop in ("lightning", "lean"):
        run = tmp_path / loop
        args = [*TINY_RUN, "share_round0=false", f"training_loop={loop}", f"hydra.run.dir={run}"]
        proc = cli(args, tmp_path, env_extra=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(_rows(run)) == 3
        used = set(_loops(run))
        if loop == "lean":
            assert len(used) == 1 and next(iter(used)).startswith(
                "lightning: their private imports failed (ImportError"
            )
        else:
            assert used == {"lightning"}
    assert _rows(tmp_path / "lean") == _rows(tmp_path / "lightning")


def test_a_config_is_validated_once_per_process(monkeypatch):
    """The CLI checks a config, then the job it runs in the same process checks only the machine part (issue 28)."""
    from prunelab.config import checks as preflight
    from tests.conftest import compose_cfg

    calls = {"content": 0, "device": 0}
    content, device = preflight._check_content, preflight._check_device

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(preflight, "_check_content", counted("content", content))
    monkeypatch.setattr(preflight, "_check_device", counted("device", device))
    monkeypatch.setattr(preflight, "_CHECKED", set())
    cfg = compose_cfg(["seed=3"])
    preflight.check_config(cfg, machine=False)  # the CLI
    preflight.check_config(cfg)  # the job, in the same process
    assert calls == {"content": 1, "device": 2}
    preflight.check_config(compose_cfg(["seed=4"]))  # another config: checked in full
    assert calls == {"content": 2, "device": 3}
