"""Dataset registry, Parquet reading with sha256 checks, stratified splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_parquet_dataset

from trainables.data import (
    DataError,
    list_datasets,
    load_splits,
    make_synthetic,
    resolve_data_root,
    stratified_pick,
)


def test_registry_has_mnist_cifar_synthetic():
    assert {"mnist", "cifar10", "synthetic"} <= set(list_datasets())


def test_stratified_pick_exact_size_and_balance():
    labels = np.repeat(np.arange(10), [100, 90, 80, 70, 60, 50, 40, 30, 20, 10])
    idx = stratified_pick(labels, 110, np.random.default_rng(0))
    assert len(idx) == 110 and len(set(idx)) == 110
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == [20, 18, 16, 14, 12, 10, 8, 6, 4, 2]


def test_splits_are_disjoint_and_seeded(tiny_data_root):
    a = load_splits("mnist", root=tiny_data_root, val_fraction=0.25, seed=3)
    b = load_splits("mnist", root=tiny_data_root, val_fraction=0.25, seed=3)
    assert (len(a.train), len(a.val), len(a.test)) == (300, 100, 100)
    assert np.array_equal(a.val.images, b.val.images)
    # no validation image also sits in the training split
    train_rows = {im.tobytes() for im in a.train.images}
    assert not any(im.tobytes() in train_rows for im in a.val.images)
    assert a.train.images.dtype == np.uint8 and a.train.images.shape[1:] == (1, 28, 28)
    assert a.source.startswith("parquet:") and len(a.sha256) == 64


def test_limits_take_stratified_subsets(tiny_data_root):
    d = load_splits("mnist", root=tiny_data_root, train_limit=50, val_limit=20, test_limit=30)
    assert (len(d.train), len(d.val), len(d.test)) == (50, 20, 30)
    assert set(np.unique(d.train.labels)) == set(range(10))


def test_wrong_sha256_is_refused(tmp_path, tiny_data_root, copy_tree):
    root = tmp_path / "root"
    copy_tree(tiny_data_root, root)
    manifest = json.loads((root / "mnist" / "MANIFEST.json").read_text())
    manifest["files"][0]["sha256"] = "0" * 64
    (root / "mnist" / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="does not match the manifest"):
        load_splits("mnist", root=root)


def test_label_out_of_range_and_missing_column(tmp_path):
    imgs = make_synthetic(20, num_classes=10).images
    write_parquet_dataset(
        tmp_path / "mnist", {"train": (imgs, np.full(20, 12)), "test": (imgs, np.zeros(20))}
    )
    with pytest.raises(DataError, match="label 12 out of range; allowed 0..9"):
        load_splits("mnist", root=tmp_path)


def test_missing_root_names_flag_and_env(monkeypatch):
    monkeypatch.delenv("CNNSWEEP_DATA_ROOT", raising=False)
    assert resolve_data_root(None) is None
    with pytest.raises(DataError, match="CNNSWEEP_DATA_ROOT"):
        load_splits("mnist", root=None)


def test_data_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNSWEEP_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path.resolve()
    assert resolve_data_root("/elsewhere") != tmp_path.resolve()


def test_real_mnist_from_shared_data(shared_data_root):
    d = load_splits("mnist", root=shared_data_root, val_fraction=0.1, seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert d.train.images.shape[1:] == (1, 28, 28)
    # per-class test counts from the manifest
    assert np.bincount(d.test.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    mean = np.concatenate([d.train.images, d.val.images]).mean() / 255
    assert abs(mean - 0.1307) < 1e-3


def write_idx(path, array: np.ndarray) -> None:
    """MNIST's idx format: magic (0, 0, 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_source_reads_standard_files(tmp_path):
    """--download path for users with a network, tested offline on files in torchvision's
    own layout (root/MNIST/raw/*-ubyte), so only the download itself goes untested."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train, test = make_synthetic(60, num_classes=10, seed=1), make_synthetic(20, seed=2)
    for prefix, s in (("train", train), ("t10k", test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", s.images[:, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", s.labels)
    d = load_splits("mnist", root=tmp_path, download=True, val_fraction=0.5)
    assert d.source.startswith("torchvision:")
    assert (len(d.train), len(d.val), len(d.test)) == (30, 30, 20)
    assert np.array_equal(np.sort(d.test.labels), np.sort(test.labels))
    assert d.train.images.shape[1:] == (1, 28, 28) and d.train.images.dtype == np.uint8


def test_decoded_rgb_images_are_c_contiguous(tiny_data_root):
    """PNG decoding gives H x W x C views; the stored N x C x H x W array must be
    C-contiguous, or every training batch pays a layout copy."""
    d = load_splits("cifar10", root=tiny_data_root, val_fraction=0.25)
    for s in (d.train, d.val, d.test):
        assert s.images.flags["C_CONTIGUOUS"] and s.images.shape[1:] == (3, 32, 32)
