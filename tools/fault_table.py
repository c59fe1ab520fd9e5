"""Issue 12's fault table, re-run from the CLI: every case, its exit status and what prunelab said.

    python tools/fault_table.py [--data ../shared/data] > faults.md

Each case runs the real ``prunelab`` command in a fresh temporary folder (tiny runs: digits, one epoch). The
"said" column is the ``prunelab: error:`` line, or for cases that succeed by repairing, the warning line that
names the repair (Hydra's log lines go to stdout, errors to stderr).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

Q = ["logger=csv", "trainer.max_epochs=1", "schedule.rounds=2", "trainer.enable_progress_bar=false"]


def prunelab(args: list[str], cwd: Path, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(cwd), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "prunelab", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=900, **popen)  # fmt: skip


def said(proc: subprocess.CompletedProcess, grep: str | None = None) -> str:
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in proc.stderr.splitlines() if line.startswith("prunelab: error:")]
    if grep is not None:
        picked = [line for line in lines if grep in line]
        text = picked[0] if picked else f"(no line with {grep!r})"
    elif errors:
        text = errors[0]
    else:
        text = next((line for line in reversed(lines) if line.strip()), "")
    text += f" [{len(errors)} error line(s)]" if errors else ""
    if "Traceback" in proc.stderr:
        text += " [TRACEBACK]"
    return text.split("] - ", 1)[-1].replace("|", "/")


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, str]] = []

    def add(self, item: str, case: str, proc: subprocess.CompletedProcess, grep: str | None = None) -> None:
        self.rows.append((item, case, proc.returncode, said(proc, grep)))
        print(f"{item:>3} {case}: exit {proc.returncode}", file=sys.stderr, flush=True)

    def markdown(self) -> str:
        lines = ["| # | case | exit | prunelab said |", "|---|---|---|---|"]
        lines += [f"| {i} | `{c}` | {code} | {s} |" for i, c, code, s in self.rows]
        return "\n".join(lines)


def complete_run(tmp: Path, name: str = "run") -> Path:
    run = tmp / name
    proc = prunelab([*Q, f"hydra.run.dir={run}"], tmp)
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed: {proc.stderr[-2000:]}")
    return run


def cifar_exploit(folder: Path, marker: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    for name in ("test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({b"label_names": [b"a"]}))


def sigterm_case(tmp: Path) -> subprocess.CompletedProcess:
    run = tmp / "sig"
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp)}
    cmd = [sys.executable, "-m", "prunelab", "logger=csv", "trainer.max_epochs=40", "schedule.rounds=1",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (run / "rounds/r00/checkpoints/last.ckpt").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    status = json.loads((run / "summary.json").read_text())["status"]
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err + f"\n(summary.json status: {status})")


def full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def npz_with_short_labels(data: Path, to: Path) -> Path:
    with np.load(data / "medmnist" / "breastmnist_resaved.npz") as d:
        arrays = {k: d[k] for k in d.files}
    arrays["train_labels"] = arrays["train_labels"][:10]
    np.savez(to, **arrays)
    return to


def identity_cases(t: Table, tmp: Path, ref: Path, data: Path) -> None:
    run = shutil.copytree(ref, tmp / "c1")
    t.add("1", "finished folder, then seed=7 into it", prunelab([*Q, "seed=7", f"hydra.run.dir={run}"], tmp))
    sweep = tmp / "sw"
    base = ["-m", "logger=none", "trainer.max_epochs=1", "schedule.rounds=1", "hydra.sweep.subdir=${hydra.job.num}",
            f"hydra.sweep.dir={sweep}", "trainer.enable_progress_bar=false"]  # fmt: skip
    prunelab([*base, "seed=0,1"], tmp)
    t.add("1", "sweep seed=5,6 into sweep seed=0,1's numbered folders", prunelab([*base, "seed=5,6"], tmp))
    npz = tmp / "b.npz"
    shutil.copy(data / "medmnist" / "breastmnist_resaved.npz", npz)
    args = ["data=breastmnist", "logger=none", "trainer.max_epochs=1", "schedule.rounds=1",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp / 'd'}"]  # fmt: skip
    prunelab([*args, f"data.path={npz}"], tmp)
    with np.load(npz) as d:
        arrays = {k: d[k] for k in d.files}
    np.savez(npz, **{**arrays, "train_labels": 1 - arrays["train_labels"]})
    t.add("2", "data file changed, same command", prunelab([*args, f"data.path={npz}"], tmp))
    moved = shutil.copy(data / "medmnist" / "breastmnist_resaved.npz", tmp / "moved.npz")
    proc = prunelab([*args, f"data.path={moved}"], tmp)
    t.add("2", "original data moved to another path", proc, "nothing to do")


def data_cases(t: Table, tmp: Path, data: Path) -> None:
    marker = tmp / "pwned"
    cifar_exploit(tmp / "cifar" / "cifar-10-batches-py", marker)
    proc = prunelab(["data=cifar10", f"paths.data_dir={tmp / 'cifar'}", "logger=none"], tmp)
    proc.stderr += f"\n(code ran: {marker.exists()})"
    t.add("3", "crafted CIFAR batch that runs `touch` when unpickled", proc)
    t.add("4", "kill -TERM during training", sigterm_case(tmp))
    npz = npz_with_short_labels(data, tmp / "short.npz")
    t.add("5", "MedMNIST .npz with 10 labels for 546 images",
          prunelab(["data=breastmnist", f"data.path={npz}", "logger=none"], tmp))  # fmt: skip
    (tmp / "trunc.npz").write_bytes(npz.read_bytes()[:4000])
    t.add("5", "truncated .npz", prunelab(["data=breastmnist", f"data.path={tmp / 'trunc.npz'}", "logger=none"], tmp))


def verification_cases(t: Table, tmp: Path, ref: Path) -> None:
    run = shutil.copytree(ref, tmp / "c6")
    shutil.rmtree(run / "rounds" / "r01")
    t.add("6", "complete run with rounds/r01 deleted", prunelab([*Q, f"hydra.run.dir={run}"], tmp), "redoing")
    run = shutil.copytree(ref, tmp / "c6b")
    (run / "rounds" / "r01" / "model.pt").write_bytes(b"\0" * 100)
    t.add("6", "complete run with a truncated r01/model.pt", prunelab([*Q, f"hydra.run.dir={run}"], tmp), "redoing")
    run = shutil.copytree(ref, tmp / "c8")
    (run / "summary.json").write_text("{not json")
    (run / "results.jsonl").write_text("garbage")
    t.add("8", "corrupt summary.json and results.jsonl", prunelab([*Q, f"hydra.run.dir={run}"], tmp), "unreadable")


BAD_INPUTS = [
    ("7", ["trainer.max_epochs=-1"]),
    ("8", ["data.batch_size=0"]), ("8", ["data.batch_size=-1"]), ("8", ["seed=1e14"]), ("8", ["seed=abc"]),
    ("8", ["seed=1.5"]), ("8", ["monitor.metric=val/nonexistent"]), ("8", ["monitor.mode=foo"]),
    ("8", ["trainer.max_epochs=abc"]),
    ("8", ["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=nan"]),
    ("8", ["data.imbalance.long_tail_ratio=nan"]),
    ("9", ["quantize.methods=[int4]"]), ("9", ["quantize=all", "quantize.calibration_batches=0"]),
    ("12", ["schedule.rate=0.999999"]),
    ("12", ["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=inf"]),
    ("12", ["population=0"]), ("12", ["data.val_fraction=0"]),
    ("13", ["trainer.limit_train_batches=0"]),
    ("14", ["name=../../../x"]),
]  # fmt: skip


def input_cases(t: Table, tmp: Path, ref: Path) -> None:
    for item, args in BAD_INPUTS:
        t.add(item, " ".join(args), prunelab(["logger=none", *args], tmp))
    t.add("9", "init_weights=<a 75%-pruned model.pt>",
          prunelab(["logger=none", f"init_weights={ref / 'rounds/r02/model.pt'}"], tmp))  # fmt: skip
    state = torch.load(ref / "rounds" / "r00" / "model.pt", weights_only=True)
    torch.save({k: v * float("nan") if k.endswith("original") else v for k, v in state.items()}, tmp / "nan.pt")
    t.add("13", "init_weights=<NaN weights>", prunelab(["logger=none", f"init_weights={tmp / 'nan.pt'}"], tmp))
    blocker = tmp / "a-file"
    blocker.write_text("x")
    t.add(
        "8", "hydra.run.dir under a file (unwritable)", prunelab(["logger=none", f"hydra.run.dir={blocker / 'r'}"], tmp)
    )
    t.add("8", "full disk (file-size limit 20 kB)",
          prunelab(["logger=none", f"hydra.run.dir={tmp / 'full'}"], tmp, preexec_fn=full_disk))  # fmt: skip


def folder_cases(t: Table, tmp: Path, ref: Path) -> None:
    run = tmp / "locked"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"pid {os.getpid()} on this host since now".encode())
    t.add("10", "second process into a folder in use", prunelab(["logger=none", f"hydra.run.dir={run}"], tmp))
    os.close(fd)
    root = tmp / "rep"
    shutil.copytree(ref, root / "good")
    shutil.copytree(ref, root / "bad")
    (root / "bad" / "summary.json").write_text("{trunc")
    proc = prunelab(["report", str(root)], tmp)
    proc.stdout += "\n" + next(x for x in (root / "report" / "report.md").read_text().splitlines() if "| bad |" in x)
    t.add("11", "report over a folder with a corrupt summary.json", proc, "| bad |")
    t.add("11", "report on a folder that does not exist", prunelab(["report", str(tmp / "nowhere")], tmp))
    run = shutil.copytree(ref, tmp / "c13")
    shutil.rmtree(run / "rounds" / "r02")
    (run / "summary.json").write_text('{"status": "running"}')
    (run / "rewind" / "init.pt").write_bytes(b"\0" * 300)
    t.add(
        "13", "interrupted run with a truncated rewind/init.pt", prunelab([*Q, f"hydra.run.dir={run}"], tmp), "init.pt"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("PRUNELAB_DATA_DIR", "../shared/data")))
    data = parser.parse_args().data.resolve()
    table = Table()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ref = complete_run(tmp)
        identity_cases(table, tmp, ref, data)
        data_cases(table, tmp, data)
        verification_cases(table, tmp, ref)
        input_cases(table, tmp, ref)
        folder_cases(table, tmp, ref)
    print(table.markdown())


if __name__ == "__main__":
    main()
