"""ISIC-2016 lesion classification, part 3 (Gutman et al. 2016): benign vs melanoma, 900 train / 379 test images.

Layout under ``root`` (the challenge's own file names)::

    ISBI2016_ISIC_Part3_Training_Data/ISIC_*.jpg    ISBI2016_ISIC_Part3_Training_GroundTruth.csv  (id,benign|malignant)
    ISBI2016_ISIC_Part3_Test_Data/ISIC_*.jpg        ISBI2016_ISIC_Part3_Test_GroundTruth.csv      (id,0.0|1.0)

``download=true`` fetches them from the ISIC challenge bucket. Images are resized to ``image_size`` and kept as
uint8 in memory; training batches get Entezari & Saukh's augmentation (Table I) per image: colour jitter
(brightness, contrast, saturation 0.3, hue 0.1), horizontal and vertical flips, rotation up to 90 degrees, shear
20 degrees, scale 0.8-1.2, random crop of at least 40% of the area. The thin-plate-spline warp of Table I is not
implemented (torchvision has none). Then the paper code's mean/std normalisation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from prunelab.data.base import RawData, TensorDataModule
from prunelab.data.mnist import missing_data

URL = "https://isic-challenge-data.s3.amazonaws.com/2016/"
TRAIN_DIR, TEST_DIR = "ISBI2016_ISIC_Part3_Training_Data", "ISBI2016_ISIC_Part3_Test_Data"
TRAIN_CSV, TEST_CSV = "ISBI2016_ISIC_Part3_Training_GroundTruth.csv", "ISBI2016_ISIC_Part3_Test_GroundTruth.csv"
MEAN, STD = (0.6851, 0.6653, 0.6328), (0.1442, 0.1402, 0.1382)


def _label(value: str) -> int:
    value = value.strip().lower()
    return 1 if value in ("malignant", "1", "1.0") else 0


def _read_split(root: Path, folder: str, table: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with open(root / table, newline="") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].lower().startswith("image")]
    images = []
    for image_id, _ in rows:
        with Image.open(root / folder / f"{image_id}.jpg") as img:
            images.append(
                np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
            )
    return np.stack(images), np.array([_label(v) for _, v in rows], dtype=np.int64)


class Normalize:
    """uint8 batch -> float, scaled to [0, 1] and standardised with fixed mean/std."""

    def __init__(self, mean=MEAN, std=STD):
        self.mean, self.std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    def __call__(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class LesionAugment:
    """Per-image augmentation of a uint8 batch (Entezari & Saukh Table I, less the TPS warp), then Normalize."""

    def __init__(self, size: int, seed: int = 0):
        from torchvision.transforms import v2

        self.seed, self.normalize = seed, Normalize()
        self.pipeline = v2.Compose(
            [
                v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomAffine(degrees=90, shear=20, scale=(0.8, 1.2)),
                v2.RandomResizedCrop(size, scale=(0.4, 1.0), antialias=True),
            ]
        )

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        with torch.random.fork_rng():
            torch.manual_seed((self.seed * 7919 + int(index.sum())) % 2**64)
            out = torch.stack([self.pipeline(img) for img in x])
        return self.normalize(out)


class ISIC2016DataModule(TensorDataModule):
    dataset_name = "isic2016"

    def __init__(self, root: str, image_size: int = 224, download: bool = False, augment: bool = True, **kwargs):
        kwargs["normalize"] = False  # done per batch, after augmentation
        super().__init__(augment=augment, **kwargs)
        self.root, self.image_size, self.download = Path(root).expanduser(), int(image_size), bool(download)

    def _fetch(self) -> None:
        from torchvision.datasets.utils import download_and_extract_archive, download_url

        for folder in (TRAIN_DIR, TEST_DIR):
            if not (self.root / folder).exists():
                download_and_extract_archive(URL + folder + ".zip", str(self.root))
        for table in (TRAIN_CSV, TEST_CSV):
            if not (self.root / table).exists():
                download_url(URL + table, str(self.root))

    def load(self) -> RawData:
        if self.download:
            self._fetch()
        if not (self.root / TRAIN_CSV).exists() or not (self.root / TEST_CSV).exists():
            raise missing_data("data.root", self.root, "ISIC-2016 part 3 files")
        x_tr, y_tr = _read_split(self.root, TRAIN_DIR, TRAIN_CSV, self.image_size)
        x_te, y_te = _read_split(self.root, TEST_DIR, TEST_CSV, self.image_size)
        return RawData(torch.from_numpy(x_tr), y_tr, torch.from_numpy(x_te), y_te, ["benign", "melanoma"])

    def _images(self, x) -> Tensor:
        return torch.as_tensor(x)  # uint8 (N, 3, H, W): 4x less memory; scaled per batch

    def _train_transform(self):
        return LesionAugment(self.image_size, self.seed) if self.augment else Normalize()

    def _eval_transform(self):
        return Normalize()
