"""The dataset registry and the types every source shares.

A source module builds a :class:`DatasetSpec` and adds it to :data:`DATASETS`; importing
:mod:`trainables.data` imports every source module, so ``list_datasets()`` sees them all.
Only light imports here: the sources decide what heavy libraries they need.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trainables.registry import Registry

if TYPE_CHECKING:
    import numpy as np

DATA_ROOT_ENV = "CNNSWEEP_DATA_ROOT"
CHROMOSOME_CLASSES = tuple(str(i) for i in range(1, 23)) + ("X", "Y")


class DataError(ValueError):
    """Raised before any trial starts when data is missing, corrupt or mislabelled."""


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, N x C x H x W
    labels: np.ndarray  # int64, N
    groups: np.ndarray | None = None  # case/cell id per image, for grouped splits

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> ImageSet:
        groups = None if self.groups is None else self.groups[idx]
        return ImageSet(self.images[idx], self.labels[idx], groups)


@dataclass(frozen=True)
class RawData:
    """What a source loader returns: a train split and a test split, or (test None) one
    pool of images that :func:`~trainables.data.load.load_splits` divides itself,
    grouped by ``groups``."""

    train: ImageSet
    test: ImageSet | None
    source: str
    sha256: str
    classes: tuple[str, ...] | None = None  # set by sources that find their classes
    info: dict = field(default_factory=dict)  # what the source reports (e.g. read_with_tifffile)


@dataclass(frozen=True)
class FileGroups:
    """Which case/cell each file of a folder of class folders comes from, so that the pool
    is split by case: ``pattern``, a regular expression whose named group ``group`` is
    searched (``re.search``) in each file's name (with suffix, without folder), or ``csv``,
    a CSV with columns ``file`` (``<class folder>/<name>`` or the bare name) and ``group``."""

    pattern: str | None = None
    csv: Path | None = None

    def describe(self) -> str:
        return f"file name ~ {self.pattern}" if self.pattern is not None else f"csv {self.csv}"


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
    mean: tuple[float, ...] | None  # None: computed from the training split
    std: tuple[float, ...] | None
    # (root or None, download, image_size or None) -> RawData; image_size is the side that
    # variable-size images are padded and resized to once, at decode time. Folder loaders
    # also take the keyword ``groups`` (a FileGroups), which load_splits passes when given.
    load: Callable[..., RawData]


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def list_datasets() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str) -> DatasetSpec:
    """The registered spec of ``name``; an unknown name fails listing the known ones."""
    return DATASETS.get(name)


def resolve_data_root(flag: str | None) -> Path | None:
    """The data root from the ``--data-root`` flag, else ``$CNNSWEEP_DATA_ROOT``, else None."""
    value = flag or os.environ.get(DATA_ROOT_ENV)
    return Path(value).expanduser().resolve() if value else None
