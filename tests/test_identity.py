"""Run identity from meaning (issue 28): class names, not module paths; defaults leave the hash; old ids adopted."""

from __future__ import annotations

import json
import sys
import types

import pytest
from omegaconf import OmegaConf

from prunelab.config.identity import canonical, code_name, differences, run_id, shipped_targets
from prunelab.runner.migrate import LATER_NAMES, LEGACY_PATHS, legacy_run_id
from tests.conftest import TINY_RUN, cli, compose_cfg

# Configs whose ids the previous scheme gave, computed by prunelab 7bdddc4 (before issue 28)
OLD_IDS = {
    "": "1efe7b9747",
    "criterion=l1_filter": "3751d605da",
    "experiment=jordao_fashion": "3c095daee6",
    "rewind=step": "e42fcc2b72",
    "quantize=fp16": "4bc84f3e3b",
    "loss=class_dependent": "9fa93562cd",
    "criterion=fpgm": "74ab7e2a64",
    "population=3": "0cb0096cbf",
    "training_loop=lightning": "eaa148cde0",
    "data=mnist model=lenet5": "1697bff75b",
    "experiment=osaku_fashion": "236ee8ec12",
    "experiment=hooker_fashion": "c963484f3a",
}
CONFIGS = [c.split() for c in OLD_IDS] + [["criterion=random_filter"], ["schedule=gradual"], ["rewind=reinit"]]


def _moved(cfg, module: str):
    """``cfg`` with every prunelab class and function named at ``module`` instead (as after a file move)."""
    plain = OmegaConf.to_container(cfg, resolve=False)

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and node.startswith("prunelab.") and node.rsplit(".", 1)[-1] in LEGACY_PATHS:
            return f"{module}.{node.rsplit('.', 1)[-1]}"
        return node

    return OmegaConf.create(walk(plain))


@pytest.fixture
def moved_module(monkeypatch):
    """A module ``prunelab.elsewhere`` that holds every configured prunelab class (a package reorganisation)."""
    import importlib

    module = types.ModuleType("prunelab.elsewhere")
    for path in shipped_targets() | {"prunelab.pruning.importances.fpgm.fpgm"}:
        mod, _, attr = path.rpartition(".")
        if path.startswith("prunelab."):
            setattr(module, attr, getattr(importlib.import_module(mod), attr))
    monkeypatch.setitem(sys.modules, "prunelab.elsewhere", module)
    return "prunelab.elsewhere"


def test_moving_every_class_to_another_module_keeps_every_run_id(moved_module):
    for overrides in CONFIGS:
        cfg = compose_cfg(overrides)
        moved = _moved(cfg, moved_module)
        assert OmegaConf.select(moved, "criterion._target_").startswith(moved_module)
        assert run_id(moved) == run_id(cfg), overrides
        assert not differences(moved, cfg), overrides


def test_the_legacy_id_is_the_old_scheme_before_and_after_a_move(moved_module):
    for overrides, old in zip(CONFIGS, OLD_IDS.values(), strict=False):
        cfg = compose_cfg(overrides)
        assert legacy_run_id(cfg) == old, overrides
        assert legacy_run_id(_moved(cfg, moved_module)) == old, overrides


def test_the_pin_and_the_ids_follow_values_not_paths():
    base = run_id(compose_cfg([]))
    assert base == "302ba9dc80"
    assert run_id(compose_cfg(["schedule.rate=0.2"])) != base
    assert run_id(compose_cfg(["seed=1"])) != base
    assert run_id(compose_cfg(["seed=0", "schedule.rounds=5", "prune.normalize=auto"])) == base  # defaults


def test_a_key_at_its_default_leaves_the_hash_so_adding_one_renames_nothing():
    cfg = OmegaConf.to_container(compose_cfg([]), resolve=False)
    base = run_id(OmegaConf.create(cfg))
    for node, key in (("schedule", "rounds"), ("criterion", "scope"), ("prune", "round_to"), ("trainer", "devices")):
        fewer = json.loads(json.dumps(cfg))
        default_here = key in canonical(OmegaConf.create(cfg), drop=False).get(node, {}) and key not in (
            canonical(OmegaConf.create(cfg)).get(node) or {}
        )
        del fewer[node][key]
        assert (run_id(OmegaConf.create(fewer)) == base) == default_here, (node, key)
    assert "rounds" not in canonical(compose_cfg([]))["schedule"]  # Iterative's default is 5: left out
    assert canonical(compose_cfg([]))["trainer"]["devices"] == 1  # Lightning's default is auto: kept


def test_differences_refuses_values_that_share_an_id():
    """Two versions with different defaults give the same id to different values: the folder check still tells."""
    a = OmegaConf.to_container(compose_cfg([]), resolve=False)
    b = json.loads(json.dumps(a))
    b["schedule"]["rate"] = 0.3
    assert differences(OmegaConf.create(a), OmegaConf.create(b)) == ["schedule.rate"]
    del b["schedule"]["rate"]  # missing on one side: stands for the default, which 0.5 is not
    assert differences(OmegaConf.create(a), OmegaConf.create(b)) == ["schedule.rate"]
    c = json.loads(json.dumps(a))
    del c["schedule"]["rounds"]  # missing, and 5 is the default
    assert differences(OmegaConf.create(a), OmegaConf.create(c)) == []


def test_prunelab_names_are_unique_among_shipped_targets():
    names = [code_name(t) for t in shipped_targets() if t.startswith("prunelab.")]
    assert len(names) == len(set(names)) > 30
    assert code_name("torch.optim.Adam") == "torch.optim.Adam"  # code outside prunelab: hashed in full
    later = {n for n in names if n not in ("SweepSummary", "CSVLogger", "WandbLogger")} - set(LEGACY_PATHS)
    assert later <= LATER_NAMES  # a new name must be declared as one no old id can name


def test_a_folder_made_under_the_old_id_is_adopted_once(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = cli(TINY_RUN, out)
    assert first.returncode == 0, first.stderr[-2000:]
    (new,) = [p.parent for p in out.rglob("run_config.yaml")]
    cfg = OmegaConf.load(new / "run_config.yaml")
    old = new.parent / legacy_run_id(cfg)
    new.rename(old)  # what the previous prunelab left: the same files, named by the old id
    summary = json.loads((old / "summary.json").read_text())
    (old / "summary.json").write_text(json.dumps({**summary, "run_id": old.name}))
    again = cli(TINY_RUN, out)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to do" in again.stdout or "already complete" in again.stdout, again.stdout[-1500:]
    assert f"moved to {new}" in again.stdout + again.stderr and not old.exists()
    assert json.loads((new / "migrated.json").read_text())["from"] == old.name
    assert json.loads((new / "summary.json").read_text())["run_id"] == new.name
    assert (new / "run_config.legacy.yaml").is_file()
    third = cli(TINY_RUN, out)
    assert third.returncode == 0 and "moved to" not in third.stdout + third.stderr


def test_a_folder_under_the_old_id_holding_another_config_is_left_alone(tmp_path):
    cfg = compose_cfg([])
    parent = tmp_path / "runs"
    old = parent / legacy_run_id(cfg)
    old.mkdir(parents=True)
    (old / "run_config.yaml").write_text(OmegaConf.to_yaml(compose_cfg(["seed=7"])))
    from prunelab.runner.migrate import adopt

    assert adopt(cfg, parent / run_id(cfg)) is None and old.is_dir()
