"""The dataset registry and the one-time decode of images into uint8 arrays.

A sweep decodes its images once (on the driver), keeps them as uint8 ``N x C x H x W``
numpy arrays and hands them to every trial through Ray's object store, so trials on a
node share one read-only copy instead of decoding PNGs again. Conversion to float,
normalisation and resizing happen per batch in the engine, on the trial's device.

Sources, in order: the Parquet layout of a data root (``<root>/<name>/MANIFEST.json``,
every file's sha256 verified), torchvision's own files or download (``download=True``,
for users with a network), and a synthetic set generated in memory for tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables.registry import Registry

DATA_ROOT_ENV = "CNNSWEEP_DATA_ROOT"


class DataError(ValueError):
    """Raised before any trial starts when data is missing, corrupt or mislabelled."""


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, N x C x H x W
    labels: np.ndarray  # int64, N

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DataSplits:
    """Train/val/test arrays plus what a trial and the results need to know about them."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # "parquet:<path>", "torchvision:<path>" or "synthetic"
    sha256: str  # digest over the source files' sha256 (or of the generated arrays)
    info: dict = field(default_factory=dict)  # split sizes, seed, subset sizes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # (root or None, download) -> (train, test, source, sha256)
    load: Callable[[Path | None, bool], tuple[ImageSet, ImageSet, str, str]]


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def list_datasets() -> list[str]:
    return DATASETS.names()


def resolve_data_root(flag: str | None) -> Path | None:
    """The data root from the ``--data-root`` flag, else ``$CNNSWEEP_DATA_ROOT``, else None."""
    value = flag or os.environ.get(DATA_ROOT_ENV)
    return Path(value).expanduser().resolve() if value else None


# ----------------------------------------------------------------------------- Parquet


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict:
    path = folder / "MANIFEST.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; a data root holds <dataset>/MANIFEST.json")
    return json.loads(path.read_text())


def verify_files(folder: Path, manifest: dict) -> str:
    """Check every file's sha256 against the manifest; return one digest over all of them."""
    digests = []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise DataError(f"{path} is listed in the manifest but missing")
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise DataError(f"{path}: sha256 {got} does not match the manifest's {entry['sha256']}")
        digests.append(f"{entry['file']}:{got}")
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def decode_png(blob: bytes) -> np.ndarray:
    """PNG bytes -> uint8 C x H x W array (1 channel for L images, 3 for RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        arr = np.asarray(im)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_parquet_images(paths: list[Path], num_classes: int) -> ImageSet:
    import pyarrow.parquet as pq

    blobs, labels = [], []
    for path in paths:
        table = pq.read_table(path, columns=None)
        missing = {"image", "label"} - set(table.column_names)
        if missing:
            raise DataError(f"{path} lacks columns {sorted(missing)}; needs 'image' and 'label'")
        blobs += table.column("image").to_pylist()
        labels += table.column("label").to_pylist()
    y = np.asarray(labels, dtype=np.int64)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        raise DataError(
            f"{paths[0].parent}: label {int(y[bad][0])} out of range; allowed 0..{num_classes - 1}"
        )
    images = []
    for i, blob in enumerate(blobs):
        try:
            images.append(decode_png(blob))
        except Exception as exc:  # PIL raises several types for corrupt data
            raise DataError(f"{paths[0].parent}: image {i} cannot be decoded ({exc})") from exc
    return ImageSet(np.stack(images), y)


def parquet_loader(folder_name: str, num_classes: int):
    """A loader for the ``<root>/<folder_name>`` Parquet layout with train*/test* files."""

    def load(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet, str, str]:
        if root is None:
            raise DataError(
                f"no data root: pass --data-root or set ${DATA_ROOT_ENV} to a folder holding "
                f"{folder_name}/MANIFEST.json (or pass --download to use torchvision's copy)"
            )
        folder = root / folder_name
        manifest = read_manifest(folder)
        digest = verify_files(folder, manifest)
        files = sorted(e["file"] for e in manifest["files"])
        train = [folder / f for f in files if f.startswith("train")]
        test = [folder / f for f in files if f.startswith("test")]
        if not train or not test:
            raise DataError(f"{folder}: expected train*.parquet and test*.parquet files")
        return (
            read_parquet_images(train, num_classes),
            read_parquet_images(test, num_classes),
            f"parquet:{folder}",
            digest,
        )

    return load


def torchvision_loader(cls_name: str):
    """Fallback to torchvision's standard files (downloaded when ``download`` is true)."""

    def load(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet, str, str]:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        where = str(root or Path("~/.cache/torchvision").expanduser())
        sets = []
        for train in (True, False):
            ds = cls(where, train=train, download=download)
            data = np.asarray(ds.data, dtype=np.uint8)
            data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
            sets.append(ImageSet(np.ascontiguousarray(data), np.asarray(ds.targets, np.int64)))
        digest = hashlib.sha256(sets[0].images.tobytes() + sets[1].images.tobytes()).hexdigest()
        return sets[0], sets[1], f"torchvision:{where}", digest

    return load


def parquet_or_torchvision(folder_name: str, num_classes: int, cls_name: str):
    pq_load, tv_load = parquet_loader(folder_name, num_classes), torchvision_loader(cls_name)

    def load(root: Path | None, download: bool):
        if download and (root is None or not (root / folder_name / "MANIFEST.json").exists()):
            return tv_load(root, download)
        return pq_load(root, download)

    return load


# --------------------------------------------------------------------------- synthetic


def make_synthetic(
    n: int, *, num_classes: int = 4, size: int = 28, channels: int = 1, seed: int = 0
) -> ImageSet:
    """Class k is a bright 6x6 square at a class-specific position, plus noise.

    Learnable in a few steps by every registered model, so tests check that training
    really learns rather than just that it runs.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, channels, size, size), dtype=np.uint8)
    step = max(1, (size - 6) // max(1, num_classes - 1))
    for i, k in enumerate(labels):
        r = c = min(size - 6, int(k) * step)
        images[i, :, r : r + 6, c : c + 6] = 255
    return ImageSet(images, labels)


def _synthetic_load(root: Path | None, download: bool):
    train, test = make_synthetic(512, seed=1), make_synthetic(128, seed=2)
    digest = hashlib.sha256(train.images.tobytes() + test.images.tobytes()).hexdigest()
    return train, test, "synthetic", digest


DATASETS.add(
    "mnist",
    DatasetSpec(
        "mnist",
        tuple(str(i) for i in range(10)),
        (0.1307,),  # the standard MNIST train-set statistics
        (0.3081,),
        parquet_or_torchvision("mnist", 10, "MNIST"),
    ),
)
DATASETS.add(
    "cifar10",
    DatasetSpec(
        "cifar10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465),  # the standard CIFAR-10 train-set statistics
        (0.2470, 0.2435, 0.2616),
        parquet_or_torchvision("cifar10", 10, "CIFAR10"),
    ),
)
DATASETS.add(
    "synthetic",
    DatasetSpec("synthetic", ("a", "b", "c", "d"), (0.15,), (0.3,), _synthetic_load),
)


# ------------------------------------------------------------------------------ splits


def stratified_pick(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of exactly ``n`` samples, each class in proportion (at least one each).

    Largest-remainder allocation, so a 4,000-image subset has 4,000 images and the class
    balance of the source.
    """
    classes, counts = np.unique(labels, return_counts=True)
    n = min(n, len(labels))
    quota = counts * n / len(labels)
    take = np.maximum(1, np.floor(quota)).astype(int)
    order = np.argsort(-(quota - np.floor(quota)))
    i = 0
    while take.sum() < n:
        k = order[i % len(order)]
        if take[k] < counts[k]:
            take[k] += 1
        i += 1
    while take.sum() > n:  # only when tiny n meets many classes
        take[np.argmax(take)] -= 1
    pairs = zip(classes, take, strict=True)
    picked = [rng.permutation(np.flatnonzero(labels == k))[:t] for k, t in pairs]
    return np.sort(np.concatenate(picked))


def _limit(s: ImageSet, limit: int | None, rng: np.random.Generator) -> ImageSet:
    if limit is None or limit >= len(s):
        return s
    idx = stratified_pick(s.labels, limit, rng)
    return ImageSet(s.images[idx], s.labels[idx])


def load_splits(
    name: str,
    *,
    root: Path | None = None,
    download: bool = False,
    val_fraction: float = 0.1,
    seed: int = 0,
    train_limit: int | None = None,
    val_limit: int | None = None,
    test_limit: int | None = None,
) -> DataSplits:
    """Decode a dataset once and carve a stratified validation split from its train split.

    The validation split comes from the training data with a fixed seed, so the test
    split is only ever touched by the final evaluation. ``*_limit`` take stratified
    subsets (the CPU budgets); the sizes actually used are recorded in ``info``.
    """
    spec = DATASETS.get(name)
    train_full, test, source, digest = spec.load(root, download)
    rng = np.random.default_rng(seed)
    val_idx = stratified_pick(train_full.labels, round(val_fraction * len(train_full)), rng)
    mask = np.ones(len(train_full), dtype=bool)
    mask[val_idx] = False
    train = ImageSet(train_full.images[mask], train_full.labels[mask])
    val = ImageSet(train_full.images[val_idx], train_full.labels[val_idx])
    train, val, test = (
        _limit(s, lim, rng)
        for s, lim in ((train, train_limit), (val, val_limit), (test, test_limit))
    )
    info = {
        "train": len(train),
        "val": len(val),
        "test": len(test),
        "val_fraction": val_fraction,
        "split_seed": seed,
    }
    return DataSplits(
        name, train, val, test, spec.classes, spec.mean, spec.std, source, digest, info
    )
