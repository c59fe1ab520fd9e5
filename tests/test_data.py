"""Data modules on real offline data and generated stand-ins; imbalance options; index batching."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from prunelab.data import imbalance
from prunelab.data.cifar import CIFAR10DataModule
from prunelab.data.digits import DigitsDataModule
from prunelab.data.loader import IndexBatchSampler, make_loader
from prunelab.data.medmnist import MedMNISTDataModule
from prunelab.data.mnist import FashionMNISTDataModule, MNISTDataModule
from prunelab.errors import PrunelabError


def test_digits_split_is_deterministic_stratified_and_disjoint():
    a, b = DigitsDataModule(val_fraction=0.2), DigitsDataModule(val_fraction=0.2, seed=5)
    a.setup(), b.setup()
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)  # split_seed, not the run seed
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    frac = a.class_counts("val").float() / (a.class_counts("val") + a.class_counts("train")).float()
    assert torch.all((frac - 0.2).abs() < 0.02)
    from prunelab.data.base import stratified_split

    tr, va = stratified_split(torch.arange(100) % 4, 0.25, torch.Generator().manual_seed(0))
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == 100
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10


def test_one_vs_rest_hits_the_ratio_and_keeps_test_intact():
    dm = DigitsDataModule(imbalance={"positive_class": 3, "neg_pos_ratio": 5.0})
    dm.setup()
    neg, pos = dm.class_counts("train").tolist()
    assert dm.class_names == ["not_3", "3"] and dm.positive_class == 1
    assert abs(neg - 5 * pos) <= 1
    ref = DigitsDataModule()
    ref.setup()
    assert len(dm.y_test) == len(ref.y_test) and int(dm.y_test.sum()) == int((ref.y_test == 3).sum())


def test_ratio_below_natural_subsamples_positives():
    y = torch.tensor([0] * 30 + [1] * 20)
    assert imbalance.ratio_keep(y, 5.0) == {0: 30, 1: 6}
    assert imbalance.ratio_keep(y, 1.0) == {0: 20, 1: 20}


def test_keep_fraction_and_long_tail():
    dm = DigitsDataModule(imbalance={"keep_fraction": {2: 0.1, 7: 0.5}})
    dm.setup()
    full = DigitsDataModule()
    full.setup()
    c, f = dm.class_counts("train").tolist(), full.class_counts("train").tolist()
    assert c[2] == round(0.1 * f[2]) and c[7] == round(0.5 * f[7]) and c[0] == f[0]
    lt = DigitsDataModule(imbalance={"long_tail_ratio": 10.0})
    lt.setup()
    counts = lt.class_counts("train").tolist()
    assert counts == sorted(counts, reverse=True) and counts[0] / counts[-1] == pytest.approx(10, rel=0.1)


@pytest.mark.parametrize(
    "imbalance,key",
    [
        ({"positive_class": 12}, "data.imbalance.positive_class"),
        ({"keep_fraction": {11: 0.5}}, "data.imbalance.keep_fraction"),
        ({"keep_fraction": {1: 1.5}}, "data.imbalance.keep_fraction.1"),
        ({"neg_pos_ratio": 5.0}, "data.imbalance.neg_pos_ratio"),
    ],
)
def test_bad_imbalance_options_name_the_key(imbalance, key):
    with pytest.raises(PrunelabError) as err:
        DigitsDataModule(imbalance=imbalance).setup()
    assert err.value.key == key


def test_index_batches_are_seeded_by_epoch_and_cover_everything():
    s = IndexBatchSampler(103, 10, shuffle=True, seed=1)
    s.set_epoch(2)
    first = torch.cat(list(s))
    again = torch.cat(list(s))
    s.set_epoch(3)
    other = torch.cat(list(s))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert sorted(first.tolist()) == list(range(103)) and len(s) == 11
    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    xb, yb = next(iter(make_loader(x, y, 4, shuffle=False)))
    assert torch.equal(xb, x[:4]) and torch.equal(yb, y[:4])


def test_mnist_and_fashion_from_offline_files(data_dir):
    dm = MNISTDataModule(root=str(data_dir), val_fraction=0.1)
    dm.setup()
    assert len(dm.y_train) + len(dm.y_val) == 60_000 and abs(len(dm.y_val) - 6_000) <= 10
    assert len(dm.y_test) == 10_000
    assert dm.input_shape == (1, 28, 28) and dm.x_train.dtype == torch.float32
    assert abs(float(dm.x_train.mean())) < 1e-3  # normalised with training statistics
    fm = FashionMNISTDataModule(root=str(data_dir))
    fm.setup()
    assert fm.class_names[0] == "T-shirt/top" and fm.num_classes == 10


@pytest.mark.parametrize(
    "flag,file,positive",
    [
        ("pneumoniamnist", "pneumoniamnist_reconstructed.npz", 1),
        ("breastmnist", "breastmnist_resaved.npz", 0),
    ],
)
def test_medmnist_uses_official_splits(data_dir, flag, file, positive):
    dm = MedMNISTDataModule(path=str(data_dir / "medmnist" / file), flag=flag, positive_class=positive)
    dm.setup()
    sizes = {"pneumoniamnist": (4708, 524, 624), "breastmnist": (546, 78, 156)}[flag]
    assert (len(dm.y_train), len(dm.y_val), len(dm.y_test)) == sizes
    assert dm.num_classes == 2 and dm.positive_class == positive


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(PrunelabError) as err:
        MNISTDataModule(root=str(tmp_path)).setup()
    assert err.value.key == "paths.data_dir" and str(tmp_path) in str(err.value)
    assert "PRUNELAB_DATA_DIR" in str(err.value) and "download" in str(err.value)
    with pytest.raises(PrunelabError, match=r"data\.path"):
        MedMNISTDataModule(path=str(tmp_path / "x.npz")).setup()


def write_cifar_standin(root, n_per_batch: int = 20) -> None:
    """A generated stand-in with CIFAR-10's file layout and pickle format (the real set cannot be fetched here)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    gen = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": gen.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"labels": list(gen.integers(0, 10, n_per_batch)),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {
                b"label_names": [
                    n.encode()
                    for n in [
                        "airplane",
                        "automobile",
                        "bird",
                        "cat",
                        "deer",
                        "dog",
                        "frog",
                        "horse",
                        "ship",
                        "truck",
                    ]
                ]
            },
            f,
        )


def test_cifar10_loader_on_a_generated_standin(tmp_path):
    write_cifar_standin(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), val_fraction=0.2, batch_size=8)
    dm.setup()
    assert dm.input_shape == (3, 32, 32) and dm.class_names[3] == "cat"
    assert len(dm.y_train) + len(dm.y_val) == 100 and len(dm.y_test) == 20
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    xb, _ = next(iter(loader))
    loader.sampler.set_epoch(0)
    xb2, _ = next(iter(loader))
    assert xb.shape == (8, 3, 32, 32) and torch.equal(xb, xb2)  # augmentation is deterministic per epoch
    plain = CIFAR10DataModule(root=str(tmp_path), augment=False)
    plain.setup()
    assert plain._train_transform() is None


def write_isic_standin(root, n_train: int = 12, n_test: int = 6) -> None:
    """Generated stand-in with ISIC-2016 part 3's file names and CSV formats (random JPEGs of odd sizes)."""
    from PIL import Image

    from prunelab.data import isic

    gen = np.random.default_rng(0)
    for folder, table, n, labels in (
        (isic.TRAIN_DIR, isic.TRAIN_CSV, n_train, ("benign", "malignant")),
        (isic.TEST_DIR, isic.TEST_CSV, n_test, ("0.0", "1.0")),
    ):
        (root / folder).mkdir(parents=True)
        rows = []
        for i in range(n):
            image_id = f"ISIC_{folder[-9:-5]}{i:04d}"
            Image.fromarray(gen.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(
                root / folder / f"{image_id}.jpg"
            )
            rows.append(f"{image_id},{labels[i % 3 == 0]}\n")
        (root / table).write_text("".join(rows))


def test_isic2016_loader_on_a_generated_standin(tmp_path):
    from prunelab.data.isic import ISIC2016DataModule
    from prunelab.models.alexnet import AlexNetSmallHead

    write_isic_standin(tmp_path)
    dm = ISIC2016DataModule(root=str(tmp_path), image_size=64, batch_size=4, val_fraction=0.25, positive_class=1)
    dm.setup()
    assert dm.x_train.dtype == torch.uint8 and dm.input_shape == (3, 64, 64)
    assert dm.class_names == ["benign", "melanoma"] and len(dm.y_test) == 6 and int(dm.y_test.sum()) == 2
    assert len(dm.y_train) + len(dm.y_val) == 12
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    xb, _ = next(iter(loader))
    loader.sampler.set_epoch(0)
    xb2, _ = next(iter(loader))
    assert xb.dtype == torch.float32 and xb.shape == (4, 3, 64, 64) and torch.equal(xb, xb2)
    xt, _ = next(iter(dm.test_dataloader()))
    assert xt.dtype == torch.float32 and abs(float(xt.mean())) < 3
    model = AlexNetSmallHead((3, 64, 64), 2)
    assert sum(p.numel() for p in model.parameters()) == 2_471_842  # the paper's count
    assert model(xb).shape == (4, 2)
    with pytest.raises(PrunelabError, match="ISIC"):
        ISIC2016DataModule(root=str(tmp_path / "none")).setup()
