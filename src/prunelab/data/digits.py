"""scikit-learn's 8x8 digits (1,797 images, 10 classes): the embedded default, no files needed."""

from __future__ import annotations

import torch

from prunelab.data.base import RawData, TensorDataModule, stratified_split


class DigitsDataModule(TensorDataModule):
    dataset_name = "digits"

    def __init__(self, test_fraction: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = float(test_fraction)

    def load(self) -> RawData:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32).div_(16.0)  # (N, 8, 8) in [0, 1]
        y = torch.tensor(d.target, dtype=torch.long)
        gen = torch.Generator().manual_seed(12345)  # fixed: the test split never depends on run seeds
        tr, te = stratified_split(y, self.test_fraction, gen)
        return RawData(x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)])
