"""TensorDataModule: a LightningDataModule over tensors held in memory.

A dataset file implements ``load() -> RawData`` (uint8 or float arrays, labels, class names) and nothing else.
This base class carves a deterministic, stratified validation split from the training split (unless the dataset
ships an official one and ``use_official_val`` is set), applies the imbalance options, scales and normalises the
images once, and serves batches by index (see ``prunelab.data.loader``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from prunelab.data import imbalance
from prunelab.data.loader import make_loader
from prunelab.errors import PrunelabError

Array = Tensor | np.ndarray


@dataclass
class RawData:
    x_train: Array  # (N, C, H, W) or (N, H, W); uint8 in [0, 255] or float in [0, 1]
    y_train: Array
    x_test: Array
    y_test: Array
    class_names: list[str]
    x_val: Array | None = None
    y_val: Array | None = None


def fingerprint(raw: RawData) -> str:
    """SHA-1 of every loaded array (values, dtype and shape) and the class names: the identity of the data a run
    used, whatever folder it was read from."""
    h = hashlib.sha1()
    for f in fields(raw):
        value = getattr(raw, f.name)
        if value is None:
            continue
        if f.name == "class_names":
            h.update(repr(list(value)).encode())
            continue
        arr = np.ascontiguousarray(value.numpy() if isinstance(value, Tensor) else np.asarray(value))
        h.update(f"{f.name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(memoryview(cast(Any, arr)).cast("B"))
    return h.hexdigest()


def validate(raw: RawData, source: str) -> None:
    """Every split: images and labels of equal length, not empty, integer labels within the classes, finite
    images. ``source`` names the file or folder in the one-line error."""
    splits: list[tuple[str, Any, Any]] = [("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)]
    if raw.x_val is not None or raw.y_val is not None:
        splits.append(("val", raw.x_val, raw.y_val))
    c = len(raw.class_names)
    for split, x, y in splits:

        def bad(problem: str, split: str = split) -> PrunelabError:
            return PrunelabError(
                "data",
                f"{source}: {split} split {problem}",
                "replace the file with a complete copy (see the dataset's README for where it comes from)",
            )

        if x is None or y is None:
            raise bad("has images or labels missing")
        x, y = as_tensor(x), as_tensor(y).flatten()
        if len(x) != len(y):
            raise bad(f"has {len(x)} images but {len(y)} labels")
        if len(y) == 0:
            raise bad("is empty")
        if y.is_floating_point() or y.dtype == torch.bool:
            raise bad(f"has labels of type {y.dtype} (expected integers)")
        if int(y.min()) < 0 or int(y.max()) >= c:
            raise bad(f"has labels in {int(y.min())}..{int(y.max())}, outside 0..{c - 1} for {c} classes")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise bad("has non-finite (NaN or inf) image values")
        if x.is_floating_point() and float(x.abs().max()) > torch.finfo(torch.float32).max:
            raise bad(f"has image values up to {float(x.abs().max()):.3g}, beyond float32's range")
        channels_first(x, f"{source}: {split} split")


def channels_first(x: Tensor, where: str) -> Tensor:
    """Images as (N, C, H, W): grey (N, H, W) gets a channel axis, channels-last (N, H, W, C) with C in 1/3/4 (how
    MedMNIST stores its RGB sets, and numpy/PIL images) is transposed; any other layout is refused."""
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4 and x.shape[1] in (1, 3, 4):
        return x
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    shape = tuple(x.shape)
    raise PrunelabError(
        "data",
        f"{where} has images of shape {shape}: neither (N, H, W), (N, C, H, W) nor (N, H, W, C) "
        "with 1, 3 or 4 channels",
        "reshape the images (a flat (N, 784) array is (N, 28, 28))",
    )


def subset_indices(classes: Sequence[Any], names: Sequence[Any], source: str) -> list[int]:
    """The dataset indices of ``data.classes`` (class names, or integer indices into the dataset's classes)."""
    known = [str(n) for n in names]
    out: list[int] = []
    for c in classes:
        if isinstance(c, int) and not isinstance(c, bool) and str(c) not in known:
            index = c if 0 <= c < len(known) else None
        else:
            index = known.index(str(c)) if str(c) in known else None
        if index is None:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
            raise PrunelabError("data.classes", f"{c!r} is not a class of {source} ({shown})", "name classes it has")
        if index in out:
            raise PrunelabError("data.classes", f"{c!r} is named twice", "name each class once")
        out.append(index)
    if len(out) < 2:
        raise PrunelabError("data.classes", f"{list(classes)} names fewer than two classes", "name at least two")
    return out


def as_tensor(a) -> Tensor:
    return a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def _to_float(x: Tensor) -> Tensor:
    x = channels_first(as_tensor(x), "data")
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def stratified_split(y: Tensor, fraction: float, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(train_idx, val_idx): ``fraction`` of every class goes to validation (at least one if it has two)."""
    val = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        k = round(fraction * len(idx)) if len(idx) > 1 else 0
        k = max(1, k) if fraction > 0 and len(idx) > 1 else k
        val.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    val_idx = torch.cat(val).sort().values
    is_val = torch.zeros(len(y), dtype=torch.bool)
    is_val[val_idx] = True
    return torch.nonzero(~is_val).flatten(), val_idx


class TensorDataModule(pl.LightningDataModule):
    """Base data module; subclasses implement :meth:`load`."""

    dataset_name = "base"
    # True: the files are the dataset's official ones (prunelab.data.provenance); False: known family, other files;
    # None: nothing is known about this source (generated or embedded data, your own files)
    official: bool | None = None

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_fraction: float = 0.1,
        use_official_val: bool = True,
        split_seed: int = 0,
        seed: int = 0,
        normalize: bool = True,
        imbalance: Mapping | None = None,
        positive_class: int | None = None,
        augment: bool = False,
        classes: Sequence[Any] | None = None,
    ):
        super().__init__()
        if not 0.0 <= float(val_fraction) < 1.0:
            raise PrunelabError("data.val_fraction", f"{val_fraction} is outside [0, 1)", "e.g. 0.1")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.val_fraction, self.use_official_val = float(val_fraction), bool(use_official_val)
        self.split_seed, self.seed, self.normalize, self.augment = (
            int(split_seed),
            int(seed),
            normalize,
            augment,
        )
        self.imbalance = dict(imbalance or {})
        self._positive_class = positive_class
        self.classes = None if classes is None else list(classes)  # data.classes: a subset, by name or index
        self.class_indices: list[int] | None = None  # their indices among the dataset's classes (after setup)
        self.all_class_names: list[str] = []
        self._ready = False

    # -- to implement ----------------------------------------------------------------------------------------
    def load(self) -> RawData:
        raise NotImplementedError

    def source(self) -> str:
        """Where :meth:`load` reads from (named in errors about the data)."""
        return self.dataset_name

    # -- public facts ----------------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        self.setup()
        return tuple(self.x_train.shape[1:])

    @property
    def positive_class(self) -> int | None:
        """The class whose false negatives matter (binary tasks), or None."""
        self.setup()
        return self._positive_class

    def class_counts(self, split: str = "train") -> Tensor:
        self.setup()
        return torch.bincount(getattr(self, f"y_{split}"), minlength=len(self.class_names))

    def _images(self, x) -> Tensor:
        """Stored image tensor: float in [0, 1] by default (uint8 sets that normalise per batch override it)."""
        return _to_float(x)

    # -- building ----------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        raw = self.load()
        validate(raw, self.source())
        self.fingerprint = fingerprint(raw)
        x_tr, y_tr = self._images(raw.x_train), as_tensor(raw.y_train).long().flatten()
        x_te, y_te = self._images(raw.x_test), as_tensor(raw.y_test).long().flatten()
        gen = torch.Generator().manual_seed(self.split_seed)
        if raw.x_val is not None and self.use_official_val:
            x_va, y_va = self._images(raw.x_val), as_tensor(raw.y_val).long().flatten()
        else:
            tr_idx, va_idx = stratified_split(y_tr, self.val_fraction, gen)
            x_va, y_va, x_tr, y_tr = x_tr[va_idx], y_tr[va_idx], x_tr[tr_idx], y_tr[tr_idx]
            if len(tr_idx) == 0:
                raise PrunelabError(
                    "data.val_fraction",
                    f"{self.val_fraction} moves every training example of "
                    f"{self.source()} into validation: the training split is empty",
                    "use a smaller data.val_fraction, e.g. 0.1",
                )
        names = list(raw.class_names)
        self.all_class_names = [str(n) for n in names]
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te), names = self._imbalance(
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te), names, gen
        )
        self.normalisation: dict | None = None
        if self.normalize:
            dims = (0, 2, 3)  # per channel
            mean = x_tr.mean(dim=dims, keepdim=True)
            std = x_tr.std(dim=dims, keepdim=True).clamp(min=1e-6)
            x_tr, x_va, x_te = ((x - mean) / std for x in (x_tr, x_va, x_te))
            self.normalisation = {  # what a user of an exported model must apply: (x - mean) / std per channel
                "per": "channel",
                "mean": [float(v) for v in mean.flatten()],
                "std": [float(v) for v in std.flatten()],
                "input_range": "stored values (images: [0, 1]) before normalisation",
            }
        if self.classes is not None:  # after imbalance (its class indices are the dataset's) and normalising (the
            # statistics of the whole training split, as a full-class model sliced by model.slice_head was trained)
            (x_tr, y_tr), (x_va, y_va), (x_te, y_te), names = self._subset(
                (x_tr, y_tr), (x_va, y_va), (x_te, y_te), names
            )
        self.x_train, self.y_train, self.x_val, self.y_val = x_tr.contiguous(), y_tr, x_va.contiguous(), y_va
        self.x_test, self.y_test, self.class_names = x_te.contiguous(), y_te, names
        if self._positive_class is not None:
            imbalance._check_class("data.positive_class", self._positive_class, len(names))
        self._ready = True

    def _subset(self, train, val, test, names: Sequence[str]):
        """``data.classes``: only those classes' examples in every split, relabelled 0..k-1 in the order given."""
        if self.imbalance.get("positive_class") is not None:
            raise PrunelabError(
                "data.classes",
                "cannot be combined with data.imbalance.positive_class (that makes the task one-vs-rest first)",
                "leave one of them null",
            )
        self.class_indices = subset_indices(self.classes or [], names, self.source())
        lookup = torch.full((len(names),), -1, dtype=torch.long)
        lookup[torch.tensor(self.class_indices)] = torch.arange(len(self.class_indices))
        out = []
        for x, y in (train, val, test):
            keep = lookup[y] >= 0
            out.append((x[keep], lookup[y[keep]]))
        return out[0], out[1], out[2], [str(names[i]) for i in self.class_indices]

    def _imbalance(self, train, val, test, names: Sequence[str], gen: torch.Generator):
        opts, c = self.imbalance, len(names)
        apply_val = bool(opts.get("apply_to_val", False))
        positive = opts.get("positive_class")
        if positive is not None:
            positive = int(positive)
            train, val, test = ((x, imbalance.one_vs_rest(y, positive, c)) for x, y in (train, val, test))
            names, c = [f"not_{names[positive]}", str(names[positive])], 2
            self._positive_class = 1
        splits = [train, val] if apply_val else [train]
        out = []
        for x, y in splits:
            keep = self._keep_counts(y, c, positive is not None)
            if keep:
                idx = imbalance.keep_indices(y, keep, gen)
                x, y = x[idx], y[idx]
            out.append((x, y))
        train = out[0]
        val = out[1] if apply_val else val
        return train, val, test, names

    def _keep_counts(self, y: Tensor, c: int, binary: bool) -> dict[int, int]:
        opts, keep = self.imbalance, {}
        if opts.get("neg_pos_ratio") is not None:
            if not binary:
                raise PrunelabError(
                    "data.imbalance.neg_pos_ratio",
                    "needs a one-vs-rest task",
                    "also set data.imbalance.positive_class",
                )
            keep.update(imbalance.ratio_keep(y, float(opts["neg_pos_ratio"])))
        if opts.get("keep_fraction"):
            keep.update(imbalance.fraction_keep(y, {int(k): v for k, v in dict(opts["keep_fraction"]).items()}, c))
        if opts.get("long_tail_ratio") is not None:
            keep.update(imbalance.long_tail_keep(y, c, float(opts["long_tail_ratio"])))
        return keep

    # -- loaders ----------------------------------------------------------------------------------------------
    def _train_transform(self):
        return None

    def _eval_transform(self):
        return None

    def train_dataloader(self):
        return make_loader(self.x_train, self.y_train, self.batch_size, True, self.seed, self._train_transform())

    def train_eval_dataloader(self):
        """The training split in order, as evaluation sees data (no augmentation): for figures of a fixed model on
        the training data (the dense round's per-class accuracy, prunelab.training.teachers)."""
        return make_loader(self.x_train, self.y_train, self.eval_batch_size, False, transform=self._eval_transform())

    def val_dataloader(self):
        return make_loader(self.x_val, self.y_val, self.eval_batch_size, False, transform=self._eval_transform())

    def test_dataloader(self):
        return make_loader(self.x_test, self.y_test, self.eval_batch_size, False, transform=self._eval_transform())

    def predict_dataloader(self):
        return self.test_dataloader()

    def describe(self) -> dict:
        self.setup()
        counts = {s: self.class_counts(s).tolist() for s in ("train", "val", "test")}
        return {
            "dataset": self.dataset_name,
            "classes": self.class_names,
            "input_shape": list(self.input_shape),
            "counts": counts,
            "positive_class": self._positive_class,
            **(
                {"class_indices": self.class_indices, "all_classes": self.all_class_names} if self.class_indices else {}
            ),
            "fingerprint": self.fingerprint,
            "official": self.official,
            "normalisation": getattr(self, "normalisation", None),
        }
