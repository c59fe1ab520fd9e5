"""The layer contracts of tools/check_structure.py (issue 28) hold, and they can fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("check_structure", REPO / "tools" / "check_structure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layers():
    tool = _tool()
    assert tool.main() == 0
    roots = sorted(p.name for p in (REPO / "src" / "prunelab").glob("*.py"))
    assert roots == ["__init__.py", "__main__.py", "errors.py"]


def test_a_pruning_module_that_reads_the_run_folder_breaks_the_contract():
    tool = _tool()
    root = tool.ROOT / tool.PACKAGE
    graph = {
        "prunelab.pruning.rewind": {"prunelab.runs.files", "prunelab.errors", "prunelab.pruning.masks"},
        "prunelab.models.mlp": {"prunelab.config.groups"},
        "prunelab.data.base": {"prunelab.errors"},
    }
    problems = tool.contracts(graph, [root / "errors.py", root / "results.py", root / "pruning" / "rewind.py"])
    assert problems == [
        "src/prunelab/results.py: a module at the package root (only __init__.py, __main__.py, errors.py)",
        "prunelab.pruning.rewind imports prunelab.runs.files: prunelab.pruning may import only itself and "
        "prunelab.errors",
        "prunelab.models.mlp imports prunelab.config.groups: prunelab.models may import only itself and "
        "prunelab.errors",
    ]
