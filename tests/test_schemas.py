"""Typed configs: every criterion/schedule/loss/data option is merged onto its ConfigStore schema, so a misspelled
key or a wrong type fails at compose time naming the key; and results are written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from prunelab.config.groups import conf_dir, config_groups
from prunelab.config.schemas import SCHEMA_GROUPS, register, schema_for
from prunelab.runs import files as results
from tests.conftest import cli, compose_cfg

BAD_KEY = (ConfigKeyError, ConfigAttributeError)
OPTIONS = [(g, o) for g in SCHEMA_GROUPS for o in config_groups()[g]]


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_option_is_typed_by_its_schema(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    node_type = OmegaConf.get_type(cfg, group)
    assert dataclasses.is_dataclass(node_type), f"{group}={option} is not typed"
    assert node_type.__name__.endswith("Schema")
    text = (conf_dir() / group / f"{option}.yaml").read_text()
    assert f"schema_{option}" in text  # the YAML names its schema first in its defaults


def test_schemas_cover_every_option_and_type_their_fields():
    made = register(conf_dir())
    assert set(made) == {f"{g}/{o}" for g, o in OPTIONS}
    fields = {f.name: f.type for f in dataclasses.fields(schema_for("prunelab.pruning.schedules.Iterative"))}
    assert fields["rate"] in (float, "float") and fields["rounds"] in (int, "int")


@pytest.mark.parametrize(
    ("override", "error", "key"),
    [
        ("criterion.scpe=layer", BAD_KEY, "scpe"),
        ("schedule.rounds=many", ValidationError, "rounds"),
        ("loss.label_smoothing=high", ValidationError, "label_smoothing"),
        ("data.batch_sise=32", BAD_KEY, "batch_sise"),
        ("data.imbalance.neg_pos_ratoi=5", BAD_KEY, "neg_pos_ratoi"),
    ],
)
def test_bad_key_or_type_fails_at_compose_time(override, error, key):
    with pytest.raises(Exception) as info:  # Hydra wraps the schema's error
        compose_cfg([override])
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(x, error) for x in chain), [type(x).__name__ for x in chain]
    assert any(key in str(x) for x in chain)


def test_bad_key_in_a_sweep_fails_before_any_job_runs(tmp_path):
    proc = cli(["-m", "schedule.rate=0.5,lots", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("prunelab: error:") and "schedule.rate=lots" in line and "Float" in line
    assert not list((tmp_path / "sweep").glob("*/summary.json"))  # no job started


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    results.atomic_write_json(path, {"status": "complete"})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        results.atomic_write_json(path, {"status": "running"})
    assert json.loads(path.read_text()) == {"status": "complete"}  # never half-written
    assert [p.name for p in Path(tmp_path).iterdir()] == ["summary.json"]  # the temporary file is gone


def test_the_schema_cache_is_current_and_builds_the_same_schemas():
    """Issue 31: typos are reported without importing torch because the schemas of prunelab's own options come
    from src/prunelab/config/schema_cache.json while their source files are unchanged. The committed cache must
    equal a fresh build (else: `python -m prunelab.config.schemas`), and a schema built from it must equal the one
    built by importing the class: same fields, types and defaults."""
    import dataclasses
    import json

    from prunelab.config import schemas
    from prunelab.config.groups import conf_dir

    fresh = schemas.build_cache(conf_dir())
    committed = json.loads(schemas.CACHE.read_text())
    assert committed == fresh, "stale schema cache: run `python -m prunelab.config.schemas` and commit it"
    for target, entry in fresh.items():
        assert schemas._cached_fields(target, committed) is not None, target  # its files are unchanged
        a, b = schemas._dataclass(target, entry["fields"]), schemas.schema_for(target)
        fa, fb = dataclasses.fields(a), dataclasses.fields(b)
        assert [(f.name, f.type) for f in fa] == [(f.name, f.type) for f in fb], target
        for x, y in zip(fa, fb, strict=True):
            made = [x.default_factory() if x.default_factory is not dataclasses.MISSING else x.default for x in (x, y)]
            assert made[0] == made[1], (target, x.name)


def test_a_changed_source_file_makes_its_cache_entry_unused(tmp_path, monkeypatch):
    from prunelab.config import schemas

    entry = {"fields": [], "files": {"config/schemas.py": "0" * 40}}  # a digest that no file has
    assert schemas._cached_fields("prunelab.x.Y", {"prunelab.x.Y": entry}) is None
    entry["files"] = {"config/schemas.py": schemas._sha1(schemas.PACKAGE / "config" / "schemas.py")}
    assert schemas._cached_fields("prunelab.x.Y", {"prunelab.x.Y": entry}) == []
