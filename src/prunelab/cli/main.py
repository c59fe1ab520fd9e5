"""The ``prunelab`` command: Hydra entry point (thin), with one-line errors for bad input.

``prunelab [overrides...]`` runs an experiment; ``prunelab --help`` lists the commands and options
(:mod:`prunelab.cli.help`; Hydra's own help is ``--hydra-help``). Mistakes in the command line
(unknown option in a group, unknown key, bad value, a value out of range) are found by composing the config (each
variant of a sweep) and checking it (:func:`prunelab.config.checks.check_config`) before Hydra runs, and
reported on one line naming the key and the fix, with exit status 2.

Exit status: 0 done; 2 bad input (one line on stderr); 3 some sweep jobs failed or were refused (the sweep summary
lists them); 128 + N killed by signal N (143 SIGTERM, 130 SIGINT), with the run marked ``interrupted``.
``prunelab --wait ...`` queues behind another process working in the same run folder instead of refusing.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunelab.config.groups import conf_dir, config_groups, searchpath_override
from prunelab.errors import PrunelabError, describe

if TYPE_CHECKING:
    from omegaconf import DictConfig

# Nothing heavy at import: `--version`, `--help` and `list` answer without Hydra, torch or Lightning (the schemas
# that register_resolvers builds import every option's class, and with them torch). benchmarks/cli_startup.py


def fail(message: str, code: int = 2) -> None:
    print(f"prunelab: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _group_overrides(args: list[str]) -> list[tuple[str, str]]:
    out = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if "." not in key and not key.startswith("hydra"):
            out.append((key, value))
    return out


def check_group_options(args: list[str]) -> None:
    """``group=option`` with an option that has no YAML file: one line listing the options."""
    groups = config_groups()
    for key, value in _group_overrides(args):
        if key not in groups:
            continue
        for option in value.strip("[]").split(","):
            option = option.strip()
            if option and option != "null" and option not in groups[key]:
                from prunelab.cli.help import hidden

                if hidden(option):
                    fail(
                        f"{key}={option}: {option} is a {'typed schema' if option.startswith('schema_') else 'shared'}"
                        f" part of the '{key}' options, not an option itself (fix: use one of "
                        f"{', '.join(groups[key])}; `prunelab list {key}` describes each)"
                    )
                import difflib

                close = difflib.get_close_matches(option, groups[key], n=1, cutoff=0.6)
                hint = f"did you mean {key}={close[0]}? or " if close else ""
                fail(
                    f"{key}={option}: unknown option for '{key}' (fix: {hint}use one of {', '.join(groups[key])}, "
                    f"or add {key}/{option}.yaml to a folder named in PRUNELAB_CONFIG_PATH)"
                )


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The override lists to check before a sweep: every swept key at its first value, then each other value of
    each swept key in turn (not the full product: a bad key or value fails in one of these). Interval sweeps
    (Optuna) and anything that does not parse are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return [overrides]
    values: list[list[str]] = []
    for o in parsed:
        line = str(o.input_line)
        prefix = line.split("=", 1)[0]
        if o.is_sweep_override():
            try:
                values.append([f"{prefix}={v}" for v in o.sweep_string_iterator()] or [line])
            except Exception:  # interval sweeps: the sweeper samples them
                values.append([])
            twice = sorted({v for v in values[-1] if values[-1].count(v) > 1})
            if twice:  # the same job twice: the second would find the first's folder in use, then vanish from counts
                fail(
                    f"{prefix.lstrip('+~')}: the sweep lists {twice[0].split('=', 1)[1]} more than once "
                    "(fix: list each value once)"
                )
        else:
            values.append([line])
    base = [v[0] for v in values if v]
    out = [base]
    for i, options in enumerate(values):
        for alt in options[1:]:
            out.append([alt if j == i else v[0] for j, v in enumerate(values) if v])
    return out


def _compose_error(exc: Exception, overrides: list[str]) -> str:
    parts: list[str] = []  # hydra/omegaconf errors: keep the first line of each message in the chain
    e: BaseException | None = exc
    while e is not None and len(parts) < 3:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if first not in parts and "$VALUE" not in first:
            parts.append(first)
        e = e.__cause__ or e.__context__
    text = " / ".join(parts)
    if "could not be converted" in text or "Validation" in text:
        fix = "give the key a value of the type named (see `prunelab --cfg job` for the current values)"
    else:
        fix = _unknown_key_fix(text, overrides)
    return f"{text} (fix: {fix})"


def _unknown_key_fix(text: str, overrides: list[str]) -> str:
    """For ``Could not override 'a.b'``: the closest key of ``a`` ("did you mean"), and ``a``'s keys. A typed group
    (a schema) takes no new key, so ``+key=value`` is suggested only outside them."""
    import difflib
    import re

    found = re.search(r"Could not override '([^']+)'", text)
    if not found:
        return "check the key's spelling with `prunelab --cfg job`; add a new key with +key=value"
    dotted = found.group(1)
    parent, _, leaf = dotted.rpartition(".")
    keys = _keys_under(parent, [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != dotted])
    close = difflib.get_close_matches(leaf, keys, n=1, cutoff=0.6)
    hint = f"did you mean {(parent + '.') if parent else ''}{close[0]}? " if close else ""
    where = f"'{parent}'" if parent else "the top level"
    listed = ", ".join(keys[:30]) + (", ..." if len(keys) > 30 else "")
    typed = "Schema'" in text
    extra = "" if typed else "; add a new key with +key=value"
    return f"{hint}the keys of {where}: {listed}{extra}"


def _keys_under(parent: str, overrides: list[str]) -> list[str]:
    """The keys of ``parent`` in the config composed without the bad override (inside check_compose's Hydra)."""
    from hydra import compose
    from omegaconf import OmegaConf

    try:
        cfg = compose(config_name="config", overrides=overrides)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(str(k) for k in node) if OmegaConf.is_dict(node) else []
    except Exception:
        return []


def check_compose(args: list[str]) -> None:
    """Compose before Hydra starts (each variant of a sweep too), so unknown keys and bad values fail on one line
    naming the key, before any job runs."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in args):
        return  # --cfg, --help, ...: Hydra's own
    overrides = [a for a in args if a not in ("-m", "--multirun") and not a.lstrip("+~").startswith("hydra")]
    from hydra import compose, initialize_config_dir

    from prunelab.config.checks import check_config

    multirun = any(a in ("-m", "--multirun") for a in args)
    hydra_overrides = [a for a in args if a.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "hydra.searchpath="))]
    folders: list[tuple[str, Path]] = []
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        for variant in sweep_variants(overrides):
            try:
                cfg = compose(config_name="config", overrides=[*variant, *hydra_overrides], return_hydra_config=True)
                check_config(cfg, machine=False)  # each job checks its own machine (a GPU) itself
            except PrunelabError as exc:
                fail(exc.one_line())
            except Exception as exc:
                fail(_compose_error(exc, variant))
            if not folders:
                folders = [("paths.output_dir", Path(str(cfg.paths.output_dir))), _job_folder(cfg, multirun)]
    for key, folder in folders:
        check_writable(folder, key)


def _job_folder(cfg: DictConfig, multirun: bool) -> tuple[str, Path]:
    """The run folder (or sweep folder) Hydra will create, when it can be resolved before Hydra starts."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        return key, Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except Exception:  # an interpolation only Hydra's runtime can resolve
        return "paths.output_dir", Path(str(cfg.paths.output_dir))


NAME_MAX = 255  # bytes in one path component on Linux file systems (ext4, xfs, tmpfs, NFS)


def check_writable(folder: Path, key: str = "paths.output_dir") -> None:
    """A folder (or its nearest existing parent) must be writable before Hydra creates run folders in it."""
    long = next((part for part in folder.parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        fail(
            f"{key}: the folder name {long[:40]}... is {len(os.fsencode(long))} bytes, over the file system's limit "
            f"of {NAME_MAX} (fix: use a shorter name)"
        )
    probe = folder.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
        fail(
            f"{key}: cannot create or write {folder} (fix: set {key}=<writable folder>"
            + (" or PRUNELAB_OUTPUT_DIR)" if key == "paths.output_dir" else ")")
        )


def _task() -> Any:
    """Hydra's entry point, made on first use (``hydra.main`` reads ``sys.argv``)."""
    import hydra

    return hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_job)()


def _job(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from prunelab.runner.run import run
    from prunelab.runner.run_folder import write_error

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    mode = HydraConfig.get().mode
    multirun = mode is not None and mode.name == "MULTIRUN"
    try:
        summary = run(cfg, run_dir)
    except Exception as exc:
        if not multirun:
            if isinstance(exc, OSError):
                exc = write_error(Path(exc.filename or run_dir), exc)
            if isinstance(exc, PrunelabError):
                fail(exc.one_line())
            raise
        # a sweep goes on: this job's summary.json says failed (with the error); `prunelab report` lists it
        logging.getLogger("prunelab").error("job failed: %s", describe(exc))
        return float("nan")  # a sweeper (Optuna) records the trial as failed
    final, key = summary.get("final", {}), str(cfg.objective)
    if final.get(key) is None:
        logging.getLogger("prunelab").warning("objective %s is not among the final round's metrics", key)
        return float("nan")
    return float(final[key])


def _help_or_list(args: list[str]) -> bool:
    """``--version``, ``--help``, ``list`` and ``reproduce --help``: prunelab's own texts (:mod:`prunelab.cli.help`)."""
    from prunelab.cli import help as helptext

    if args[:1] == ["list"]:
        helptext.list_main(args[1:])
    elif args[:1] in (["--version"], ["-V"]):
        print(f"prunelab {helptext.__version__}")
    elif args[:1] == ["reproduce"] and any(a in ("-h", "--help") for a in args[1:]):
        print(helptext.reproduce_help(), end="")
    elif args[:1] not in (["report"], ["export"]) and any(a in ("-h", "--help") for a in args):
        print(helptext.main_help(), end="")
    else:
        return False
    return True


def _completion(args: list[str]) -> None:
    """Hydra's shell completion, without schemas and shared files among the candidates."""
    import contextlib
    import io

    from prunelab.cli.help import filter_completion

    sys.argv = [sys.argv[0], *args]
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            _task()
    finally:
        print(filter_completion(buffer.getvalue().rstrip("\n")))


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    args = list(sys.argv[1:] if argv is None else argv)
    if _help_or_list(args):
        return None
    if args and args[0] == "report":
        from prunelab.analysis.report import main as report_main

        return report_main(args[1:])
    if args and args[0] == "export":
        from prunelab.cli.export import main as export_main

        return export_main(args[1:])
    if args and args[0] == "reproduce":
        from prunelab.cli.reproduce import main as reproduce_main

        return reproduce_main(args[1:])
    from prunelab.config.register import register_resolvers
    from prunelab.runner.interrupt import RunInterrupted, interruptible

    register_resolvers()
    if "--wait" in args:
        args = [a for a in args if a != "--wait"] + ["wait=true"]
    if any(a in ("-sc", "--shell-completion") for a in args) and any(a.startswith("query=") for a in args):
        return _completion(args)
    searchpath = searchpath_override()  # PRUNELAB_CONFIG_PATH: your own options, found by Hydra like prunelab's
    if searchpath and not any(a.startswith("hydra.searchpath=") for a in args):
        args.append(searchpath)
    check_group_options(args)
    check_compose(args)
    sys.argv = [sys.argv[0], *args]
    from prunelab.runner import sweep

    try:
        with interruptible():
            _task()
    except RunInterrupted as exc:
        written = sweep.summary_after_signal(exc.signal_name)
        where = f"; sweep summary: {written['sweep_dir']}/sweep_summary.md" if written else ""
        fail(
            f"interrupted by {exc.signal_name}: the run is marked interrupted{where} (fix: relaunch the same "
            "command to resume; finished rounds and jobs are kept)",
            code=exc.exit_code,
        )
    if sweep.LAST.get("undone"):  # the other jobs' results are intact; the exit status still says "not all done"
        fail(
            f"{sweep.LAST['undone']} of {sweep.LAST['jobs']} sweep jobs failed or were refused, see "
            f"{sweep.LAST['summary_path']} (fix: correct them and relaunch the same command; finished jobs are "
            "skipped)",
            code=3,
        )


if __name__ == "__main__":
    main()
