"""What is known about the public data sets' files: their md5s and split sizes.

A data module checks the files it reads against these before it trusts them:

- a file whose md5 is the official md5 of *another* file (MNIST's train and test files swapped, Fashion-MNIST's
  files under ``MNIST/raw``, a MedMNIST file under another set's name) is refused on one line naming what it is;
- a split whose size is the official size of another split (train and test swapped) is refused the same way;
- any other file is used, and recorded as ``official: false`` in the run's ``data.json`` with a warning in its
  summary (a re-saved or reconstructed copy, a subset of your own); official files are recorded ``official: true``.

The dataset family a file belongs to is therefore part of what a run folder's identity guarantees: the config names
the family (``data=mnist``) and the files must be that family's or no known family's.

Sources: the unpacked MNIST/Fashion-MNIST idx md5s are those of ``shared/data/MD5SUMS`` (its README: they agree with
the ``.gz`` md5s in torchvision 0.29.1's ``MNIST.resources``/``FashionMNIST.resources`` after unpacking); the
MedMNIST md5s and split sizes are the medmnist package's ``info.py`` (MedMNIST v2, Yang et al., Sci. Data 2023).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from prunelab.errors import PrunelabError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_MD5: dict[str, tuple[str, ...]] = {  # in IDX_FILES order
    "MNIST": (
        "6bbc9ace898e44ae57da46a324031adb",
        "a25bea736e30d166cdddb491f175f624",
        "2646ac647ad5339dbf082846283269ea",
        "27ae3e4e09519cfbb04c329615203637",
    ),
    "FashionMNIST": (
        "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "9018921c3c673c538a1fc5bad174d6f9",
        "8181f5470baa50b63fa0f6fddb340f0a",
        "15d484375f8d13e6eb1aabb0c3f46965",
    ),
}
IDX_SIZES = {"train": 60000, "test": 10000}  # both families

NPZ_MD5 = {"pneumoniamnist": "28209eda62fecd6e6a2d98b1501bb15f", "breastmnist": "750601b1f35ba3300ea97c75c52ff8f6"}
NPZ_SIZES = {  # (train, val, test)
    "pneumoniamnist": (4708, 524, 624),
    "breastmnist": (546, 78, 156),
}

_MD5_CACHE: dict[tuple[str, int, int], str] = {}


def md5(path: Path) -> str:
    """The file's md5 (cached per path, size and modification time within the process)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_CACHE:
        h = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _MD5_CACHE[key] = h.hexdigest()
    return _MD5_CACHE[key]


def _known_idx() -> dict[str, str]:
    return {digest: f"{family}'s {name}" for family, sums in IDX_MD5.items() for name, digest in zip(IDX_FILES, sums)}


def check_idx_files(raw: Path, family: str) -> bool:
    """``raw`` (``<root>/<family>/raw``) holds ``family``'s official files (True), unknown ones (False); files that
    are another known file are refused."""
    known, official = _known_idx(), True
    for name, want in zip(IDX_FILES, IDX_MD5[family]):
        path = raw / name
        if not path.is_file():
            return False
        got = md5(path)
        if got == want:
            continue
        official = False
        if got in known:
            raise PrunelabError(
                "paths.data_dir",
                f"{path} is {known[got]}, not {family}'s {name} (files swapped or put in the wrong folder)",
                f"put {family}'s official files in {raw}",
            )
    return official


def check_split_sizes(sizes: dict[str, int], official: dict[str, int], source: str) -> bool:
    """Split sizes equal to the official ones (True) or unknown (False); the official sizes under other splits'
    names (train and test swapped) are refused."""
    if sizes == official:
        return True
    if sorted(sizes.values()) == sorted(official.values()):
        wrong = next(s for s in sizes if sizes[s] != official[s])
        raise PrunelabError(
            "data",
            f"{source}: the {wrong} split has {sizes[wrong]} examples, the official size of "
            f"another split (official: {official}): splits swapped",
            "use the official files, each split under its own name",
        )
    return False


def check_npz(path: Path, flag: str, sizes: dict[str, int]) -> bool:
    """A MedMNIST ``.npz``: official (True) or not (False); another set's official file is refused."""
    got = md5(path)
    if got == NPZ_MD5.get(flag):
        official = True
    else:
        other = [f for f, digest in NPZ_MD5.items() if digest == got]
        if other:
            raise PrunelabError(
                "data.path",
                f"{path} is MedMNIST's official {other[0]} file, not {flag}",
                f"point data.path at {flag}.npz, or use data={other[0]}",
            )
        official = False
    known = NPZ_SIZES.get(flag)
    if known is not None:
        official &= check_split_sizes(sizes, dict(zip(("train", "val", "test"), known)), str(path))
    return official
