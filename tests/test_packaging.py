"""The wheel ships the Hydra configs, so an installed prunelab finds them without the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def test_wheel_contains_conf(tmp_path):
    pytest.importorskip("hatchling")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    proc = subprocess.run([*cmd, str(REPO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("prunelab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "prunelab/conf/config.yaml" in names and "prunelab/conf/data/digits.yaml" in names
    assert "prunelab/pruning/masks.py" in names
