"""SIGTERM, SIGINT and SIGHUP during a run: a :class:`RunInterrupted` exception instead of a silent exit.

Lightning turns SIGTERM into a ``SIGTERMException`` (a ``SystemExit`` without a code, so the process exits 0) and
Ctrl-C into ``sys.exit(1)``. Inside :func:`interruptible` both signals raise :class:`RunInterrupted` at once
(Lightning's own SIGTERM handler still runs first and chains ours), the runner marks the run ``interrupted``,
and the command exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell would.

A job in a worker process of a parallel launcher (joblib's loky workers) also watches its parent: when the parent
dies without a word (kill -9 of the sweep), the worker sends itself SIGTERM, so its run is marked interrupted, and
exits at most ``ORPHAN_GRACE_SECONDS`` later instead of training on, orphaned, for nobody. A relaunch of the sweep
resumes the run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # SIGHUP: the terminal or ssh session closed


class RunInterrupted(BaseException):
    """Raised by the signal handler; a BaseException so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_WATCHING: list[int] = []
PARENT_POLL_SECONDS = 1.0
ORPHAN_GRACE_SECONDS = 20.0  # time for the interrupted run to record its status before the worker exits


def watch_parent() -> None:
    """In a worker process (``multiprocessing.parent_process()`` set, as in loky), SIGTERM this process once its
    parent is gone (the worker is re-parented); once per process, a daemon thread."""
    if multiprocessing.parent_process() is None or _WATCHING:
        return
    parent, me = os.getppid(), os.getpid()
    _WATCHING.append(parent)

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(me, signal.SIGTERM)  # the run is marked interrupted in the main thread
        time.sleep(ORPHAN_GRACE_SECONDS)  # then the worker itself goes: its pool no longer exists
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=poll, name="prunelab-parent-watch", daemon=True).start()


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into :class:`RunInterrupted` inside the block (main thread only; nests: an outer block's
    handlers are restored on exit). A second signal while the first is being handled is ignored, so the run's
    status can still be written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watch_parent()
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        raise RunInterrupted(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
