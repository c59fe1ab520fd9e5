"""Where the configs live and which groups and options they offer.

The configs sit in ``conf/`` at the repository root; a wheel ships them as ``prunelab/conf`` (pyproject's
force-include), so an installed prunelab finds them without the source tree.
"""

from __future__ import annotations

from pathlib import Path


def conf_dir() -> Path:
    """The config directory: packaged copy first, then the source tree's ``conf/``."""
    package = Path(__file__).resolve().parents[1]  # src/prunelab (or site-packages/prunelab)
    for candidate in (package / "conf", package.parents[1] / "conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"prunelab configs not found next to {package} (reinstall prunelab)")


def config_groups() -> dict[str, list[str]]:
    """Every config group (folder under conf/, nested ones as ``a/b``) and its options (YAML names)."""
    root, out = conf_dir(), {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        opts = sorted(f.stem for f in folder.glob("*.yaml") if not f.stem.startswith("_"))
        if opts and not folder.relative_to(root).as_posix().startswith("hydra"):  # hydra/launcher: Hydra's own
            out[folder.relative_to(root).as_posix()] = opts
    return out
