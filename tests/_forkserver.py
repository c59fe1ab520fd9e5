"""A fork server for the tests' ``python -m prunelab`` runs: import once, fork per run.

Starting ``python -m prunelab`` costs ~5 s of imports (torch, Lightning, Hydra) before the first line of prunelab
runs; ~110 CLI runs in the suite paid it each time. This helper process imports the CLI's modules once (no torch
operation, no Python thread; torch's idle native helper threads are there, as when a DataLoader forks its
workers) and serves each run in a forked child that sets its own argv, cwd,
environment, stdin/stdout/stderr, then runs ``prunelab`` as ``python -m prunelab`` would (``runpy``, ``__main__``)
and leaves as the interpreter would (exit status, traceback, thread shutdown, atexit handlers, flushed streams),
then ``os._exit``: a normal exit tears down every module forked from the server, which writes to (and so copies)
every page the child shares with it: 2.0 s a run, 0.6 s with ``gc.freeze()`` in the server, 0.09 s this way
(measured on an empty child). Unflushed files that a run never closed would be lost here, not in a real run: a
test fails, nothing passes that should not.

Protocol on stdin/stdout, one JSON object a line. Request: ``{"argv", "cwd", "env", "stdout", "stderr"}`` (the
last two: file paths). Replies: ``{"pid": ...}`` once forked, then ``{"status": ...}`` (``subprocess`` style:
-N when killed by signal N). EOF on stdin (pytest has gone): the server exits once the run in hand ends.

Only what a fresh interpreter would read at start-up differs from a real ``python -m``: the environment variables
read by libraries at import (``PYTHONPATH``, ``OMP_NUM_THREADS``, ...). ``tests/conftest.py`` runs such calls
as real subprocesses.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading


def _warm() -> None:
    # what most runs import later: scikit-learn (digits, ~0.3 s a run) and the report. Not wandb: its import makes
    # a temporary media folder that the first forked child to exit deletes for all the others
    import hydra  # noqa: F401  (prunelab.cli.main imports it only when a config is composed)
    import sklearn.datasets  # noqa: F401

    import prunelab.analysis.report
    import prunelab.cli.main
    import prunelab.runner.run  # noqa: F401  (torch, Lightning, the module, the callbacks)
    from prunelab.config.register import register_resolvers

    register_resolvers()  # the typed schemas, built once (each run's main() finds them registered)

    if threading.active_count() != 1:  # a thread would not survive fork: serve nothing rather than hang a child
        raise SystemExit(f"forkserver: {threading.active_count()} threads after imports; cannot fork safely")


def _serve() -> dict:
    """Answer requests until EOF; return (in a forked child only) the request that child must run."""
    reply = sys.stdout
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return req
        reply.write(json.dumps({"pid": pid}) + "\n")
        reply.flush()
        _, status = os.waitpid(pid, 0)
        reply.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        reply.flush()
    raise SystemExit(0)


def _become(req: dict) -> None:
    """Turn this forked child into ``python -m prunelab <argv>`` run in ``cwd`` with ``env``."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    for stream, path in ((sys.stdout, req["stdout"]), (sys.stderr, req["stderr"])):
        stream.flush()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, stream.fileno())
        os.close(fd)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 (fd 0 lives as long as the process)
    sys.argv = ["prunelab", *req["argv"]]
    sys.path[0] = os.getcwd()  # as ``python -m`` puts the working directory first


def _exit_status(code: object) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, an int itself, anything else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run_and_leave() -> None:
    import atexit
    import runpy

    interrupted = False
    try:
        runpy.run_module("prunelab", run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        status, interrupted = 1, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    threading._shutdown()  # as at interpreter exit: wait for non-daemon threads, then the atexit handlers
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    if interrupted:  # an uncaught KeyboardInterrupt ends the process by SIGINT, as Python does
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status)


if __name__ == "__main__":
    _warm()
    gc.freeze()  # children do not traverse (and so copy) the server's objects in their collections
    sys.stdout.write(json.dumps({"ready": os.getpid()}) + "\n")
    sys.stdout.flush()
    request = _serve()
    _become(request)
    _run_and_leave()
