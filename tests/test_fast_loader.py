"""The fast data path gives the same images and labels as the plain torchvision pipeline.

``bench/data_path.py`` claims the engine's loader (uint8 tensors decoded once, gathered
per batch, converted by ``make_preprocess``) is many times faster than ImageFolder + PIL
+ ToTensor + Normalize; that is only worth something if both produce the same batches.
Here the original PNG bytes of a small real-PNG dataset are written as an ImageFolder
tree, read by torchvision, and compared with the engine's batches for the same images:
RGB at its own size, grey expanded to RGB, a resize, and channels_last layout.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torchvision import datasets, transforms

from trainables.config import TrialConfig
from trainables.data import load_splits, read_parquet_images
from trainables.engine import Run, as_tensors, make_preprocess

CPU = torch.device("cpu")
ATOL = 1e-6


def write_image_folder(parquet: Path, root: Path) -> Path:
    """The original PNG bytes of every row as ``root/<label>/<row>.png`` (ImageFolder's
    layout; two-digit class folders so that its name sort is the label order)."""
    table = pq.read_table(parquet, columns=["image", "label"])
    rows = zip(table.column("image").to_pylist(), table.column("label").to_pylist(), strict=True)
    for i, (blob, label) in enumerate(rows):
        folder = root / f"{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.png").write_bytes(blob)
    return root


def reference_batch(root: Path, rows, mean, std, resize: int | None = None):
    """torchvision's way: ImageFolder (PIL, converted to RGB) + ToTensor [+ Resize] +
    Normalize, for the files of the given parquet rows."""
    steps = [transforms.ToTensor()]
    if resize:
        steps.append(
            transforms.Resize(
                (resize, resize),
                interpolation=transforms.InterpolationMode.BILINEAR,
                antialias=False,  # F.interpolate's default, as the engine resizes
            )
        )
    steps.append(transforms.Normalize(mean, std))
    ds = datasets.ImageFolder(str(root), transform=transforms.Compose(steps))
    where = {int(Path(path).stem): k for k, (path, _) in enumerate(ds.samples)}
    xs, ts = zip(*(ds[where[int(r)]] for r in rows), strict=True)
    labels = torch.tensor([int(ds.classes[t]) for t in ts])
    return torch.stack(xs), labels


def engine_batch(parquet: Path, rows, mean, std, *, image_size: int, channels_last: bool):
    """The engine's way: decoded once to uint8 (``read_parquet_images``, what
    ``load_splits`` uses), zero-copy tensors, gather, ``make_preprocess``."""
    x, y = as_tensors(read_parquet_images([parquet], num_classes=10), CPU)
    prep = make_preprocess(
        mean, std, image_size=image_size, in_channels=3, channels_last=channels_last, device=CPU
    )
    idx = torch.as_tensor(rows)
    return prep(x[idx]), y[idx]


@pytest.fixture(scope="module")
def folders(tiny_data_root, tmp_path_factory):
    """ImageFolder trees of the tiny MNIST- and CIFAR-shaped training PNGs."""
    out = {}
    for name in ("mnist", "cifar10"):
        parquet = tiny_data_root / name / "train.parquet"
        out[name] = (parquet, write_image_folder(parquet, tmp_path_factory.mktemp(name)))
    return out


def some_rows(n: int, k: int = 48) -> np.ndarray:
    """A shuffled batch of row indices, as the engine's permutation picks them."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:k].numpy()


@pytest.mark.parametrize(
    ("name", "image_size", "channels_last"),
    [
        ("cifar10", 32, False),  # RGB at its own size: what a ResNet-18 32 px trial gets
        ("cifar10", 32, True),
        ("mnist", 28, False),  # grey -> RGB by repetition
        ("mnist", 28, True),
        ("mnist", 32, False),  # grey -> RGB and a resize (bilinear, no antialias)
        ("cifar10", 48, True),
    ],
)
def test_engine_batch_equals_imagefolder_pipeline(
    folders, tiny_data_root, name, image_size, channels_last
):
    parquet, root = folders[name]
    data = load_splits(name, root=tiny_data_root)  # the mean/std a trial is given
    mean, std = data.mean, data.std
    channels = len(mean)
    rows = some_rows(400)
    xb, yb = engine_batch(
        parquet, rows, mean, std, image_size=image_size, channels_last=channels_last
    )
    # The reference normalises each of its 3 RGB channels; grey data has one mean/std.
    native = data.train.images.shape[-1]
    ref_x, ref_y = reference_batch(
        root,
        rows,
        mean * (3 // channels),
        std * (3 // channels),
        resize=image_size if image_size != native else None,
    )
    assert xb.shape == ref_x.shape == (len(rows), 3, image_size, image_size)
    assert xb.dtype == ref_x.dtype == torch.float32
    torch.testing.assert_close(xb, ref_x, atol=ATOL, rtol=0)
    assert torch.equal(yb, ref_y)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert xb.is_contiguous(memory_format=fmt)
    if channels == 1:  # expanded by repetition: the three channels are one image
        assert torch.equal(xb[:, 0], xb[:, 1]) and torch.equal(xb[:, 0], xb[:, 2])


def test_a_broken_normalisation_is_caught(folders, tiny_data_root):
    """The comparison above has teeth: swapping mean and std makes it fail."""
    parquet, root = folders["cifar10"]
    data = load_splits("cifar10", root=tiny_data_root)
    rows = some_rows(400)
    ref_x, _ = reference_batch(root, rows, data.mean, data.std)
    bad, _ = engine_batch(parquet, rows, data.std, data.mean, image_size=32, channels_last=False)
    assert not torch.allclose(bad, ref_x, atol=ATOL, rtol=0)


def test_a_trials_own_batches_equal_the_reference(folders, tiny_data_root):
    """Through ``load_splits`` and ``Run`` as a trial builds them (split, subset, the
    trial's preprocess): each training batch equals the reference for the same files.

    ``load_splits`` reorders rows (validation carved out), so images are matched to their
    file by content (the synthetic images are unique)."""
    parquet, root = folders["cifar10"]
    data = load_splits("cifar10", root=tiny_data_root, train_limit=200)
    cfg = TrialConfig.from_dict(
        {"model": "simple_cnn", "optimizer": "sgd", "lr": 0.01, "epochs": 1, "image_size": 32}
    )
    run = Run(cfg, data)
    decoded = read_parquet_images([parquet], num_classes=10).images
    row_of = {hashlib.sha1(im.tobytes()).hexdigest(): i for i, im in enumerate(decoded)}
    x, y = run.train_xy
    idx = some_rows(len(y), 32)
    rows = [row_of[hashlib.sha1(x[i].numpy().tobytes()).hexdigest()] for i in idx]
    ref_x, ref_y = reference_batch(root, rows, data.mean, data.std)
    torch.testing.assert_close(run.prep(x[idx]), ref_x, atol=ATOL, rtol=0)
    assert torch.equal(y[idx], ref_y)
