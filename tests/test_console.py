"""Issue 15: what a run prints. One line per round, the run folder first, a bar that moves on short epochs on a
terminal, plain periodic lines (no bars) off one, and no stray warnings."""

from __future__ import annotations

import re

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunelab.runs.files import format_table
from prunelab.training.console import Progress, round_line
from tests.conftest import cli

ROW = {
    "round": 2,
    "sparsity": 0.75,
    "test/acc": 0.9,
    "test/auroc_macro": 0.95,
    "worst_class": "cat",
    "worst_class_recall": 0.61,
    "round_seconds": 12.34,
}


def test_round_line_names_the_round_and_the_worst_class():
    line = round_line(ROW, 5)
    assert line.startswith("round 2/5") and "sparsity 0.7500" in line and "acc 0.9000" in line
    assert "worst class cat (recall 0.610)" in line and line.endswith("12.3 s") and "fnr" not in line
    binary = round_line({**ROW, "test/fnr": 0.125, "test/fpr": 0.05}, 5)
    assert "fnr 0.125 fpr 0.050" in binary
    assert "fnr" in format_table([{**ROW, "nonzero_parameters": 10, "test/fnr": 0.125, "test/fpr": 0.05}])
    assert "fnr" not in format_table([{**ROW, "nonzero_parameters": 10}])


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.seen: list[tuple[float, int, int]] = []  # loss, correct, batch size per step

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.seen.append((float(loss), int((logits.argmax(1) == y).sum()), len(y)))
        return loss

    def train_totals(self):  # the protocol Progress reads (ClassifierModule.train_totals)
        n = sum(s for _, __, s in self.seen)
        return None if not n else (sum(v * s for v, _, s in self.seen) / n, sum(c for _, c, __ in self.seen) / n, n)

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 0.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(progress: Progress, steps: int = 30):
    data = TensorDataset(torch.randn(steps * 4, 4), torch.randint(0, 2, (steps * 4,)))
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[progress],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=4), DataLoader(data, batch_size=64))


def test_the_terminal_bar_moves_on_short_epochs_and_shows_the_loss(capsys):
    fit(Progress(refresh=25, tty=True, label="round 1 ", mininterval=0))  # 30 steps < refresh: still >= 10 draws
    out = capsys.readouterr().out
    counts = {int(m) for m in re.findall(r"\| *(\d+)/60 \[", out)}  # one bar over the round: 2 epochs x 30
    assert len(counts) >= 20 and max(counts) == 60, out[-2000:]
    assert "round 1:" in out and "epoch 1/2" in out and "loss " in out and "val/acc 0.5000" in out
    assert "Validation" not in out and "Sanity" not in out


def test_off_a_terminal_there_are_plain_lines_and_no_bars(capsys):
    fit(Progress(refresh=25, every_s=0.0, tty=False, label="round 3 "))
    out = capsys.readouterr().out
    assert "\r" not in out and "it/s" not in out and "Validation" not in out
    assert re.search(r"^  round 3 epoch 1/2 step \d+/30  loss \d\.\d{4} acc", out, re.M), out[:500]  # 1-based
    assert not re.search(r"epoch 0/2", out)


@pytest.mark.parametrize("logger", ["wandb", "none"])
def test_a_piped_default_run_prints_a_few_clean_lines(tmp_path, logger):
    proc = cli(
        [f"logger={logger}", "trainer.max_epochs=2", "schedule.rounds=2", "trainer.enable_progress_bar=true"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines[0].startswith("run folder: "), lines[:3]
    assert [x.split("  ")[0] for x in lines if x.startswith("round ") and "/2" in x.split("  ")[0]] == [
        "round 0/2",
        "round 1/2",
        "round 2/2",
    ]
    assert not [x for x in lines if "WARNING" in x or "Validation" in x or "\r" in x or "it/s" in x], lines
    assert len(lines) <= 13, lines
    assert sum(x.startswith("run folder: ") for x in lines) == 1  # once, at the start
    assert any(x.startswith("largest recall drop against dense: class ") for x in lines)
    assert lines[-1].startswith("next: prunelab report ")
