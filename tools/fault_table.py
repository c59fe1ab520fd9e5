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


def command() -> list[str]:
    """The installed ``prunelab`` console script beside this interpreter (what a user types), else ``-m``."""
    script = Path(sys.executable).parent / "prunelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "prunelab"]


def prunelab(args: list[str], cwd: Path, env_extra: dict | None = None, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(cwd), "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run([*command(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900, **popen)


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter; a PrunelabError is printed as the CLI prints it (exit 2)."""
    wrapped = (
        "import sys\nfrom prunelab.errors import PrunelabError\ntry:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except PrunelabError as e:\n    print('prunelab: error: ' + e.one_line(), "
        "file=sys.stderr)\n    sys.exit(2)\n"
    )
    return subprocess.run([sys.executable, "-c", wrapped], cwd=cwd, capture_output=True, text=True, timeout=900)


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


ERROR_LINE = ("prunelab: error:", "prunelab export: error:", "prunelab report: error:")
FAILED_CHECKS = ("Traceback", "(code ran: True)", "equal False", "PROBLEM")


def verdict(proc: subprocess.CompletedProcess) -> str:
    """``refused`` (non-zero exit, exactly one error line), ``recovered`` (exit 0), or ``DEFECT``: a traceback, code
    that ran, a result that differs, or a failure without its one line."""
    text = proc.stdout + proc.stderr
    if any(bad in text for bad in FAILED_CHECKS):
        return "DEFECT"
    if proc.returncode == 0:
        return "recovered"
    errors = [line for line in proc.stderr.splitlines() if line.startswith(ERROR_LINE)]
    return "refused" if len(errors) == 1 else "DEFECT"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, str, str]] = []
        self.hidden: dict[str, str] = {}  # machine paths -> placeholders (<tmp>, <data>) in what the table shows

    def add(self, item: str, case: str, proc: subprocess.CompletedProcess, grep: str | None = None) -> None:
        text = said(proc, grep)
        for path, label in self.hidden.items():
            text = text.replace(path, label)
        self.rows.append((item, case, proc.returncode, verdict(proc), text))
        print(f"{item:>3} {case}: exit {proc.returncode} ({self.rows[-1][3]})", file=sys.stderr, flush=True)

    def totals(self) -> str:
        counts = {v: sum(r[3] == v for r in self.rows) for v in ("refused", "recovered", "DEFECT")}
        return (
            f"{len(self.rows)} cases: {counts['refused']} refused on one line with a non-zero exit, "
            f"{counts['recovered']} recovered correctly (exit 0), {counts['DEFECT']} defects"
        )

    def markdown(self) -> str:
        lines = ["| # | case | exit | verdict | prunelab said |", "|---|---|---|---|---|"]
        lines += [f"| {i} | `{c}` | {code} | {v} | {s} |" for i, c, code, v, s in self.rows]
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


def sigterm_case(tmp: Path, signum: int = signal.SIGTERM) -> subprocess.CompletedProcess:
    run = tmp / f"sig{signum}"
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp)}
    cmd = [
        *command(),
        "logger=csv",
        "trainer.max_epochs=40",
        "schedule.rounds=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (run / "rounds/r00/checkpoints/last.ckpt").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signum)
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
    base = [
        "-m",
        "logger=none",
        "trainer.max_epochs=1",
        "schedule.rounds=1",
        "hydra.sweep.subdir=${hydra.job.num}",
        f"hydra.sweep.dir={sweep}",
        "trainer.enable_progress_bar=false",
    ]
    prunelab([*base, "seed=0,1"], tmp)
    t.add("1", "sweep seed=5,6 into sweep seed=0,1's numbered folders", prunelab([*base, "seed=5,6"], tmp))
    npz = tmp / "b.npz"
    shutil.copy(data / "medmnist" / "breastmnist_resaved.npz", npz)
    args = [
        "data=breastmnist",
        "logger=none",
        "trainer.max_epochs=1",
        "schedule.rounds=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp / 'd'}",
    ]
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
    t.add(
        "5",
        "MedMNIST .npz with 10 labels for 546 images",
        prunelab(["data=breastmnist", f"data.path={npz}", "logger=none"], tmp),
    )
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
    ("8", ["data.batch_size=0"]),
    ("8", ["data.batch_size=-1"]),
    ("8", ["seed=1e14"]),
    ("8", ["seed=abc"]),
    ("8", ["seed=1.5"]),
    ("8", ["monitor.metric=val/nonexistent"]),
    ("8", ["monitor.mode=foo"]),
    ("8", ["trainer.max_epochs=abc"]),
    ("8", ["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=nan"]),
    ("8", ["data.imbalance.long_tail_ratio=nan"]),
    ("9", ["quantize.methods=[int4]"]),
    ("9", ["quantize=all", "quantize.calibration_batches=0"]),
    ("12", ["schedule.rate=0.999999"]),
    ("12", ["data.imbalance.positive_class=3", "data.imbalance.neg_pos_ratio=inf"]),
    ("12", ["population=0"]),
    ("12", ["data.val_fraction=0"]),
    ("13", ["trainer.limit_train_batches=0"]),
    ("14", ["name=../../../x"]),
]


def input_cases(t: Table, tmp: Path, ref: Path) -> None:
    for item, args in BAD_INPUTS:
        t.add(item, " ".join(args), prunelab(["logger=none", *args], tmp))
    t.add(
        "9",
        "init_weights=<a 75%-pruned model.pt>",
        prunelab(["logger=none", f"init_weights={ref / 'rounds/r02/model.pt'}"], tmp),
    )
    state = torch.load(ref / "rounds" / "r00" / "model.pt", weights_only=True)
    torch.save({k: v * float("nan") if k.endswith("original") else v for k, v in state.items()}, tmp / "nan.pt")
    t.add("13", "init_weights=<NaN weights>", prunelab(["logger=none", f"init_weights={tmp / 'nan.pt'}"], tmp))
    blocker = tmp / "a-file"
    blocker.write_text("x")
    t.add(
        "8", "hydra.run.dir under a file (unwritable)", prunelab(["logger=none", f"hydra.run.dir={blocker / 'r'}"], tmp)
    )
    t.add(
        "8",
        "full disk (file-size limit 20 kB)",
        prunelab(["logger=none", f"hydra.run.dir={tmp / 'full'}"], tmp, preexec_fn=full_disk),
    )


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


# -- issue 27 --------------------------------------------------------------------------------------------------------
class Exploit:
    """Unpickles as ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(ref: Path, tmp: Path, case: str) -> tuple[Path, Path]:
    """A copy of the reference run that would run ``touch marker`` if a reader instantiated or unpickled it."""
    import yaml

    run = shutil.copytree(ref, tmp / f"crafted-{case}")
    marker = tmp / f"ran-{case}"
    torch.save({"x": Exploit(marker)}, tmp / f"payload-{case}.pkl")
    call = {"_target_": "torch.load", "f": str(tmp / f"payload-{case}.pkl"), "weights_only": False}
    cfg = yaml.safe_load((run / "run_config.yaml").read_text())
    if case == "model.hidden":
        cfg["model"]["hidden"] = call
    elif case == "data.imbalance.x":
        cfg["data"]["imbalance"]["x"] = call
    elif case == "model._target_":
        cfg["model"] = call
    (run / "run_config.yaml").write_text(yaml.safe_dump(cfg))
    if case == "pickles":  # model.pt and masks.pt of every round, their recorded checksums updated
        for rdir in sorted((run / "rounds").glob("r*")):
            metrics = json.loads((rdir / "metrics.json").read_text())
            for name in ("model.pt", "masks.pt"):
                torch.save({"x": Exploit(marker)}, rdir / name)
                metrics["files"][f"rounds/{rdir.name}/{name}"] = digest(rdir / name)
            (rdir / "metrics.json").write_text(json.dumps(metrics))
    return run, marker


def digest(path: Path) -> dict:
    from prunelab.runs.files import digest as sha

    return sha(path)


def ran(proc: subprocess.CompletedProcess, marker: Path) -> subprocess.CompletedProcess:
    proc.stderr += f"\n(code ran: {marker.exists()})"
    return proc


def code_cases(t: Table, tmp: Path, ref: Path) -> None:
    for case in ("model.hidden", "data.imbalance.x", "model._target_", "pickles"):
        run, marker = crafted(ref, tmp, case)
        t.add(
            "27.1",
            f"{case} crafted: prunelab.load_model",
            ran(python(f"import prunelab\nprunelab.load_model({str(run)!r})", tmp), marker),
        )
        t.add(
            "27.1",
            f"{case} crafted: prunelab.load_run",
            ran(python(f"import prunelab\nprunelab.load_run({str(run)!r})", tmp), marker),
        )
        out = tmp / f"x-{case}.pt2"
        t.add(
            "27.1",
            f"{case} crafted: prunelab export",
            ran(prunelab(["export", str(run), "--format", "pt2", "--out", str(out)], tmp), marker),
        )
        t.add(
            "27.1",
            f"{case} crafted: prunelab report",
            ran(prunelab(["report", str(run), "--out", str(tmp / f"rep-{case}")], tmp), marker),
        )
        if case == "pickles":
            args = [*Q, "rewind=reinit", f"rewind.masks_from={run}", f"hydra.run.dir={tmp / 'mf'}"]
            t.add("27.1", "pickles crafted: rewind.masks_from", ran(prunelab(args, tmp), marker))
            (run / "rounds" / "r01" / "kept.json").write_text(
                json.dumps({"format": "prunelab.kept/1", "input_shape": [1, 8, 8], "num_classes": 10, "groups": []})
            )
            t.add(
                "27.1",
                "pickles crafted: load_model(compact=True)",
                ran(python(f"import prunelab\nprunelab.load_model({str(run)!r}, round=1, compact=True)", tmp), marker),
            )


def moved_resume(tmp: Path) -> subprocess.CompletedProcess:
    """kill -9 right after round 0's first best checkpoint, copy the folder elsewhere, resume: equal results?"""
    args = [
        "logger=csv",
        "trainer.max_epochs=6",
        "schedule.rounds=1",
        "share_round0=false",
        "trainer.enable_progress_bar=false",
    ]
    prunelab([*args, f"hydra.run.dir={tmp / 'mv-ref'}"], tmp)
    first = tmp / "mv-first"
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp)}
    proc = subprocess.Popen(
        [*command(), *args, f"hydra.run.dir={first}"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while proc.poll() is None and not any((first / "rounds" / "r00" / "checkpoints").glob("best-*.ckpt")):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    moved = shutil.copytree(first, tmp / "mv-elsewhere" / "moved")
    shutil.rmtree(first)
    resumed = prunelab([*args, f"hydra.run.dir={moved}"], tmp)
    same = [
        (tmp / "mv-ref" / f).read_bytes() == (moved / f).read_bytes()
        for f in ("rounds/r00/predictions.npz", "rounds/r01/predictions.npz")
    ]
    rows = [
        {k: v for k, v in json.loads(line).items() if "seconds" not in k}
        for line in (moved / "results.jsonl").read_text().splitlines()
    ]
    ref_rows = [
        {k: v for k, v in json.loads(line).items() if "seconds" not in k}
        for line in (tmp / "mv-ref" / "results.jsonl").read_text().splitlines()
    ]
    resumed.stdout += f"\nresumed elsewhere: records equal {rows == ref_rows}, predictions equal {all(same)}"
    return resumed


def identity27_cases(t: Table, tmp: Path, ref: Path, data: Path) -> None:
    run = shutil.copytree(ref, tmp / "noid")
    (run / "run_config.yaml").unlink()
    shutil.rmtree(run / ".hydra", ignore_errors=True)
    t.add(
        "27.2",
        "run_config.yaml and .hydra/ deleted, criterion=random into it",
        prunelab([*Q, "criterion=random", f"hydra.run.dir={run}"], tmp),
    )
    run = shutil.copytree(ref, tmp / "otherid")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "run_id": "0123456789"}))
    t.add("27.2", "summary.json naming another run id", prunelab([*Q, f"hydra.run.dir={run}"], tmp))
    t.add(
        "27.3",
        "kill -9 after round 0's first best checkpoint, folder moved, resumed",
        moved_resume(tmp),
        "resumed elsewhere",
    )
    t.add("27.4", "prune.include=*.weight", prunelab([*Q, "prune.include=*.weight"], tmp))
    t.add("27.4", "prune.exclude=classifier.*", prunelab([*Q, "prune.exclude=classifier.*"], tmp))
    t.add(
        "27.4",
        "'data.imbalance.keep_fraction={3: 0.5}' (README syntax)",
        prunelab([*Q, "data.imbalance.keep_fraction={3: 0.5}", f"hydra.run.dir={tmp / 'kf'}"], tmp),
        "worst class",
    )
    t.add(
        "27.4",
        "'prune.ratios={classifier.*: 0.1}' (README syntax)",
        prunelab([*Q, "prune.ratios={classifier.*: 0.1}", f"hydra.run.dir={tmp / 'ra'}"], tmp),
        "worst class",
    )


def npz_of(path: Path, images: dict, sizes=(40, 10, 10)) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[split], rng.integers(0, 2, size=(n, 1))
    np.savez(path, **arrays)
    return path


def mnist_like(tmp: Path, name: str, files: dict[str, Path]) -> Path:
    raw = tmp / name / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for target, source in files.items():
        (raw / target).symlink_to(source)
    return tmp / name


IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def data27_cases(t: Table, tmp: Path, data: Path) -> None:
    rng = np.random.default_rng(1)
    nhwc = {
        s: rng.integers(0, 256, size=(n, 28, 28, 3), dtype=np.uint8)
        for s, n in zip(("train", "val", "test"), (40, 10, 10))
    }
    path = npz_of(tmp / "nhwc.npz", nhwc)
    proc = prunelab(
        [*Q, "data=pneumoniamnist", "data.flag=dermamnist", f"data.path={path}", f"hydra.run.dir={tmp / 'nhwc'}"], tmp
    )
    record = tmp / "nhwc" / "data.json"
    shape = json.loads(record.read_text())["input_shape"] if record.exists() else None
    proc.stdout += f"\ninput_shape recorded: {shape}" + ("" if shape == [3, 28, 28] else " PROBLEM")
    t.add("27.5", "MedMNIST-style RGB .npz stored channels-last (N, 28, 28, 3)", proc, "input_shape")
    swapped = mnist_like(tmp, "swap", {n: data / "MNIST" / "raw" / m for n, m in zip(IDX, IDX[2:] + IDX[:2])})
    t.add("27.5", "MNIST train and test files swapped", prunelab([*Q, "data=mnist", f"paths.data_dir={swapped}"], tmp))
    fashion = mnist_like(tmp, "fashion", {n: data / "FashionMNIST" / "raw" / n for n in IDX})
    t.add("27.5", "Fashion-MNIST files under MNIST/raw", prunelab([*Q, "data=mnist", f"paths.data_dir={fashion}"], tmp))
    proc = prunelab([*Q, "data=breastmnist", f"hydra.run.dir={tmp / 'bm'}"], tmp)
    t.add("27.5", "shared BreastMNIST (a re-saved copy)", proc, "not the official")
    garbled = mnist_like(tmp, "garbled", {n: data / "MNIST" / "raw" / n for n in IDX[1:]})
    (garbled / "MNIST" / "raw" / IDX[0]).write_bytes(
        b"\xff\xff\xff\xff" + (data / "MNIST" / "raw" / IDX[0]).read_bytes()[4:]
    )
    t.add(
        "27.7",
        "MNIST idx file with a garbled magic number",
        prunelab([*Q, "data=mnist", f"paths.data_dir={garbled}"], tmp),
    )
    flat = npz_of(
        tmp / "flat.npz",
        {s: np.zeros((n, 784), dtype=np.uint8) for s, n in zip(("train", "val", "test"), (40, 10, 10))},
    )
    t.add("27.7", "flat (N, 784) .npz images", prunelab([*Q, "data=pneumoniamnist", f"data.path={flat}"], tmp))
    huge = npz_of(
        tmp / "huge.npz", {s: np.full((n, 28, 28), 1e300) for s, n in zip(("train", "val", "test"), (40, 10, 10))}
    )
    t.add("27.u", "float64 images x1e300", prunelab([*Q, "data=pneumoniamnist", f"data.path={huge}"], tmp))


PREFLIGHT27 = [
    ("27.6", ["criterion.scope=both"]),
    ("27.6", ["data.val_fraction=0.9999"]),
    ("27.6", ["trainer.accelerator=gpu"]),
    ("27.6", ["trainer.precision=abc"]),
    ("27.u", ["trainer.gradient_clip_val=-1"]),
    ("27.u", ["criterion.scope=layer", "prune.max_layer_sparsity=0.5"]),
    ("27.u", ["model.hidden=[0]"]),
]


def input27_cases(t: Table, tmp: Path, ref: Path) -> None:
    for item, args in PREFLIGHT27:
        run = tmp / f"pf{len(t.rows)}"
        proc = prunelab([*Q, *args, f"hydra.run.dir={run}"], tmp)
        proc.stderr += f"\n(run folder created: {run.exists()})"
        t.add(item, " ".join(args), proc)
    proc = prunelab(Q, tmp, env_extra={"PRUNELAB_OUTPUT_DIR": ""})
    t.add("27.6", "PRUNELAB_OUTPUT_DIR= (set but empty)", proc)
    t.add(
        "27.6",
        "seed=9223372036854775806 (2^63-2)",
        prunelab([*Q, "seed=9223372036854775806", f"hydra.run.dir={tmp / 'bigseed'}"], tmp),
        "worst class",
    )
    t.add("27.6", "kill -HUP during training", sigterm_case(tmp, signal.SIGHUP))
    t.add(
        "27.6",
        "prunelab reproduce lth --seeds 0",
        prunelab(["reproduce", "lth", "--seeds", "0", "--out", str(tmp / "lth")], tmp),
    )
    t.add(
        "27.7",
        "logger.wandb.offline=false without an API key",
        prunelab(
            [*Q, "logger=wandb", "logger.wandb.offline=false"],
            tmp,
            env_extra={"WANDB_MODE": "online", "WANDB_API_KEY": ""},
        ),
    )
    t.add("27.7", "a 300-character path component", prunelab([*Q, f"hydra.run.dir={tmp / ('a' * 300)}"], tmp))
    gradual = [
        "logger=none",
        "trainer.max_epochs=2",
        "schedule=gradual",
        "schedule.end_step=30",
        "schedule.frequency=5",
        "criterion=l1_filter",
    ]
    t.add(
        "27.7",
        "schedule=gradual criterion=l1_filter",
        prunelab([*gradual, f"hydra.run.dir={tmp / 'gr'}"], tmp),
        "worst class",
    )
    snip = [
        "logger=none",
        "trainer.max_epochs=2",
        "criterion=snip",
        "schedule=one_shot",
        "schedule.at_init=true",
        "rewind=step",
    ]
    t.add("27.u", "criterion=snip schedule.at_init=true rewind=step", prunelab(snip, tmp))
    sweep = [
        "-m",
        "seed=0,0",
        "logger=none",
        "trainer.max_epochs=1",
        "schedule.rounds=1",
        f"hydra.sweep.dir={tmp / 'dup'}",
    ]
    t.add("27.u", "sweep seed=0,0 (a duplicate value)", prunelab(sweep, tmp))


def structured27_cases(t: Table, tmp: Path) -> None:
    run = tmp / "st"
    prunelab(
        ["logger=none", "trainer.max_epochs=1", "criterion=l1_filter", "schedule=one_shot", f"hydra.run.dir={run}"], tmp
    )
    bad = shutil.copytree(run, tmp / "st-bad")
    rdir = bad / "rounds" / "r01"
    record = json.loads((rdir / "kept.json").read_text())
    record["groups"][0]["kept"] = [10**6]
    (rdir / "kept.json").write_text(json.dumps(record))
    metrics = json.loads((rdir / "metrics.json").read_text())
    metrics["files"]["rounds/r01/kept.json"] = digest(rdir / "kept.json")
    (rdir / "metrics.json").write_text(json.dumps(metrics))
    t.add(
        "27.7",
        "kept.json index out of range: load_model(compact=True)",
        python(f"import prunelab\nprunelab.load_model({str(bad)!r}, compact=True)", tmp),
    )
    t.add(
        "27.7",
        "kept.json index out of range: export --format pt2",
        prunelab(["export", str(bad), "--format", "pt2"], tmp),
    )
    (tmp / "taken").mkdir()
    t.add(
        "27.7",
        "export --out <existing directory>",
        prunelab(["export", str(run), "--format", "pt2", "--out", str(tmp / "taken")], tmp),
    )
    t.add("27.u", "export --atol nan", prunelab(["export", str(run), "--format", "pt2", "--atol", "nan"], tmp))
    ro = shutil.copytree(run, tmp / "st-ro")
    (ro / "export").write_text("a file where the folder goes (root ignores read-only modes)")
    (ro / "report").write_text("a file where the folder goes")
    t.add(
        "27.7", "export into an unwritable run folder, no --out", prunelab(["export", str(ro), "--format", "pt2"], tmp)
    )
    t.add("27.7", "report on an unwritable folder, no --out", prunelab(["report", str(ro)], tmp))
    lost = shutil.copytree(run, tmp / "st-lost")
    (lost / "data.json").write_text('{"trunc')
    proc = prunelab(
        ["logger=none", "trainer.max_epochs=1", "criterion=l1_filter", "schedule=one_shot", f"hydra.run.dir={lost}"],
        tmp,
    )
    t.add("27.u", "truncated data.json, same command", proc, "data.json")


def joblib_orphans(tmp: Path) -> subprocess.CompletedProcess:
    """kill -9 of a joblib sweep's parent: do its loky workers stop?"""
    sweep = tmp / "lk"
    cmd = [
        *command(),
        "-m",
        "hydra/launcher=local_parallel",
        "seed=3,4",
        "logger=none",
        "trainer.max_epochs=400",
        "schedule.rounds=2",
        "share_round0=false",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "PRUNELAB_OUTPUT_DIR": str(tmp)}
    proc = subprocess.Popen(
        cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    while proc.poll() is None and len(list(sweep.glob("*/rounds/r00/checkpoints/last.ckpt"))) < 2:
        time.sleep(0.1)
    workers = subprocess.run(["pgrep", "-f", "popen_loky.*"], capture_output=True, text=True).stdout.split()
    proc.kill()
    proc.wait()
    time.sleep(30)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/summary.json"))
    for w in alive:
        os.kill(int(w), signal.SIGKILL)
    text = f"workers alive 30 s after the parent's kill -9: {len(alive)} of {len(workers)}; job statuses {statuses}"
    ok = not alive and workers and statuses == ["interrupted", "interrupted"]
    return subprocess.CompletedProcess(cmd, 0 if ok else 1, text + ("" if ok else " PROBLEM"), "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("PRUNELAB_DATA_DIR", "../shared/data")))
    parser.add_argument("--doc", type=Path, default=None, help="also write the table, stamped, to this Markdown file")
    args = parser.parse_args()
    data = args.data.resolve()
    table = Table()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        table.hidden = {str(tmp.resolve()): "<tmp>", str(tmp): "<tmp>", str(data): "<data>"}
        ref = complete_run(tmp)
        identity_cases(table, tmp, ref, data)
        data_cases(table, tmp, data)
        verification_cases(table, tmp, ref)
        input_cases(table, tmp, ref)
        folder_cases(table, tmp, ref)
        code_cases(table, tmp, ref)
        identity27_cases(table, tmp, ref, data)
        data27_cases(table, tmp, data)
        input27_cases(table, tmp, ref)
        structured27_cases(table, tmp)
        table.add("27.u", "kill -9 of a joblib sweep's parent", joblib_orphans(tmp), "workers alive")
    print(table.totals())
    print(table.markdown())
    if args.doc:
        write_doc(args.doc, table)


def write_doc(path: Path, table: Table) -> None:
    """The table with its stamp: date, commit (``+changes`` when the tree differs from it) and command."""
    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src", "conf", "tools"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    stamp = f"{time.strftime('%Y-%m-%d')}, commit {commit.stdout.strip()}{' +changes' if dirty else ''}"
    text = (
        "# Fault table\n\nWritten by `python tools/fault_table.py --doc docs/faults.md` (the real `prunelab` command "
        "in temporary folders, shown as `<tmp>`; tiny runs on the embedded digits data and `<data>`, ../shared/data), "
        f"{stamp}. Never edited by hand.\n\n**{table.totals()}.**\n\n"
        "Items 1-14 are issue 12's cases, 27.1-27.7 issue 27's deliverables, 27.u its 'unclear' list. A verdict is "
        "`refused` (non-zero exit, exactly one `prunelab: error:` line, no traceback), `recovered` (exit 0, with the "
        "check the row names), or `DEFECT` (a traceback, code from a folder that ran, results that differ, a "
        "failure without its line).\n\n" + table.markdown() + "\n"
    )
    path.write_text(text)


if __name__ == "__main__":
    main()
