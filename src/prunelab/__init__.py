"""prunelab: config-driven experiments on class-aware neural-network compression."""

__version__ = "0.1.0"


def __getattr__(name: str):  # the public API, imported on first use (``import prunelab`` stays light)
    if name in ("load_model", "load_run"):
        from prunelab.runs import api

        return getattr(api, name)
    raise AttributeError(f"module 'prunelab' has no attribute {name!r}")


__all__ = ["__version__", "load_model", "load_run"]


def __dir__() -> list[str]:  # the lazily imported API shows in dir(prunelab) and tab completion
    return sorted({*globals(), *__all__})
