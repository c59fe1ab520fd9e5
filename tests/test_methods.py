"""Each paper's method runs from the CLI on offline data (shortened: few batches, few rounds)."""

from __future__ import annotations

import json

import pytest
import torch

from prunelab.pruning import units
from prunelab.runs.files import SnapshotFolder
from tests.conftest import cli, run_dirs

SHORT = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=10"]


@pytest.mark.parametrize("scenario", ["red", "blue", "black", "green"])
def test_entezari_scenarios_run(scenario, tmp_path, data_dir):
    proc = cli([f"experiment=entezari_{scenario}", *SHORT, "schedule.rounds=2"], tmp_path, data=data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [round(r["sparsity"], 4) for r in rows] == [0.0, 0.5, 0.75]
    assert {"test/fnr", "test/fpr", "test/auroc_pos"} <= set(rows[-1])
    per_tensor = json.loads((run_dir / "rounds" / "r02" / "metrics.json").read_text())["sparsity_per_tensor"]
    assert any(k.endswith(".bias") for k in per_tensor)  # biases are pruned too
    weights = {k: v for k, v in per_tensor.items() if k.endswith(".weight")}
    assert all(abs(v - 0.75) < 0.02 for v in weights.values()), weights  # the same share in every layer
    data = json.loads((run_dir / "data.json").read_text())
    neg, pos = data["counts"]["train"]
    assert data["classes"] == ["not_pneumonia", "pneumonia"] and abs(neg - 5 * pos) <= 1


def test_gradual_schedule_formula():
    from prunelab.pruning.schedules import Gradual

    s = Gradual(final_sparsity=0.8, begin_step=10, end_step=110, frequency=25)
    assert s.sparsity_at_step(0) == 0 and s.sparsity_at_step(10) == 0
    assert s.sparsity_at_step(60) == pytest.approx(0.8 * (1 - 0.5**3))
    assert s.sparsity_at_step(110) == 0.8 and s.sparsity_at_step(500) == 0.8
    assert [t for t in range(200) if s.update_at(t)] == [10, 35, 60, 85, 110]


def test_gradual_run_reaches_final_sparsity_at_end_step(tmp_path):
    """Inside a real fit: sparsity follows the cubic schedule and is final exactly at end_step."""
    import lightning.pytorch as pl

    from prunelab.pruning import masks as masking
    from prunelab.runner.build import prepare
    from prunelab.runner.round import run_round
    from tests.conftest import compose_cfg

    seen: dict[int, float] = {}

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # runs after the pruner's hook
            seen[trainer.global_step] = masking.sparsity_stats(pl_module.model)["sparsity"]

    cfg = compose_cfg(
        [
            "schedule=gradual",
            "schedule.final_sparsity=0.7",
            "schedule.begin_step=5",
            "schedule.end_step=45",
            "schedule.frequency=10",
            "criterion.scope=layer",
            "trainer.max_epochs=4",
        ]
    )
    ctx = prepare(cfg, tmp_path)
    ctx.extra_callbacks = [Probe()]
    row = run_round(ctx, 0)
    schedule = ctx.schedule
    assert seen[45] == pytest.approx(0.7, abs=1e-3)  # masks at the start of step 45's batch
    assert seen[44] == pytest.approx(schedule.sparsity_at_step(35), abs=1e-3) and seen[44] < 0.7
    assert seen[3] == 0 and row["sparsity"] == pytest.approx(0.7, abs=1e-3)
    names = masking.prunable_names(ctx.module.model)
    assert names[-1] not in masking.masked_names(ctx.module.model)  # the classifier is not pruned


def test_quantized_runs_save_predictions_and_per_class_metrics(tmp_path):
    import numpy as np

    proc = cli(["schedule=dense", "quantize=all", "logger=none", "trainer.max_epochs=3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    float_acc = json.loads((run_dir / "rounds/r00/metrics.json").read_text())["test/acc"]
    for method in ("fp16", "dynamic_int8", "static_int8"):
        qdir = run_dir / "rounds" / "r00" / "quant" / method
        metrics = json.loads((qdir / "metrics.json").read_text())
        pred = np.load(qdir / "predictions.npz")
        assert metrics["method"] == method and "test/recall/3" in metrics and "test/auroc_macro" in metrics
        assert (pred["preds"] == pred["labels"]).mean() == pytest.approx(metrics["test/acc"], abs=1e-6)
        assert abs(metrics["test/acc"] - float_acc) < 0.05 and metrics["agreement_with_float"] > 0.9
    sizes = {
        m: json.loads((run_dir / f"rounds/r00/quant/{m}/metrics.json").read_text())["model_bytes"]
        for m in ("fp16", "dynamic_int8")
    }
    assert sizes["dynamic_int8"] < sizes["fp16"]


def _progressive_ctx(tmp_path, extra=()):
    from prunelab.runner.build import prepare
    from tests.conftest import compose_cfg

    cfg = compose_cfg(
        [
            "data=fashion_mnist",
            "model=cnn_small_bn",
            "criterion=activation_energy",
            "schedule=progressive",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=8",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "rewind=none",
            *extra,
        ]
    )
    return prepare(cfg, tmp_path)


def test_progressive_rounds_freeze_later_layers_bit_identically(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PRUNELAB_DATA_DIR", str(data_dir))
    from prunelab.pruning.callback import frozen_after
    from prunelab.runner.round import run_round

    ctx = _progressive_ctx(tmp_path, ["criterion.num_samples=64", "prune.group_kinds=[conv]"])  # two layers: quick
    model = ctx.module.model
    assert ctx.schedule.layers == ["features.0", "features.4"] and ctx.schedule.num_rounds == 3
    run_round(ctx, 0)
    for r, layer in ((1, "features.0"), (2, "features.4")):
        frozen = frozen_after(model, layer)
        before = [{k: v.clone() for k, v in m.state_dict().items()} for m in frozen]
        trainable = {k: v.clone() for k, v in model.state_dict().items()}
        run_round(ctx, r)
        after = [m.state_dict() for m in frozen]
        assert frozen and all(torch.equal(b[k], a[k]) for b, a in zip(before, after) for k in b)  # bit-identical
        moved = [k for k, v in model.state_dict().items() if not torch.equal(v, trainable[k])]
        assert any(k.startswith(layer) for k in moved)  # the simplified layer itself retrained
        alive = units.alive_units(model, ctx.groups)[layer]
        assert int(alive.sum()) == alive.numel() // 2  # rate 0.5 of this layer's kernels
    assert all(p.requires_grad for p in model.parameters())  # unfrozen after each round


def test_human_ratings_loop(tmp_path, data_dir, monkeypatch):
    """No ratings: the kernel grid and a template are written and the run stops; with ratings, exactly the dropped
    kernels go."""
    monkeypatch.setenv("PRUNELAB_DATA_DIR", str(data_dir))
    from prunelab.errors import PrunelabError
    from prunelab.pruning.callback import PruningCallback

    ratings = tmp_path / "ratings.csv"
    ctx = _progressive_ctx(
        tmp_path,
        ["criterion=human_ratings", f"criterion.ratings={ratings}", "schedule.rate=null", "schedule.threshold=0.5"],
    )
    model, dm = ctx.module.model, ctx.dm
    cb = PruningCallback(
        ctx.criterion,
        ctx.schedule,
        ctx.rewind,
        1,
        SnapshotFolder(tmp_path / "rewind"),
        0,
        batches=lambda: iter(dm.train_dataloader()),
        groups=ctx.groups,
        extra={"run_dir": str(tmp_path)},
    )
    with pytest.raises(PrunelabError, match=r"no ratings for layer features\.0"):
        cb.prune(model)
    grid = tmp_path / "kernels" / "features.0.png"
    template = (tmp_path / "kernels" / "features.0.csv").read_text().splitlines()
    assert grid.exists() and grid.stat().st_size > 0 and len(template) == 1 + 32
    drop = {3, 7, 20}
    ratings.write_text(
        "layer,kernel,decision\n" + "".join(f"features.0,{k},{'drop' if k in drop else 'keep'}\n" for k in range(32))
    )
    cb.prune(model)
    alive = units.alive_units(model, ctx.groups)
    assert {int(k) for k in torch.nonzero(~alive["features.0"])} == drop and alive["features.4"].all()


CLI_METHODS = {
    "magnitude_increase": ["criterion=magnitude_increase", "loss=class_dependent", "data.imbalance.positive_class=3"],
    "pls_vip": ["criterion=pls_vip", "criterion.num_samples=300"],
    "l1_filter": ["criterion=l1_filter"],  # default kinds (auto): + Flatten->Linear, hidden neurons
    "l1_filter_conv_only": ["criterion=l1_filter", "prune.group_kinds=[conv]"],
    "pls_vip_conv_only": ["criterion=pls_vip", "criterion.num_samples=300", "prune.group_kinds=[conv]"],
    "taylor_filter": ["criterion=taylor_filter", "criterion.num_batches=3"],
    "random_filter": ["criterion=random_filter"],
    "snip_at_init": ["criterion=snip", "schedule=one_shot", "schedule.at_init=true", "schedule.sparsity=0.8"],
    "gradual": ["schedule=gradual", "schedule.end_step=30", "schedule.frequency=10", "criterion.scope=layer"],
    "progressive": ["criterion=activation_energy", "schedule=progressive", "rewind=none"],
    "weighted_ce_balanced": ["loss=weighted_ce", "loss.beta=0.999", "data.imbalance.long_tail_ratio=10"],
}


@pytest.mark.parametrize("name", list(CLI_METHODS))
def test_every_method_runs_from_the_cli(name, tmp_path):
    args = [
        "data=digits",
        "model=cnn_small_bn",
        "logger=none",
        "trainer.max_epochs=2",
        "schedule.rounds=1",
        *CLI_METHODS[name],
    ]
    if any(a.startswith("schedule=") for a in args):
        args.remove("schedule.rounds=1")
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    assert rows[-1]["sparsity"] > 0 or rows[-1].get("units_removed_share", 0) > 0
    if rows[-1].get("compact_max_abs_diff") is not None:
        assert rows[-1]["compact_max_abs_diff"] < 1e-4 and rows[-1]["flops_ratio"] < 1
