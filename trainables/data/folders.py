"""A folder of class folders (``root/<class>/<image>``), as the ChromosomeNet data is
distributed: 24 folders of images of varying size; users point ``--data`` at such a tree
and the same sweep runs on it.

The tree is one pool of images that :func:`~trainables.data.splits.split_pool` divides
80/10/10, grouped by case where ``--group-pattern`` or ``--groups-csv`` says which case
each file came from (:mod:`trainables.data.groups`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from trainables.data.groups import group_ids
from trainables.data.images import DEFAULT_SIZE, pad_resize_all
from trainables.data.manifest import sha256_file
from trainables.data.registry import (
    CHROMOSOME_CLASSES,
    DATASETS,
    DataError,
    DatasetSpec,
    FileGroups,
    ImageSet,
    RawData,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


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


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """8-bit as is; 16/32-bit and float scaled so the image's maximum becomes 255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    arr = arr.astype(np.float64)
    return np.clip(255 * arr / max(arr.max(), 1), 0, 255).astype(np.uint8)


def _channels_first(arr: np.ndarray) -> np.ndarray:
    """H x W or H x W x 3 uint8 -> C x H x W; grey stored as RGB becomes one channel."""
    if arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        arr = arr[..., 0]
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16/32-bit TIFFs: scale to 8 bits
            return _to_uint8(np.asarray(im))
        if im.mode in ("L", "1", "P", "LA"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))


def _read_tifffile(path: Path) -> np.ndarray:
    """The first page of a TIFF, read by tifffile, as H x W or H x W x 3 uint8.

    tifffile logs what it finds wrong with a file's layout (once per file, at ERROR level:
    "incorrect StripOffsets count (2 != 1)"); a folder of 2,806 such files would bury the
    sweep's log, so those records are dropped here and the files counted by the caller.
    """
    import logging
    import warnings

    import tifffile

    def drop(record: logging.LogRecord) -> bool:
        return False

    log = logging.getLogger("tifffile")
    log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with tifffile.TiffFile(path) as tif:
                if not len(tif.pages):
                    raise ValueError("no image in the file")
                page = tif.pages.first
                arr, axes = page.asarray(), page.axes
    finally:
        log.removeFilter(drop)
    if axes == "SYX":  # planar RGB
        arr, axes = np.moveaxis(arr, 0, -1), "YXS"
    if axes == "YXS" and arr.shape[-1] in (2, 4):  # grey + alpha, RGB + alpha
        arr = arr[..., 0] if arr.shape[-1] == 2 else arr[..., :3]
    elif axes not in ("YX", "YXS") or (axes == "YXS" and arr.shape[-1] != 3):
        raise ValueError(f"axes {axes} of shape {arr.shape}; allowed: greyscale or RGB")
    return _to_uint8(arr)


def _decode_file(path: Path) -> tuple[np.ndarray, bool]:
    """One image file -> (uint8 C x H x W, whether tifffile had to read it).

    Pillow first; a TIFF that Pillow refuses is read with tifffile, which accepts what
    karyotyping systems write and Pillow stops at: StripOffsets listing two strips while
    RowsPerStrip covers the whole image ("image file is truncated (6 bytes not
    processed)"). Either reader's 16-bit images are scaled to 8 bits the same way.
    """
    try:
        return _channels_first(_read_pillow(path)), False
    except Exception as pil_exc:
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise
        try:
            return _channels_first(_read_tifffile(path)), True
        except Exception as tiff_exc:
            why = f"{type(tiff_exc).__name__}: {tiff_exc}"
            raise ValueError(f"Pillow: {pil_exc}; tifffile: {why}") from tiff_exc


def load_image_folder(
    root: Path | None,
    download: bool,
    image_size: int | None = None,
    *,
    groups: FileGroups | None = None,
) -> RawData:
    """A tree ``root/<class>/<image>``; every image padded and resized to ``image_size``.

    With ``groups`` each image gets its case/cell id (checked before any image is decoded,
    so a pattern that misses a file fails in seconds, not after the decode).
    """
    order, files, labels = _class_files(root)
    cases = None if groups is None else group_ids(root, files, groups)
    images, with_tifffile = _decode_files(files)
    images = pad_resize_all(images, image_size or DEFAULT_SIZE)
    if len({im.shape[0] for im in images}) > 1:  # mixed grey and colour: use colour
        images = [np.repeat(im, 3, axis=0) if im.shape[0] == 1 else im for im in images]
    digest = _folder_digest(root, files)
    classes = CHROMOSOME_CLASSES if order == [str(i) for i in range(24)] else tuple(order)
    pool = ImageSet(
        np.ascontiguousarray(np.stack(images)), np.asarray(labels, dtype=np.int64), cases
    )
    info = {"read_with_tifffile": with_tifffile}
    if groups is not None:
        info["grouped_by"] = groups.describe()
    return RawData(pool, None, f"folder:{root}", digest, classes, info)


def _class_files(root: Path | None) -> tuple[list[str], list[Path], list[int]]:
    """(class folder names in label order, every image file, its label), all checked."""
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
        found = _images_of_class(root / name)
        files += found
        labels += [k] * len(found)
    return order, files, labels


def _images_of_class(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    others = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise DataError(
            f"{others[0]} is not an image; allowed suffixes: {', '.join(IMAGE_SUFFIXES)}"
        )
    if not found:
        raise DataError(
            f"class folder {folder} is empty; allowed: at least one image per class "
            "(add images or remove the folder)"
        )
    return found


def _decode_files(files: list[Path]) -> tuple[list[np.ndarray], int]:
    """Every file as uint8 C x H x W, and how many of them only tifffile could read."""
    images, with_tifffile = [], 0
    for path in files:
        try:
            image, used_tifffile = _decode_file(path)
        except Exception as exc:
            raise DataError(
                f"{path} cannot be decoded as an image ({exc}); allowed: image files that "
                "Pillow reads, or TIFFs that tifffile reads (replace or remove it)"
            ) from exc
        images.append(image)
        with_tifffile += used_tifffile
    return images, with_tifffile


def _folder_digest(root: Path, files: list[Path]) -> str:
    """One sha256 over every file's path (relative to ``root``) and content digest."""
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root)}:{sha256_file(path)}\n".encode())
    return h.hexdigest()


DATASETS.add("image_folder", DatasetSpec("image_folder", (), None, None, load_image_folder))
