"""LinkingCheckpoint (prunelab.training.internals, behind the fast-path gate): an epoch that is both the best and
the last is written once (the second name a hard link), and every file holds what Lightning's ModelCheckpoint would
have written."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from prunelab.data.digits import DigitsDataModule
from prunelab.models.mlp import MLP
from prunelab.pruning import masks as masking
from prunelab.training import internals as checkpoint
from prunelab.training.internals import LinkingCheckpoint as RoundCheckpoint
from prunelab.training.losses import CrossEntropy
from prunelab.training.module import ClassifierModule


class Score(Callback):
    """Logs a scripted score per validation epoch (the monitor): best at the epochs where it falls."""

    def __init__(self, scores):
        self.scores = scores

    def on_validation_epoch_end(self, trainer, module):
        module.log("probe/score", float(self.scores[trainer.current_epoch]))


def fit(tmp_path: Path, scores, cls=RoundCheckpoint):
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=128, seed=0)
    dm.setup()
    model = MLP(dm.input_shape, dm.num_classes, (16,))
    masking.attach_masks(model, masking.prunable_names(model))
    module = ClassifierModule(model, CrossEntropy(), partial(torch.optim.Adam, lr=1e-3), dm.class_names)
    ckpt = cls(
        dirpath=str(tmp_path),
        filename="best-epoch{epoch:03d}",
        monitor="probe/score",
        mode="min",
        save_last=True,
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    trainer = pl.Trainer(
        max_epochs=len(scores),
        callbacks=[Score(scores), ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        num_sanity_val_steps=0,
        deterministic=True,
    )
    trainer.fit(module, datamodule=dm)
    return trainer, ckpt


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def same_content(a: dict, b: dict, dir_a: Path, dir_b: Path, first_best: bool = False) -> bool:
    """Equal up to the run folder; ``first_best``: a best file of a fit's first save, whose ModelCheckpoint state
    names last.ckpt in ``last_model_path`` (RoundCheckpoint's one deviation) where Lightning's has ""."""
    if first_best:
        a = {**a, "callbacks": {k: {**v, "last_model_path": ""} for k, v in a["callbacks"].items()}}

    def norm(value):
        if isinstance(value, str):
            return value.replace(str(dir_a), "<dir>").replace(str(dir_b), "<dir>")
        if isinstance(value, dict):
            return {norm(k): norm(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(norm(v) for v in value)
        if isinstance(value, torch.Tensor):
            return ("tensor", value.dtype, tuple(value.shape), value.flatten().tolist())
        return value

    return norm({k: v for k, v in a.items() if k != "pytorch-lightning_version"}) == norm(
        {k: v for k, v in b.items() if k != "pytorch-lightning_version"}
    )


@pytest.mark.parametrize(
    "scores", [[3.0], [3.0, 1.0, 0.5], [3.0, 1.0, 0.5, 2.0]], ids=["one epoch", "best last", "best before last"]
)
def test_the_files_are_lightnings_and_a_best_last_epoch_is_written_once(tmp_path, scores):
    trainer, ckpt = fit(tmp_path / "round", scores)
    _, plain = fit(tmp_path / "plain", scores, cls=ModelCheckpoint)
    names = sorted(p.name for p in (tmp_path / "round").iterdir())
    expected = [f"best-epoch{scores.index(min(scores)):03d}.ckpt", "last.ckpt"]
    assert names == sorted(p.name for p in (tmp_path / "plain").iterdir()) == expected
    for name in names:  # the same content as Lightning's own (last.ckpt's epoch is Lightning's choice)
        first = name.startswith("best") and load(tmp_path / "plain" / name)["callbacks"]
        first = bool(first) and all(v.get("last_model_path") == "" for v in first.values())
        assert same_content(
            load(tmp_path / "round" / name),
            load(tmp_path / "plain" / name),
            tmp_path / "round",
            tmp_path / "plain",
            first_best=first,
        ), name
    assert plain.state_key == ckpt.state_key and ckpt.state_key.startswith("ModelCheckpoint{")
    best, last = Path(ckpt.best_model_path), tmp_path / "round" / "last.ckpt"
    if load(last)["global_step"] == load(best)["global_step"]:
        assert os.stat(best).st_ino == os.stat(last).st_ino  # one write, two names (a fit's first save too)
    # a later write of last.ckpt replaces the name: the best file it shared keeps its bytes
    kept = best.read_bytes()
    with torch.no_grad():
        next(trainer.lightning_module.parameters()).add_(1.0)
    checkpoint._write(trainer, str(last), False)
    assert best.read_bytes() == kept and os.stat(best).st_ino != os.stat(last).st_ino
    assert not torch.equal(*(load(p)["state_dict"]["model.features.1.bias"] for p in (best, last)))


def test_without_hard_links_every_file_is_written(tmp_path, monkeypatch):
    def no_links(*_):
        raise OSError("no hard links here")

    monkeypatch.setattr(checkpoint.os, "link", no_links)
    _, ckpt = fit(tmp_path, [3.0, 1.0, 0.5])
    best, last = Path(ckpt.best_model_path), tmp_path / "last.ckpt"
    assert os.stat(best).st_ino != os.stat(last).st_ino and load(best)["epoch"] == load(last)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch002.ckpt", "last.ckpt"]


@pytest.mark.parametrize("fail", ["save", "move"])
def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch, fail):
    trainer, _ = fit(tmp_path, [3.0])
    before = (tmp_path / "last.ckpt").read_bytes()

    def broken(*_, **__):
        raise RuntimeError("disk full")

    if fail == "save":
        monkeypatch.setattr(trainer, "save_checkpoint", broken)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint._write(trainer, str(tmp_path / "last.ckpt"), False)
    assert (tmp_path / "last.ckpt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
