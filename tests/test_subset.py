"""Class-subset specialisation (issue 29, item 7): ``data.classes`` restricts every split to those classes, and
``model.slice_head`` cuts a full-class model's classifier to them, so that round 0 (the reference of every per-class
delta) is the dense model sliced the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from prunelab.config import checks
from prunelab.errors import PrunelabError
from tests.conftest import cli, compose_cfg


def _dm(*overrides):
    cfg = compose_cfg(list(overrides))
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    return dm


def test_data_classes_keeps_only_those_classes_relabelled_in_order():
    full, sub = _dm(), _dm("data.classes=[8,3,5]")
    assert sub.class_names == ["8", "3", "5"] and sub.num_classes == 3 and sub.class_indices == [8, 3, 5]
    for split in ("train", "val", "test"):
        y_full, y_sub = getattr(full, f"y_{split}"), getattr(sub, f"y_{split}")
        kept = (y_full == 8) | (y_full == 3) | (y_full == 5)
        assert len(y_sub) == int(kept.sum())
        mapping = {8: 0, 3: 1, 5: 2}
        assert y_sub.tolist() == [mapping[int(c)] for c in y_full[kept]]
        assert torch.equal(getattr(sub, f"x_{split}"), getattr(full, f"x_{split}")[kept])  # the same normalisation
    assert sub.describe()["all_classes"] == full.class_names


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.classes=[3,12]", "12 is not a class of digits"),
        ("data.classes=[3,3]", "named twice"),
        ("data.classes=[4]", "fewer than two classes"),
        ("data.classes=[cat,dog]", "'cat' is not a class"),
    ],
)
def test_unknown_or_degenerate_subsets_name_data_classes(override, message):
    with pytest.raises(PrunelabError) as err:
        _dm(override)
    assert err.value.key == "data.classes" and message in err.value.message


@pytest.mark.parametrize(
    "overrides",
    [["model.slice_head=true"], ["model.slice_head=true", "data.classes=[1,2]"]],
)
def test_slice_head_needs_classes_and_a_full_class_model(overrides):
    with pytest.raises(PrunelabError) as err:
        checks.check_config(compose_cfg(overrides), machine=False)
    assert err.value.key == "model.slice_head"


def test_slice_head_round0_is_the_full_model_sliced_to_the_subset(tmp_path):
    import prunelab

    full_run = tmp_path / "full"
    proc = cli(["logger=none", "schedule=dense", "trainer.max_epochs=3", f"hydra.run.dir={full_run}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sub_run = tmp_path / "sub"
    args = [
        "logger=none",
        "data.classes=[8,3,5]",
        "model.slice_head=true",
        f"init_weights={full_run / 'rounds' / 'r00' / 'model.pt'}",
        "trainer.max_epochs=0",  # round 0 is the sliced model as it is
        "schedule.rounds=1",
        f"hydra.run.dir={sub_run}",
    ]
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = prunelab.load_model(full_run, round=0).eval()
    sub = _dm("data.classes=[8,3,5]")
    with torch.no_grad():
        logits = model(sub.x_test)[:, [8, 3, 5]]
    expected = torch.softmax(logits, 1).numpy()
    with np.load(sub_run / "rounds" / "r00" / "predictions.npz") as f:
        assert np.array_equal(f["labels"], sub.y_test.numpy())
        assert np.allclose(f["probs"], expected, atol=1e-5)
    rows = [json.loads(line) for line in (sub_run / "results.jsonl").read_text().splitlines()]
    assert set(k.split("/")[-1] for k in rows[1] if k.startswith("damage/gap/")) == {"8", "3", "5"}
    probs1 = np.load(sub_run / "rounds" / "r01" / "predictions.npz")["probs"]
    labels = sub.y_test.numpy()
    for i, name in enumerate(["8", "3", "5"]):  # deltas against the sliced dense model, not a 10-way one
        mine = labels == i
        gap = (expected.argmax(1)[mine] == i).mean() - (probs1.argmax(1)[mine] == i).mean()
        assert rows[1][f"damage/gap/{name}"] == pytest.approx(gap)
