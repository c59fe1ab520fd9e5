"""README "Extending prunelab": a criterion, a dataset, a model and a schedule of your own, each one Python file and
one YAML in a folder outside the package (``PRUNELAB_CONFIG_PATH`` + ``PYTHONPATH``), nothing in prunelab edited."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import cli

FILES = {
    "my_criterion.py": '''
        """score = w**2: a toy unstructured criterion."""
        from prunelab.pruning import masks as masking


        class Squared:
            structured = False  # one score per weight
            group_kinds = ()
            needs_data = False

            def __init__(self, scope: str = "global"):
                self.scope = scope

            def scores(self, model, masks, batches=None, context=None):
                return {n: masking.effective(model, n).detach() ** 2 for n in masks}
    ''',
    "criterion/squared.yaml": """
        # w**2, a toy criterion (tests/test_extending.py).
        _target_: my_criterion.Squared
        scope: layer
    """,
    "my_data.py": '''
        """Three Gaussian blobs in 2-D, 4x4 images: a toy dataset."""
        import torch

        from prunelab.data.base import RawData, TensorDataModule


        class Blobs(TensorDataModule):
            dataset_name = "blobs"

            def __init__(self, n: int = 300, **kwargs):
                super().__init__(**kwargs)
                self.n = int(n)

            def load(self) -> RawData:
                gen = torch.Generator().manual_seed(7)
                y = torch.arange(self.n) % 3
                x = torch.randn(self.n, 4, 4, generator=gen) * 0.5 + y.view(-1, 1, 1).float()
                x = (x - x.min()) / (x.max() - x.min())
                cut = self.n * 3 // 4
                return RawData(x[:cut], y[:cut], x[cut:], y[cut:], ["a", "b", "c"])
    ''',
    "data/blobs.yaml": """
        # Three Gaussian blobs, a toy dataset (tests/test_extending.py).
        defaults:
          - _base_     # prunelab's shared data options (batch size, splits, imbalance)
        _target_: my_data.Blobs
        n: 300
        batch_size: 32
    """,
    "my_model.py": '''
        """A two-layer perceptron: a toy model (any nn.Module taking input_shape and num_classes)."""
        import math

        from torch import nn


        class Tiny(nn.Module):
            def __init__(self, input_shape, num_classes, width: int = 12):
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU())
                self.head = nn.Linear(width, num_classes)

            def forward(self, x):
                return self.head(self.body(x))
    ''',
    "model/tiny.yaml": """
        # A two-layer perceptron, a toy model (tests/test_extending.py).
        _target_: my_model.Tiny
        width: 12
    """,
    "my_schedule.py": '''
        """Sparsity grows linearly to `final` over `rounds` rounds: a toy schedule."""
        from prunelab.pruning.schedules import Schedule


        class Linear(Schedule):
            def __init__(self, final: float = 0.6, rounds: int = 3):
                self.final, self.num_rounds = float(final), int(rounds) + 1

            def sparsity_at(self, round_: int) -> float:
                return self.final * round_ / (self.num_rounds - 1)
    ''',
    "schedule/linear.yaml": """
        # Sparsity grows linearly to `final`, a toy schedule (tests/test_extending.py).
        _target_: my_schedule.Linear
        final: 0.6
        rounds: 3
    """,
    "my_rewind.py": '''
        """Survivors restart from half their initial values: a toy rewind mode."""
        import torch

        from prunelab.pruning.rewind import Rewind


        class Halved(Rewind):
            def __init__(self, factor: float = 0.5, **kwargs):
                super().__init__(kind="init", **kwargs)  # what to restore: the round-0 initial weights
                self.factor = float(factor)

            def apply(self, model, snapshots):
                super().apply(model, snapshots)
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(self.factor)
    ''',
    "rewind/halved.yaml": """
        # Survivors restart from half their initial values, a toy rewind (tests/test_extending.py).
        _target_: my_rewind.Halved
        factor: 0.5
    """,
}


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    root = tmp_path_factory.mktemp("my_prunelab")
    for name, text in FILES.items():
        path = root / ("conf/" + name if name.endswith(".yaml") else name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return {"PYTHONPATH": str(root), "PRUNELAB_CONFIG_PATH": str(root / "conf")}


def test_your_own_criterion_dataset_model_and_schedule_run_without_editing_prunelab(extension, tmp_path, monkeypatch):
    args = ["criterion=squared", "data=blobs", "model=tiny", "schedule=linear", "logger=csv", "trainer.max_epochs=1"]
    proc = cli(args, tmp_path, env_extra=extension)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p.parent for p in tmp_path.rglob("run_config.yaml")]
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert [round(r["sparsity"], 2) for r in rows] == [0.0, 0.2, 0.4, 0.6]  # the toy schedule, layer by layer
    assert {"test/recall/a", "test/recall/b", "test/recall/c"} <= set(rows[0])  # the toy dataset's classes
    assert json.loads((run / "data.json").read_text())["dataset"] == "blobs"
    again = cli(args, tmp_path, env_extra=extension)  # the same id: the folder is found and verified
    assert again.returncode == 0 and "nothing to do" in again.stdout
    listed = cli(["list", "criterion"], tmp_path, env_extra=extension)
    assert "squared" in listed.stdout and "toy criterion" in listed.stdout
    import prunelab

    monkeypatch.setenv("PRUNELAB_CONFIG_PATH", extension["PRUNELAB_CONFIG_PATH"])
    monkeypatch.syspath_prepend(extension["PYTHONPATH"])
    model = prunelab.load_model(run)  # your model's class is allowed: its option is on PRUNELAB_CONFIG_PATH
    assert type(model).__name__ == "Tiny"


def test_an_unknown_option_names_the_folder_to_add_it_to(tmp_path):
    proc = cli(["criterion=squared"], tmp_path)
    assert proc.returncode == 2
    assert "criterion/squared.yaml to a folder named in PRUNELAB_CONFIG_PATH" in proc.stderr


def test_options_of_your_own_are_listed_with_prunelabs(extension, monkeypatch):
    from prunelab.config.groups import config_groups, option_file

    monkeypatch.setenv("PRUNELAB_CONFIG_PATH", extension["PRUNELAB_CONFIG_PATH"])
    groups = config_groups()
    assert {"squared", "magnitude"} <= set(groups["criterion"]) and "blobs" in groups["data"]
    assert option_file("model", "tiny") == Path(extension["PRUNELAB_CONFIG_PATH"]) / "model" / "tiny.yaml"


def test_a_paper_is_one_module_found_by_the_registry(tmp_path, monkeypatch):
    from prunelab.analysis import papers
    from prunelab.cli import help as helptext

    (tmp_path / "toy_paper.py").write_text(
        textwrap.dedent(
            '''
            """A toy paper: its claims, its sweep and its table in one module."""
            CLAIMS = []
            SPEC = {"sweeps": {"": ["seed=0"]}, "seeds": 1, "configs": [], "data": [], "time": "about 1 s (1 run)"}


            def table(runs, root):
                return f"{len(runs)} runs"
            '''
        )
    )
    monkeypatch.setattr(papers, "__path__", [*papers.__path__, str(tmp_path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "prunelab.analysis.papers.toy_paper", None)
    del sys.modules["prunelab.analysis.papers.toy_paper"]
    found = papers.registry()
    assert {"entezari", "hooker", "jordao", "lth", "osaku", "toy_paper"} <= set(found)
    assert found["toy_paper"].table([], tmp_path) == "0 runs"
    assert "toy_paper" in helptext.reproduce_help() and "about 1 s (1 run)" in helptext.reproduce_help()
    assert "toy_paper" in helptext.main_help()


def test_a_rewind_mode_of_your_own_is_one_file_and_one_yaml(extension, tmp_path):
    base = ["logger=csv", "trainer.max_epochs=1", "schedule.rounds=1"]
    runs = {}
    for rewind in ("init", "halved"):
        proc = cli([*base, f"rewind={rewind}", f"hydra.run.dir={tmp_path / rewind}"], tmp_path, env_extra=extension)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[rewind] = [json.loads(line) for line in (tmp_path / rewind / "results.jsonl").read_text().splitlines()]
    assert runs["init"][0]["test/loss"] == runs["halved"][0]["test/loss"]  # round 0: no rewind yet
    assert runs["init"][1]["test/loss"] != runs["halved"][1]["test/loss"]  # round 1 restarted from halved weights
    assert runs["init"][1]["sparsity"] == runs["halved"][1]["sparsity"]
