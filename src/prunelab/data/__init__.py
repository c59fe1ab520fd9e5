"""Data modules: one LightningDataModule per dataset file, all built on :class:`TensorDataModule`."""

from prunelab.data.base import TensorDataModule

__all__ = ["TensorDataModule"]
