"""Chromosome sources: the G-band and Q-band Parquet sets, and a folder of class folders.

The ChromosomeNet data is distributed as one folder per class (24 folders of images of
varying size); users point ``--data`` at such a tree and the same sweep runs on it. All
three are one pool of images that :func:`trainables.datasets.split_pool` divides 80/10/10,
grouped by case where the source says which case an image came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from trainables.datasets import (
    DATASETS,
    DataError,
    DatasetSpec,
    ImageSet,
    RawData,
    pad_resize_all,
    read_manifest,
    read_parquet_images,
    sha256_file,
    verify_files,
)

CHROMOSOME_CLASSES = tuple(str(i) for i in range(1, 23)) + ("X", "Y")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DEFAULT_SIZE = 224


def parquet_pool(folder_name: str, group_column: str):
    """Loader for a chromosome Parquet folder: every file pooled, grouped by ``group_column``."""

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
        if root is None:
            raise DataError(
                f"no data root: pass --data-root or set $CNNSWEEP_DATA_ROOT to a "
                f"folder holding {folder_name}/MANIFEST.json"
            )
        folder = root / folder_name
        manifest = read_manifest(folder)
        digest = verify_files(folder, manifest)
        files = [folder / e["file"] for e in sorted(manifest["files"], key=lambda e: e["file"])]
        pool = read_parquet_images(
            files,
            len(CHROMOSOME_CLASSES),
            size=image_size or DEFAULT_SIZE,
            group_column=group_column,
        )
        return RawData(pool, None, f"parquet:{folder}", digest)

    return load


def class_names(folders: list[str]) -> list[str]:
    """Order class folders; chromosome-looking names map to '1'..'22','X','Y'.

    ChromosomeNet names its folders by label (0..23, with 22 = X and 23 = Y); other trees
    use '1'..'22', 'X', 'Y'. Anything else is taken in sorted order.
    """
    names = set(folders)
    if names == set(CHROMOSOME_CLASSES):
        return list(CHROMOSOME_CLASSES)
    if names == {str(i) for i in range(24)}:
        return [str(i) for i in range(24)]
    return sorted(folders)


def _decode_file(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16/32-bit TIFFs: scale to 8 bits
            arr = np.asarray(im, dtype=np.float64)
            arr = (255 * arr / max(arr.max(), 1)).astype(np.uint8)
        elif im.mode in ("L", "1", "P", "LA"):
            arr = np.asarray(im.convert("L"))
        else:
            arr = np.asarray(im.convert("RGB"))
            if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
                arr = arr[..., 0]  # grey stored as RGB
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
    """A tree ``root/<class>/<image>``; every image padded and resized to ``image_size``."""
    if root is None:  # --dataset image_folder without --data or a data root
        raise DataError("dataset image_folder needs --data; allowed: a folder of class folders")
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder; allowed: a folder of class folders")
    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(folders) < 2:
        raise DataError(f"--data {root}: found {len(folders)} class folders; allowed: >= 2")
    order = class_names(folders)
    files, labels = [], []
    for k, name in enumerate(order):
        found = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        others = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
        if others:
            raise DataError(
                f"{others[0]} is not an image; allowed suffixes: {', '.join(IMAGE_SUFFIXES)}"
            )
        if not found:
            raise DataError(
                f"class folder {root / name} is empty; allowed: at least one image per class "
                "(add images or remove the folder)"
            )
        files += found
        labels += [k] * len(found)
    images = []
    for path in files:
        try:
            images.append(_decode_file(path))
        except Exception as exc:
            raise DataError(
                f"{path} cannot be decoded as an image ({exc}); allowed: image files that "
                "Pillow reads (replace or remove it)"
            ) from exc
    images = pad_resize_all(images, image_size or DEFAULT_SIZE)
    if len({im.shape[0] for im in images}) > 1:  # mixed grey and colour: use colour
        images = [np.repeat(im, 3, axis=0) if im.shape[0] == 1 else im for im in images]
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root)}:{sha256_file(path)}\n".encode())
    classes = CHROMOSOME_CLASSES if order == [str(i) for i in range(24)] else tuple(order)
    pool = ImageSet(np.ascontiguousarray(np.stack(images)), np.asarray(labels, dtype=np.int64))
    return RawData(pool, None, f"folder:{root}", h.hexdigest(), classes)


DATASETS.add(
    "chromosome_gband",
    DatasetSpec(
        "chromosome_gband",
        CHROMOSOME_CLASSES,
        None,
        None,
        parquet_pool("chromosome_gband_612cells", "case_id"),
    ),
)
DATASETS.add(
    "chromosome_qband",
    DatasetSpec(
        "chromosome_qband",
        CHROMOSOME_CLASSES,
        None,
        None,
        parquet_pool("chromosome_bioimlab_qband", "karyotype_id"),
    ),
)
DATASETS.add("image_folder", DatasetSpec("image_folder", (), None, None, load_image_folder))
