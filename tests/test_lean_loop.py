"""The lean training loop (prunelab.training.internals) against Lightning's own: the same fit, bit for bit.

Each case fits the same ClassifierModule twice from the same seed — once with Lightning's training-epoch loop, once
with the lean one — and compares everything a run keeps or a callback can see: weights, optimizer state, the loop's
progress counters (global step, checkpoints and resumption read them), the order and arguments of every hook call,
and the logged metrics. A probe callback overrides every per-step hook and logs from two of them (or, in one case,
logs nothing: the lean loop skips the step-metric bookkeeping then); checkpoints saved every few steps (a hook the
lean loop must call) and per epoch (a per-step hook it skips as a no-op) must be the same files with the same
weights.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from prunelab.data.digits import DigitsDataModule
from prunelab.models.mlp import MLP
from prunelab.pruning import masks as masking
from prunelab.training import fastpaths
from prunelab.training.internals import LeanEpochLoop
from prunelab.training.losses import CrossEntropy
from prunelab.training.module import ClassifierModule

STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_zero_grad",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_train_batch_end",
)


class Probe(Callback):
    """Records every per-step hook (name, batch index, global step, a gradient's norm) and logs from two hooks."""

    def __init__(self, log: bool = True):
        self.calls: list[tuple] = []
        self.logs = log

    def _grad(self, module) -> float | None:
        grad = module.model.classifier.parametrizations.weight.original.grad
        return None if grad is None else float(grad.norm())

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.calls.append(("on_train_batch_start", batch_idx, trainer.global_step, int(batch[1].sum())))

    def on_before_zero_grad(self, trainer, module, optimizer):
        self.calls.append(("on_before_zero_grad", trainer.global_step, self._grad(module)))

    def on_before_backward(self, trainer, module, loss):
        self.calls.append(("on_before_backward", trainer.global_step, float(loss)))

    def on_after_backward(self, trainer, module):
        self.calls.append(("on_after_backward", trainer.global_step, self._grad(module)))
        if self.logs:
            module.log("probe/grad", self._grad(module), on_step=True, on_epoch=True)

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.calls.append(("on_before_optimizer_step", trainer.global_step, self._grad(module)))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.calls.append(("on_train_batch_end", batch_idx, trainer.global_step, float(outputs["loss"])))
        if self.logs:
            module.log("probe/step", float(trainer.global_step), on_step=True, on_epoch=False)


class StepScheduled(ClassifierModule):
    """The module with its LR schedule stepped every batch (prunelab's own steps it every epoch)."""

    def configure_optimizers(self):
        out = super().configure_optimizers()
        if isinstance(out, dict):
            out["lr_scheduler"]["interval"] = "step"
        return out


def fit(lean: bool, tmp_path, optimizer=None, scheduler=None, quiet=False, checkpoints=False, **trainer_kw):
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64, seed=0)
    dm.setup()
    model = MLP(dm.input_shape, dm.num_classes, (32,))
    masking.attach_masks(model, masking.prunable_names(model))
    module = StepScheduled(
        model, CrossEntropy(), optimizer or partial(torch.optim.Adam, lr=1e-3), dm.class_names, scheduler=scheduler
    )
    probe = Probe(log=not quiet)
    callbacks: list[Callback] = [probe]
    if checkpoints:
        callbacks += [
            ModelCheckpoint(dirpath=str(tmp_path / "steps"), every_n_train_steps=5, save_top_k=-1),
            ModelCheckpoint(dirpath=str(tmp_path / "best"), monitor="val/acc", mode="max", save_last=True),
        ]
    kw = dict(
        max_epochs=2,
        logger=CSVLogger(str(tmp_path), name="csv", version=0),
        enable_checkpointing=checkpoints,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        log_every_n_steps=1,
    )
    trainer = pl.Trainer(**{**kw, **trainer_kw}, callbacks=callbacks)
    if lean:
        LeanEpochLoop.install(trainer)
    trainer.fit(module, datamodule=dm)
    return trainer, module, probe


def assert_same_fit(a, b) -> None:
    (ta, ma, pa), (tb, mb, pb) = a, b
    sa, sb = ma.model.state_dict(), mb.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), "weights differ"
    oa, ob = ta.optimizers[0].state_dict(), tb.optimizers[0].state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    for k in oa["state"]:
        for name, value in oa["state"][k].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob["state"][k][name])), (k, name)
    assert ta.global_step == tb.global_step > 0
    assert ta.fit_loop.state_dict() == tb.fit_loop.state_dict()
    assert pa.calls == pb.calls and len(pa.calls) == len(STEP_HOOKS) * ta.global_step
    for seen in ("callback_metrics", "logged_metrics"):
        ma_, mb_ = getattr(ta, seen), getattr(tb, seen)
        assert {k: float(v) for k, v in ma_.items()} == {k: float(v) for k, v in mb_.items()}, seen
    assert ("probe/grad_epoch" in ta.logged_metrics) == pa.logs and "val/acc" in ta.callback_metrics
    csv_a, csv_b = (Path(t.logger.log_dir) / "metrics.csv" for t in (ta, tb))
    assert csv_a.read_text() == csv_b.read_text() and ("probe/step" in csv_a.read_text()) == pa.logs
    assert ta.optimizers[0].param_groups[0]["lr"] == tb.optimizers[0].param_groups[0]["lr"]
    root_a, root_b = (Path(t.default_root_dir) for t in (ta, tb))
    files_a = sorted(str(f.relative_to(root_a)) for f in root_a.rglob("*.ckpt"))
    assert files_a == sorted(str(f.relative_to(root_b)) for f in root_b.rglob("*.ckpt"))
    for name in files_a:
        ca, cb = (torch.load(root / name, weights_only=False) for root in (root_a, root_b))
        assert (ca["global_step"], ca["epoch"]) == (cb["global_step"], cb["epoch"]), name
        assert all(torch.equal(ca["state_dict"][k], cb["state_dict"][k]) for k in ca["state_dict"]), name


CASES = {
    "adam": {},
    "sgd, clipping, step-interval scheduler": dict(
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=3, gamma=0.5),  # stepped every batch
        gradient_clip_val=0.05,
        val_check_interval=0.5,  # validation inside the epoch, between steps
    ),
    "nothing logged per step, checkpoints every 5 steps and per epoch": dict(quiet=True, checkpoints=True),
}


@pytest.mark.parametrize("case", CASES)
def test_lean_loop_fits_bit_identically_to_lightnings(case, tmp_path):
    lightning = fit(False, tmp_path / "a", **CASES[case])
    lean = fit(True, tmp_path / "b", **CASES[case])
    assert LeanEpochLoop.used(lean[0]) == "lean" and LeanEpochLoop.used(lightning[0]) == "lightning"
    assert_same_fit(lightning, lean)
    if CASES[case].get("checkpoints"):  # both kinds were written (step 5, 10, ... and best/last per epoch)
        names = {f.name for f in (tmp_path / "b").rglob("*.ckpt")}
        assert "last.ckpt" in names and any("step=5" in n for n in names), names


def test_lean_loop_steps_aside_where_it_does_not_apply(tmp_path, monkeypatch):
    trainer, _, _ = fit(True, tmp_path / "a", max_epochs=1, accumulate_grad_batches=2)
    assert LeanEpochLoop.used(trainer) == "lightning: gradient accumulation"
    trainer, _, _ = fit(True, tmp_path / "b", max_epochs=1, optimizer=partial(torch.optim.LBFGS, lr=0.1))
    assert LeanEpochLoop.used(trainer) == "lightning: an optimizer (LBFGS) that may use the step closure"
    trainer, _, _ = fit(True, tmp_path / "d", max_epochs=0)
    assert LeanEpochLoop.used(trainer) == "none"  # nothing trained: the record must not name a loop
    monkeypatch.setitem(fastpaths.TESTED, "lightning", "2.99.0")  # another release than the installed one
    fastpaths._load.cache_clear()
    try:
        assert fastpaths.internals() is None
        trainer, _, _ = fit(False, tmp_path / "c", max_epochs=1)
        assert fastpaths.loop_used(trainer, lean=True).startswith(
            "lightning: lightning 2.6.6 is not the release the fast paths were checked on (2.99.0)"
        )
    finally:
        fastpaths._load.cache_clear()
