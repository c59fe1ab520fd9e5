"""SIGTERM, SIGINT and SIGHUP during a run: a :class:`RunInterrupted` exception instead of a silent exit.

Lightning turns SIGTERM into a ``SIGTERMException`` (a ``SystemExit`` without a code, so the process exits 0) and
Ctrl-C into ``sys.exit(1)``. Inside :func:`interruptible` both signals raise :class:`RunInterrupted` at once
(Lightning's own SIGTERM handler still runs first and chains ours), the runner marks the run ``interrupted``,
and the command exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell would.
"""

from __future__ import annotations

import signal
import threading
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


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into :class:`RunInterrupted` inside the block (main thread only; nests: an outer block's
    handlers are restored on exit). A second signal while the first is being handled is ignored, so the run's
    status can still be written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
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
