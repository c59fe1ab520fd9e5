"""Issue 15: discoverable options. prunelab's own --help, --version, `prunelab list [group]`, reproduce --help, and
shell completion, none of which offer the typed schemas or shared files that are not options."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from prunelab.cli.main import main
from prunelab.cli.reproduce import PAPERS
from prunelab.config.groups import config_groups
from tests.test_faults import one_line_error


def run_main(capsys, *args: str) -> str:
    main(list(args))
    return capsys.readouterr().out


def test_version_is_prunelabs(capsys):
    assert run_main(capsys, "--version").strip() == f"prunelab {version('prunelab')}"


def test_help_names_the_subcommands_and_only_real_options(capsys):
    text = run_main(capsys, "--help")
    assert not text.startswith("cli is powered by Hydra")
    for word in ("prunelab list", "prunelab report", "prunelab reproduce", "--hydra-help", "--version"):
        assert word in text
    assert "schema_" not in text and "_base_" not in text
    assert "criterion" in text and "magnitude" in text


def test_list_describes_every_option_from_its_yaml_header(capsys):
    text = run_main(capsys, "list")
    for group, options in config_groups().items():
        assert f"{group}:" in text
        for option in options:
            line = next(x for x in text.splitlines() if x.split() and x.split()[0] == option)
            assert len(line.split()) > 1, f"{group}/{option}.yaml has no header comment: {line!r}"
    one = run_main(capsys, "list", "criterion")
    assert one.startswith("criterion:") and "data:" not in one and "schema_" not in one
    assert "magnitude  " in one and "(Han et al. 2015)" in one  # "et al." does not end the description


def test_reproduce_help_lists_every_paper_with_its_time(capsys):
    text = run_main(capsys, "reproduce", "--help")
    for paper in PAPERS:
        assert any(line.split()[:1] == [paper] and "min" in line for line in text.splitlines()), paper


def cli_proc(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prunelab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [(["list", "nope"], "list"), (["criterion=schema_magnitude"], "criterion"), (["data=_base_"], "data")],
)
def test_non_options_are_refused_in_one_line(args, key):
    error = one_line_error(cli_proc(*args), key)
    assert "add conf/" not in error  # the file exists: it is not an option, rather than missing


def test_completion_offers_options_not_schemas():
    proc = cli_proc("-sc", "query=bash", COMP_LINE="prunelab criterion=")
    assert proc.returncode == 0, proc.stderr[-2000:]
    words = proc.stdout.split()
    assert "criterion=magnitude" in words and not [w for w in words if "schema_" in w]


@pytest.mark.parametrize(
    "args",
    [["--version"], ["--help"], ["list", "criterion"], ["reproduce", "--help"], ["schedule.rat=0.5"], ["crit=x"]],
)
def test_the_quick_answers_import_no_torch_lightning_or_hydra(args):
    """Issue 31: these answer at once, typos included (the schemas come from their cache; a typo needs Hydra to
    compose, nothing heavier; benchmarks/cli_startup.py measures the CPU time)."""
    heavy = ["torch", "lightning", "torchvision", "torchmetrics"] + ([] if "=" in args[0] else ["hydra"])
    code = (
        "import sys\nfrom prunelab.cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code == 2, e.code\n"
        f"heavy = sorted(m for m in {heavy!r} if m in sys.modules)\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "arg, hint",
    [
        ("schedule.rat=0.5", "did you mean schedule.rate? the keys of 'schedule': _target_, rate, rounds"),
        ("trainer.max_epoch=3", "did you mean trainer.max_epochs?"),
        ("criterion=magnitud", "did you mean criterion=magnitude?"),
    ],
)
def test_typos_get_a_did_you_mean_and_the_groups_keys(tmp_path, arg, hint):
    from tests.conftest import cli

    line = one_line_error(cli([arg], tmp_path), arg.split("=")[0])
    assert hint in line
    if arg.startswith("schedule."):  # a typed group takes no new key: +key=value would only fail again
        assert "+key=value" not in line
