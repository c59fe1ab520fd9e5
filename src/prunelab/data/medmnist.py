"""MedMNIST 2D sets (PneumoniaMNIST, BreastMNIST, ...) from their ``.npz`` file (Yang et al., Sci. Data 2023).

The file holds ``{train,val,test}_{images,labels}``; the official validation split is used by default. With
``download=true`` the official file is fetched from MedMNIST's Zenodo record and its md5 checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunelab.data.base import RawData, TensorDataModule
from prunelab.data.mnist import missing_data

# From the medmnist package (info.py): official 28x28 files and their md5s.
ZENODO = "https://zenodo.org/records/10519652/files/{flag}.npz?download=1"
MD5 = {
    "pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f",
    "breastmnist": "750601b1f35ba3300ea97c75c52ff8f6",
}
CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"], "breastmnist": ["malignant", "normal_benign"]}


class MedMNISTDataModule(TensorDataModule):
    def __init__(self, path: str, flag: str = "pneumoniamnist", download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.path, self.flag, self.download = Path(path).expanduser(), flag, bool(download)
        self.dataset_name = flag

    def _fetch(self) -> None:
        from torchvision.datasets.utils import download_url

        download_url(ZENODO.format(flag=self.flag), str(self.path.parent), self.path.name, MD5.get(self.flag))

    def load(self) -> RawData:
        if not self.path.exists() and self.download:
            self._fetch()
        if not self.path.exists():
            raise missing_data("data.path", self.path, f"{self.flag} .npz file")
        d = np.load(self.path)
        names = CLASS_NAMES.get(self.flag) or [str(i) for i in np.unique(d["train_labels"])]
        return RawData(
            d["train_images"],
            d["train_labels"].ravel(),
            d["test_images"],
            d["test_labels"].ravel(),
            names,
            d["val_images"],
            d["val_labels"].ravel(),
        )
