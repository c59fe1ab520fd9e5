"""prunelab: config-driven experiments on class-aware neural-network compression."""

__version__ = "0.1.0"
