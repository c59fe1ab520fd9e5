"""Shared fixtures: the offline data root, composing the real configs, running the real CLI."""

from __future__ import annotations

import atexit
import contextlib
import json
import locale
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from prunelab.config.groups import conf_dir
from prunelab.config.register import register_resolvers

REPO = Path(__file__).resolve().parents[1]
register_resolvers()

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on two cores: one thread each (and in the runs they start), or their
    # OpenMP threads spin against each other and both slow down several times over
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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
    startup = {k for k in env_extra or {} if k.startswith(("PYTHON", "OMP_", "MKL_"))}  # read at interpreter start
    server = None if popen or startup else ForkServer.get()
    if server is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=out, **popen)
    return server.run(cmd, env=env, cwd=out, timeout=timeout)


class ForkServer:
    """``tests/_forkserver.py``: ``python -m prunelab`` runs forked from a process that imported prunelab once.

    Same argv, cwd, environment, stdin (/dev/null), captured stdout/stderr, exit status and timeout as
    ``subprocess.run``, without ~5 s of imports a run. ``PRUNELAB_TEST_FORKSERVER=0`` turns it off (every run a
    real subprocess); runs that need start-up state (``PYTHONPATH``, thread counts, ``preexec_fn``) always are.
    """

    _instance: ForkServer | None = None
    _failed = False

    def __init__(self) -> None:
        script = Path(__file__).with_name("_forkserver.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO, text=True, bufsize=1
        )
        self._buf = b""
        hello = self._line(120)
        if hello is None or "ready" not in json.loads(hello):
            self.proc.kill()
            raise RuntimeError("forkserver did not start")

    @classmethod
    def get(cls) -> ForkServer | None:
        if cls._failed or os.environ.get("PRUNELAB_TEST_FORKSERVER", "1") == "0":
            return None
        if cls._instance is None or cls._instance.proc.poll() is not None:
            try:
                cls._instance = ForkServer()
                atexit.register(cls._instance.close)
            except (RuntimeError, OSError, ValueError):
                cls._failed = True  # fall back to plain subprocesses for the rest of the session
                return None
        return cls._instance

    def _line(self, timeout: float | None) -> str | None:
        """One reply line from the server's stdout (raw fd + select: a timeout that works), None on timeout."""
        fd = self.proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("forkserver exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def run(self, cmd: list[str], env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(prefix="prunelab-fork-") as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            req = {"argv": cmd[3:], "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self._line(60))["pid"]
            reply = self._line(timeout)
            if reply is None:
                os.kill(pid, signal.SIGKILL)
                self._line(60)
                raise subprocess.TimeoutExpired(cmd, timeout, output=_read(out), stderr=_read(err))
            code = json.loads(reply)["status"]
            return subprocess.CompletedProcess(cmd, code, _read(out), _read(err))

    def kill_when(self, cmd: list[str], env: dict, cwd: Path, target: Path, timeout: float, delay: float) -> None:
        """Run ``cmd`` forked and SIGKILL it ``delay`` seconds after ``target`` appears (or at ``timeout``)."""
        req = {"argv": cmd[3:], "cwd": str(cwd), "env": env, "stdout": os.devnull, "stderr": os.devnull}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self._line(60))["pid"]
        deadline = time.time() + timeout
        reply = None
        while not target.exists() and time.time() < deadline:
            reply = self._line(0.01)
            if reply is not None:  # the run ended before the target appeared
                return
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # it ended between the check and the kill
            os.kill(pid, signal.SIGKILL)
        self._line(60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def kill_when(args: list[str], out: Path, target: Path, timeout: float = 300, delay: float = 0.05) -> None:
    """Run ``python -m prunelab args`` (outputs under ``out``) and SIGKILL it ``delay`` seconds after ``target``
    appears."""
    import signal
    import time

    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(out)}
    cmd = [sys.executable, "-m", "prunelab", "trainer.enable_progress_bar=false", *args]
    server = ForkServer.get()
    if server is not None:  # forked from the warm server: no ~5 s of imports before the run starts
        server.kill_when(cmd, env, out, target, timeout, delay)
        return
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=out)
    deadline = time.time() + timeout
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _read(path: Path) -> str:
    """A captured stream as ``subprocess.run(text=True)`` decodes it (locale encoding, universal newlines)."""
    return path.read_text(encoding=locale.getpreferredencoding(False), errors="replace") if path.exists() else ""


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("run_config.yaml"))


TINY_RUN = ["logger=csv", "trainer.max_epochs=1", "schedule.rounds=2"]  # digits, one epoch a round, rounds 0..2


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    """(outputs folder, run folder) of a finished tiny run, once per test module."""
    out = tmp_path_factory.mktemp("complete")
    run = out / "run"
    proc = cli([*TINY_RUN, f"hydra.run.dir={run}"], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, run
