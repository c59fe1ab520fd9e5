"""Where the configs live and which groups and options they offer.

The configs sit in ``conf/`` at the repository root; a wheel ships them as ``prunelab/conf`` (pyproject's
force-include), so an installed prunelab finds them without the source tree.

Your own options live outside the package: folders named in ``PRUNELAB_CONFIG_PATH`` (``os.pathsep``-separated,
each laid out like ``conf/``: ``criterion/my_criterion.yaml``, ...) are added to Hydra's config search path
(``hydra.searchpath``), so ``criterion=my_criterion`` composes, is listed by ``prunelab list`` and is checked like a
shipped option (README, "Extending prunelab").
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "PRUNELAB_CONFIG_PATH"


def conf_dir() -> Path:
    """The config directory: packaged copy first, then the source tree's ``conf/``."""
    package = Path(__file__).resolve().parents[1]  # src/prunelab (or site-packages/prunelab)
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"prunelab configs not found next to {package} (reinstall prunelab)")


def user_dirs() -> list[Path]:
    """The folders of your own options (``PRUNELAB_CONFIG_PATH``), in order."""
    return [Path(d).expanduser().resolve() for d in os.environ.get(ENV, "").split(os.pathsep) if d.strip()]


def search_dirs() -> list[Path]:
    """Where options are looked up: prunelab's ``conf/`` first, then :func:`user_dirs`."""
    return [conf_dir(), *user_dirs()]


def searchpath_override() -> str | None:
    """The Hydra override that adds :func:`user_dirs` to the config search path (None without any)."""
    dirs = user_dirs()
    return f"hydra.searchpath=[{','.join(f'file://{d}' for d in dirs)}]" if dirs else None


def option_file(group: str, option: str) -> Path | None:
    """The YAML file of ``group=option`` (prunelab's own first, as Hydra resolves it), or None."""
    for root in search_dirs():
        if (root / group / f"{option}.yaml").is_file():
            return root / group / f"{option}.yaml"
    return None


def config_groups() -> dict[str, list[str]]:
    """Every config group (folder under conf/ or a :func:`user_dirs` folder, nested ones as ``a/b``) and its
    options (YAML names)."""
    found: dict[str, set[str]] = {}
    for root in search_dirs():
        for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
            group = folder.relative_to(root).as_posix()
            opts = {f.stem for f in folder.glob("*.yaml") if not f.stem.startswith("_")}
            if opts and not group.startswith("hydra"):  # hydra/launcher: Hydra's own
                found.setdefault(group, set()).update(opts)
    return {group: sorted(opts) for group, opts in sorted(found.items())}
