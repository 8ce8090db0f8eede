"""A small synthetic set generated in memory: tests and smoke runs need no files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from trainables.data.registry import DATASETS, DatasetSpec, ImageSet, RawData


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


def _synthetic_load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
    train, test = make_synthetic(512, seed=1), make_synthetic(128, seed=2)
    digest = hashlib.sha256(train.images.tobytes() + test.images.tobytes()).hexdigest()
    return RawData(train, test, "synthetic", digest)


DATASETS.add(
    "synthetic",
    DatasetSpec("synthetic", ("a", "b", "c", "d"), (0.15,), (0.3,), _synthetic_load),
)
