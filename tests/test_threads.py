"""Issue 32: a job's torch thread count is a setting (``threads``), part of the run id when set, recorded in each
attempt; a resumed run that trains with another count than its earlier rounds says so."""

from __future__ import annotations

import json
import shutil

from prunelab.config.identity import run_id
from tests.conftest import cli, compose_cfg


def test_threads_is_checked_and_names_the_run():
    assert run_id(compose_cfg(["threads=1"])) != run_id(compose_cfg([]))  # results differ in the last digits
    assert run_id(compose_cfg(["threads=null"])) == run_id(compose_cfg([]))  # the default leaves the id


def test_a_bad_thread_count_is_refused_in_one_line(tmp_path):
    proc = cli(["threads=0", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 2 and "threads: 0 is not a thread count" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "r").exists()


def test_threads_are_applied_and_a_resume_with_another_count_says_so(tmp_path):
    run = tmp_path / "r"
    args = ["threads=1", "schedule.rounds=1", "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={run}"]
    assert cli(args, tmp_path).returncode == 0
    attempts = [json.loads(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert attempts[-1]["torch_threads"] == 1
    with open(run / "attempts.jsonl", "a") as f:  # as if the earlier rounds had trained with 3 threads
        f.write(json.dumps({**attempts[-1], "torch_threads": 3}) + "\n")
    shutil.rmtree(run / "rounds" / "r01")  # round 1 is redone
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "earlier rounds trained with 3 torch threads, this process uses 1" in proc.stdout + proc.stderr
