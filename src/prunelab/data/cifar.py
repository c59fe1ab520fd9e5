"""CIFAR-10 (Krizhevsky 2009) from the python pickles in ``<root>/cifar-10-batches-py``.

Reading the pickles here (rather than through ``torchvision.datasets.CIFAR10``) lets tests use a generated
stand-in; ``download=true`` still fetches and md5-checks the official archive through torchvision. Training
batches get the standard augmentation (random 32x32 crop of the 4-padded image, horizontal flip), batched.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional

from prunelab.data.base import RawData, TensorDataModule
from prunelab.data.mnist import missing_data
from prunelab.errors import PrunelabError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


class SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batch files without running code: only numpy arrays (and the plain containers, bytes,
    str and numbers that pickle builds natively) may be constructed; any other global a file names is refused.
    A crafted batch file therefore cannot execute anything (``pickle.load`` would call whatever it names)."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def safe_unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = SafeUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise PrunelabError(
            "paths.data_dir",
            f"{path} is not a plain CIFAR batch ({exc})",
            "replace it with the official file (data.download=true fetches and md5-checks it)",
        ) from exc
    except Exception as exc:  # truncated or garbage
        raise PrunelabError(
            "paths.data_dir",
            f"{path} is truncated or not a CIFAR batch ({type(exc).__name__})",
            "replace it with the official file (data.download=true)",
        ) from exc
    if not isinstance(d, dict):
        raise PrunelabError("paths.data_dir", f"{path} holds no CIFAR batch dictionary", "replace it")
    return d


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = safe_unpickle(path)
    if b"data" not in d or b"labels" not in d:
        raise PrunelabError("paths.data_dir", f"{path} has no data/labels entries", "replace it with the official file")
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    return x, np.asarray(d[b"labels"], dtype=np.int64)


class CropFlip:
    """Batched random crop (with zero padding) and horizontal flip; deterministic per (seed, batch indices)."""

    def __init__(self, padding: int = 4, seed: int = 0):
        self.padding, self.seed, self.calls = padding, seed, 0

    def __call__(self, x: Tensor, index: Tensor) -> Tensor:
        gen = torch.Generator().manual_seed((self.seed * 7919 + int(index[:8].sum()) * 31 + len(index)) % 2**64)
        n, _, h, w = x.shape
        p = self.padding
        padded = functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * p)
        out = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        out = out.gather(3, cols)
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(-1)
        return out


class CIFAR10DataModule(TensorDataModule):
    dataset_name = "cifar10"

    def __init__(self, root: str = "data", download: bool = False, augment: bool = True, **kwargs):
        super().__init__(augment=augment, **kwargs)
        self.root, self.download = Path(root).expanduser(), bool(download)

    def source(self) -> str:
        return str(self.root / FOLDER)

    def load(self) -> RawData:
        folder = self.root / FOLDER
        if not folder.exists() and self.download:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(self.root), train=True, download=True)
        if not (folder / "test_batch").exists():
            raise missing_data("paths.data_dir", folder, "CIFAR-10 batches")
        parts = [_read(folder / f) for f in TRAIN_FILES]
        x_te, y_te = _read(folder / "test_batch")
        names = [n.decode() for n in safe_unpickle(folder / "batches.meta")[b"label_names"]]
        x_tr = np.concatenate([p[0] for p in parts])
        y_tr = np.concatenate([p[1] for p in parts])
        return RawData(x_tr, y_tr, x_te, y_te, names)

    def _train_transform(self):
        return CropFlip(seed=self.seed) if self.augment else None
