"""Shared fixtures: the offline data root, composing the real configs, running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from prunelab.config import conf_dir, register_resolvers

REPO = Path(__file__).resolve().parents[1]
register_resolvers()


def shared_data_dir() -> Path | None:
    env = os.environ.get("PRUNELAB_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if (candidate / "MNIST" / "raw").exists():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("offline data not found: set PRUNELAB_DATA_DIR (CI uses ../shared/data)")
    return found


def compose_cfg(overrides: list[str] = (), run_dir: Path | None = None) -> DictConfig:
    """The real config, composed as the CLI would (logger=none unless overridden: no Hydra runtime here)."""
    overrides = list(overrides)
    if not any(o.startswith("logger=") for o in overrides):
        overrides.append("logger=none")
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False
    return cfg


def cli(
    args: list[str], out: Path, data: Path | None = None, timeout: int = 600, env_extra: dict | None = None, **popen
) -> subprocess.CompletedProcess:
    """Run ``python -m prunelab`` with outputs under ``out``."""
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(out), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    env.update(env_extra or {})
    if data is not None:
        env["PRUNELAB_DATA_DIR"] = str(data)
    quiet = [] if args[:1] in (["report"], ["export"], ["list"]) else ["trainer.enable_progress_bar=false"]
    cmd = [sys.executable, "-m", "prunelab", *args, *quiet]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=out, **popen)


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("run_config.yaml"))
