"""MedMNIST 2D sets (PneumoniaMNIST, BreastMNIST, ...) from their ``.npz`` file (Yang et al., Sci. Data 2023).

The file holds ``{train,val,test}_{images,labels}``; the official validation split is used by default. With
``download=true`` the official file is fetched from MedMNIST's Zenodo record and its md5 checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunelab.data import provenance
from prunelab.data.base import RawData, TensorDataModule
from prunelab.data.mnist import missing_data
from prunelab.errors import PrunelabError

KEYS = tuple(f"{split}_{kind}" for split in ("train", "val", "test") for kind in ("images", "labels"))

# From the medmnist package (info.py): official 28x28 files and their md5s.
ZENODO = "https://zenodo.org/records/10519652/files/{flag}.npz?download=1"
MD5 = provenance.NPZ_MD5
CLASS_NAMES = {"pneumoniamnist": ["normal", "pneumonia"], "breastmnist": ["malignant", "normal_benign"]}


class MedMNISTDataModule(TensorDataModule):
    def __init__(self, path: str, flag: str = "pneumoniamnist", download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.path, self.flag, self.download = Path(path).expanduser(), flag, bool(download)
        self.dataset_name = flag

    def _fetch(self) -> None:
        from torchvision.datasets.utils import download_url

        download_url(ZENODO.format(flag=self.flag), str(self.path.parent), self.path.name, MD5.get(self.flag))

    def source(self) -> str:
        return str(self.path)

    def load(self) -> RawData:
        if not self.path.exists() and self.download:
            self._fetch()
        if not self.path.exists():
            raise missing_data("data.path", self.path, f"{self.flag} .npz file")
        arrays = read_npz(self.path, KEYS)
        sizes = {s: len(arrays[f"{s}_labels"]) for s in ("train", "val", "test")}
        self.official = provenance.check_npz(self.path, self.flag, sizes)
        names = CLASS_NAMES.get(self.flag) or [str(i) for i in np.unique(arrays["train_labels"])]
        labels = {k: v.ravel() for k, v in arrays.items() if k.endswith("_labels")}
        return RawData(
            arrays["train_images"],
            labels["train_labels"],
            arrays["test_images"],
            labels["test_labels"],
            names,
            arrays["val_images"],
            labels["val_labels"],
        )


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file (no pickled objects); a truncated, garbage or incomplete file is a
    one-line error naming the file."""
    fix = "replace it with a complete copy (or data.download=true on a machine with a network)"
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in keys if k not in d.files]
            if missing:
                raise PrunelabError(
                    "data.path", f"{path} has no {missing[0]!r} array (holds {', '.join(d.files)})", fix
                )
            return {k: d[k] for k in keys}
    except PrunelabError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError (pickled objects), OSError
        raise PrunelabError(
            "data.path", f"{path} is truncated or not a valid .npz file ({type(exc).__name__})", fix
        ) from exc
