"""torchvision's own MNIST and CIFAR-10 files (downloaded when asked): the fallback for
users with a network and no data root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from trainables.data.registry import ImageSet, RawData


def torchvision_loader(cls_name: str):
    """A loader for ``torchvision.datasets.<cls_name>`` (downloaded when ``download`` is true)."""

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
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
        return RawData(sets[0], sets[1], f"torchvision:{where}", digest)

    return load
