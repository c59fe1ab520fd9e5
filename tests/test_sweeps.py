"""Sweeps that scale and survive: launchers, resumable multirun after kill -9, failure isolation, the summary."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from prunelab.runner.sweep import format_sweep, read_attempts, record_attempt, summarize_sweep
from tests.conftest import cli

TINY = ["schedule.rounds=1", "trainer.max_epochs=1", "logger=none"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # for `ray start`, whose workers take its environment
TIMING = {"fit_seconds", "wall_seconds", "round_seconds", "compute_seconds", "latency_ms"}


def _results(job: Path) -> list[dict]:
    rows = [json.loads(x) for x in (job / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _summary(sweep: Path) -> dict:
    return json.loads((sweep / "sweep_summary.json").read_text())


# -- the summary itself, on hand-built job folders ----------------------------------------------------------------
def test_sweep_summary_counts_this_launch_only(tmp_path):
    for name, status, lines in [
        ("a", "complete", [("completed", 0.0, {}), ("skipped", 100.0, {"saved_seconds": 12.5})]),
        ("b", "complete", [("failed", 0.0, {"error": "boom"}), ("resumed", 100.0, {"saved_seconds": 3.0})]),
        ("c", "failed", [("failed", 100.0, {"error": "x.y: bad (fix: z)"})]),
        ("d", "running", []),  # killed before it wrote an attempt line
    ]:
        job = tmp_path / name
        (job / ".hydra").mkdir(parents=True)
        (job / "summary.json").write_text(json.dumps({"status": status}))
        for outcome, at, info in lines:
            record_attempt(job, outcome, 1.0, **info)
            rows = (job / "attempts.jsonl").read_text().splitlines()
            last = json.loads(rows[-1])
            last["at"] = at
            (job / "attempts.jsonl").write_text("\n".join([*rows[:-1], json.dumps(last)]) + "\n")
    with open(tmp_path / "a" / "attempts.jsonl", "a") as f:
        f.write('{"outcome": "compl')  # a line torn by a kill is ignored
    (tmp_path / ".submitit").mkdir()  # launcher folders are not jobs
    assert [a["outcome"] for a in read_attempts(tmp_path / "a")] == ["completed", "skipped"]
    s = summarize_sweep(tmp_path, since=50.0)
    assert s["jobs"] == 4
    assert (s["skipped"], s["resumed"], s["failed"], s["completed"]) == (1, 1, 2, 0)
    assert s["saved_seconds"] == 15.5
    assert {j["job"]: j["error"] for j in s["failed_jobs"]} == {"c": "x.y: bad (fix: z)", "d": None}
    assert "| c | failed | failed |" in format_sweep(s)


# -- launchers ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """The basic launcher's sweep. Every launcher here runs at one intra-op thread (``threads=1``, in the config, so
    the runs fork from the tests' warm server): joblib (loky) and Ray workers get one thread each on this 2-core
    machine anyway, and float sums over another thread count differ in the last bits."""
    out = tmp_path_factory.mktemp("basic")
    proc = cli(["-m", "seed=0,1", *TINY, "threads=1", f"hydra.sweep.dir={out / 'sweep'}"], out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "sweep"


def _check_same_as_basic(sweep: Path, basic: Path) -> None:
    s = _summary(sweep)
    assert (s["jobs"], s["completed"], s["failed"]) == (2, 2, 0), format_sweep(s)
    names = sorted(j["job"] for j in s["job_list"])
    assert names == sorted(j["job"] for j in _summary(basic)["job_list"])  # same hash-named folders
    for name in names:
        assert _results(sweep / name) == _results(basic / name), name  # and the same results


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=local_parallel"], ["hydra/launcher=submitit_local"]])
def test_parallel_launchers_give_the_basic_launchers_results(launcher, basic_sweep, tmp_path):
    proc = cli(["-m", *launcher, "seed=0,1", *TINY, "threads=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_same_as_basic(tmp_path / "sweep", basic_sweep)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ray_launcher_on_a_local_cluster(basic_sweep, tmp_path):
    ray = Path(sys.executable).with_name("ray")
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    port = _free_port()
    # Ray workers: one thread, as the others; they take the environment of `ray start`, not the driver's: without
    # PRUNELAB_OUTPUT_DIR they wrote (and reused a shared round 0) under the repository's outputs/
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PRUNELAB_OUTPUT_DIR": str(tmp_path), **ONE_THREAD}
    start = [
        str(ray),
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    up = subprocess.run(start, env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        args = [
            "-m",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
            "seed=0,1",
            *TINY,
            "threads=1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
        proc = cli(args, tmp_path, env_extra={"RAY_USAGE_STATS_ENABLED": "0"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        _check_same_as_basic(tmp_path / "sweep", basic_sweep)
        assert list((tmp_path / "shared" / "round0").iterdir())  # the workers' outputs went where they were told
    finally:
        subprocess.run([str(ray), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


# -- resumable, failure-isolated multirun ---------------------------------------------------------------------------
@pytest.mark.slow
def test_relaunched_sweep_after_kill_does_only_the_missing_work(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1,2", "schedule.rounds=2", "trainer.max_epochs=2", "logger=none", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "prunelab", *args, "trainer.enable_progress_bar=false"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True
    )
    deadline = time.time() + 400

    def complete() -> int:
        return sum(json.loads(p.read_text()).get("status") == "complete" for p in sweep.glob("*/summary.json"))

    while complete() < 1 and proc.poll() is None and time.time() < deadline:  # kill inside the second job
        time.sleep(0.05)
    while not list(sweep.glob("*/rounds/r01/metrics.json"))[1:] and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = complete()
    assert 1 <= done_before < 3, "the kill came too late to test a relaunch"
    relaunch = cli(args, tmp_path)
    assert relaunch.returncode == 0, relaunch.stderr[-3000:]
    s = _summary(sweep)
    assert s["jobs"] == 3 and s["failed"] == 0, format_sweep(s)
    assert s["skipped"] == done_before  # finished jobs were not redone...
    assert s["resumed"] == 1 and s["completed"] == 2 - done_before  # ...the interrupted one resumed
    assert s["saved_seconds"] > 0
    resumed = next(j for j in s["job_list"] if j["outcome"] == "resumed")
    assert read_attempts(sweep / resumed["job"])[-1]["rounds_skipped"] >= 1  # its finished rounds were kept
    # the relaunch's results equal an uninterrupted run's
    ref = cli(
        [
            "-m",
            "seed=0,1,2",
            "schedule.rounds=2",
            "trainer.max_epochs=2",
            "logger=none",
            f"hydra.sweep.dir={tmp_path / 'ref'}",
        ],
        tmp_path,
    )
    assert ref.returncode == 0
    for job in s["job_list"]:
        assert _results(sweep / job["job"]) == _results(tmp_path / "ref" / job["job"]), job["job"]
    assert "Sweep summary" in (sweep / "sweep_summary.md").read_text()


@pytest.mark.slow
def test_failing_jobs_leave_the_others_intact_and_are_summarised(tmp_path):
    sweep = tmp_path / "sweep"
    # val_fraction=0.999 empties digits' training split when the job reads the data; a huge learning rate gives a NaN
    # loss (both found only by the jobs: an impossible value such as schedule.rate=1.5 or data.val_fraction=1.5 is
    # refused by the CLI before any job, tests/test_cli.py)
    args = ["-m", "data.val_fraction=0.15,0.999", "seed=0", *TINY, f"hydra.sweep.dir={sweep}"]
    proc = cli(args, tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "1 of 2 sweep jobs failed" in proc.stderr
    nan = cli(["-m", "optimizer.lr=1e12", "seed=0", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert nan.returncode == 3, nan.stderr[-2000:]
    s = summarize_sweep(sweep)
    statuses = sorted(j["status"] for j in s["job_list"])
    assert statuses == ["complete", "failed", "failed"]
    errors = " ".join(j["error"] for j in s["failed_jobs"])
    assert "data.val_fraction: 0.999 moves every training example" in errors and "loss" in errors.lower()
    ok = next(j for j in s["job_list"] if j["status"] == "complete")
    assert (sweep / ok["job"] / "rounds" / "r01" / "metrics.json").exists()
    rep = cli(["report", str(sweep), "--out", str(tmp_path / "rep")], tmp_path)
    assert rep.returncode == 0 and "Runs not averaged in (2)" in (tmp_path / "rep" / "report.md").read_text()
    shutil.rmtree(tmp_path / "rep")


# -- W&B: one offline run per job, closed, grouped by sweep --------------------------------------------------------
@pytest.mark.slow
def test_each_sweep_job_is_one_closed_wandb_run_grouped_by_sweep(tmp_path):
    from prunelab.analysis.wandb_offline import read_history, read_run_info, run_files

    sweep = tmp_path / "mysweep"
    args = ["-m", "seed=0,1", "schedule.rounds=1", "trainer.max_epochs=1", "logger=wandb", f"hydra.sweep.dir={sweep}"]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [j["job"] for j in _summary(sweep)["job_list"]]
    infos = []
    for job in jobs:
        (wandb_file,) = run_files(sweep / job)  # exactly one W&B run per job
        info = read_run_info(wandb_file)
        assert info["exited"] and info["exit_code"] == 0  # closed at the end of the job
        assert any("test/recall/0" in row for row in read_history(wandb_file))
        infos.append(info)
    assert {i["group"] for i in infos} == {"digits-mlp@mysweep"}  # one group per sweep
    assert len({i["name"] for i in infos}) == 2


# -- hyper-parameter search ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_optuna_sweeper_tunes_the_class_dependent_loss(tmp_path, data_dir):
    from omegaconf import OmegaConf

    sweep = tmp_path / "tune"
    args = [
        "-m",
        "experiment=tune_class_dependent",
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = cli(args, tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert set(best.best_params) == {"loss.lam", "loss.gamma"}
    trials = {}
    for job in _summary(sweep)["job_list"]:
        cfg = OmegaConf.load(sweep / job["job"] / "run_config.yaml")
        final = json.loads((sweep / job["job"] / "summary.json").read_text())["final"]
        assert final["sparsity"] == pytest.approx(0.9, abs=0.01)  # the fixed sparsity
        trials[(round(cfg.loss.lam, 6), round(cfg.loss.gamma, 6))] = final["val/fnr"]
    assert len(trials) == 3
    assert best.best_value == pytest.approx(min(trials.values()))  # the sweeper read prunelab's objective
    lam, gamma = round(best.best_params["loss.lam"], 6), round(best.best_params["loss.gamma"], 6)
    assert trials[(lam, gamma)] == pytest.approx(best.best_value)


@pytest.mark.parametrize(
    "swept, message",
    [
        (["schedule.rate=0.5,1.5"], "schedule.rate: 1.5 is outside [0, 1)"),
        (["criterion=per_class_taylor", "criterion.num_batches=2,0"], "criterion.num_batches: 0 batches"),
        (["loss=ceag", "loss.epsilon=0.02,-1"], "loss.epsilon: -1.0 is not >= 0"),
        (["data.val_fraction=0.1,1.5"], "data.val_fraction: 1.5 is outside [0, 1)"),
    ],
    ids=["schedule", "criterion", "loss", "data"],
)
def test_an_impossible_value_in_a_sweep_is_refused_before_any_job(tmp_path, swept, message):
    """The CLI builds each variant's schedule, rewind, criterion, loss and data module with their own constructors
    (the one copy of each range check) and asks them: a bad value is refused on one line before any job starts (the
    valid first variant is not trained), and no sweep folder is made."""
    sweep = tmp_path / "sweep"
    proc = cli(["-m", *swept, "seed=0", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert message in proc.stderr
    assert not sweep.exists() and not list(tmp_path.rglob("run_config.yaml"))


def test_a_run_placed_with_hydra_run_dir_writes_nothing_outside_it(tmp_path):
    """Issue 31: from an empty working directory, without PRUNELAB_OUTPUT_DIR, `hydra.run.dir=<d>` keeps every file
    of the run (round-0 cache, W&B's service logs and staging) under <d>. HOME is a fresh folder so that writes
    there show; matplotlib's font cache (written once per machine by anything that imports it: torchmetrics does)
    is the one exception, and the test names it."""
    cwd, home, target = tmp_path / "cwd", tmp_path / "home", tmp_path / "d"
    cwd.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRUNELAB_OUTPUT_DIR", "WANDB_", "MPLCONFIGDIR"))}
    env.update(HOME=str(home), WANDB_MODE="offline", PRUNELAB_DATA_DIR=os.environ.get("PRUNELAB_DATA_DIR", ""))
    cmd = [sys.executable, "-m", "prunelab", "schedule.rounds=1", "trainer.max_epochs=1", f"hydra.run.dir={target}"]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (target / "results.jsonl").exists() and list(target.glob("wandb/offline-run-*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "d", "home"] and not list(cwd.iterdir())
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert [w for w in written if "matplotlib" not in w] == [], written
