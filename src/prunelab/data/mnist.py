"""MNIST and Fashion-MNIST through torchvision (``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``)."""

from __future__ import annotations

from pathlib import Path

from prunelab.data import provenance
from prunelab.data.base import RawData, TensorDataModule
from prunelab.errors import PrunelabError


def missing_data(key: str, looked: Path, what: str) -> PrunelabError:
    return PrunelabError(
        key,
        f"{what} not found (looked in {looked})",
        "set paths.data_dir=<folder> or the PRUNELAB_DATA_DIR environment variable, "
        "or data.download=true on a machine with a network",
    )


class MNISTDataModule(TensorDataModule):
    dataset_name = "mnist"
    torchvision_class = "MNIST"
    names: tuple[str, ...] | None = tuple(str(i) for i in range(10))

    def __init__(self, root: str = "data", download: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.root, self.download = Path(root).expanduser(), bool(download)

    def source(self) -> str:
        return str(self.root / self.torchvision_class / "raw")

    def load(self) -> RawData:
        from torchvision import datasets

        cls = getattr(datasets, self.torchvision_class)
        try:
            train = cls(str(self.root), train=True, download=self.download)
            official = provenance.check_idx_files(Path(self.source()), self.torchvision_class)
            test = cls(str(self.root), train=False, download=self.download)
        except PrunelabError:
            raise
        except RuntimeError as exc:
            if "not found" in str(exc).lower():
                raise missing_data("paths.data_dir", Path(self.source()), f"{self.torchvision_class} files") from None
            raise self._corrupt(exc) from None
        except Exception as exc:  # a garbled header: torchvision's KeyError / AssertionError / ValueError
            raise self._corrupt(exc) from None
        sizes = {"train": len(train.targets), "test": len(test.targets)}
        self.official = provenance.check_split_sizes(sizes, provenance.IDX_SIZES, self.source()) and official
        names = list(self.names) if self.names else list(train.classes)
        return RawData(train.data, train.targets, test.data, test.targets, names)

    def _corrupt(self, exc: BaseException) -> PrunelabError:
        detail = (str(exc).strip().splitlines() or [""])[0][:80]
        what = f"{type(exc).__name__}{': ' + detail if detail else ''}"
        return PrunelabError(
            "paths.data_dir",
            f"{self.source()}: an idx file of {self.torchvision_class} is truncated or corrupt ({what})",
            "replace the idx files with complete copies (see ../shared/data/README.md or data.download=true)",
        )


class FashionMNISTDataModule(MNISTDataModule):
    dataset_name = "fashion_mnist"
    torchvision_class = "FashionMNIST"
    names = None  # torchvision's: T-shirt/top, Trouser, ...
