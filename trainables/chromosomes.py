"""Chromosome sources: the G-band and Q-band Parquet sets, and a folder of class folders.

The ChromosomeNet data is distributed as one folder per class (24 folders of images of
varying size); users point ``--data`` at such a tree and the same sweep runs on it. All
three are one pool of images that :func:`trainables.datasets.split_pool` divides 80/10/10,
grouped by case where the source says which case an image came from.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from trainables.datasets import (
    DATASETS,
    DataError,
    DatasetSpec,
    FileGroups,
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


TIFF_SUFFIXES = (".tif", ".tiff")


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


GROUPS_CSV_SHAPE = (
    "allowed: a CSV with a header row holding columns file and group (file: "
    "<class folder>/<name> or the bare name)"
)


def read_groups_csv(path: Path) -> dict[str, str]:
    """``--groups-csv``: {file: group}, ``file`` as written (``\\`` read as ``/``)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"--groups-csv {path} cannot be read ({exc}); {GROUPS_CSV_SHAPE}") from None
    missing = [c for c in ("file", "group") if c not in header]
    if missing:
        raise DataError(
            f"--groups-csv {path}: no column(s) {', '.join(missing)} (header: "
            f"{', '.join(header) or 'none'}); {GROUPS_CSV_SHAPE}"
        )
    table: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        file = (row["file"] or "").strip().replace("\\", "/").removeprefix("./")
        group = (row["group"] or "").strip()
        if not file or not group:
            raise DataError(
                f"--groups-csv {path} line {line}: empty file or group; {GROUPS_CSV_SHAPE}"
            )
        if table.setdefault(file, group) != group:
            raise DataError(
                f"--groups-csv {path} line {line}: {file} is given groups {table[file]!r} and "
                f"{group!r}; allowed: one group per file"
            )
    return table


def group_ids(root: Path, files: list[Path], by: FileGroups) -> np.ndarray:
    """The case/cell id of every file of the folder, by file-name pattern or CSV."""
    import re

    if by.pattern is not None:
        rx = re.compile(by.pattern)
        ids = []
        for path in files:
            m = rx.search(path.name)
            if m is None or not m.group("group"):
                raise DataError(
                    f"{path}: --group-pattern {by.pattern!r} does not match its name "
                    f"{path.name!r}; allowed: a pattern whose (?P<group>...) matches every "
                    "file name"
                )
            ids.append(m.group("group"))
        return np.asarray(ids)
    table = read_groups_csv(by.csv)
    names = Counter(p.name for p in files)
    ids, absent = [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        group = table.get(rel)
        if group is None and (group := table.get(path.name)) is not None and names[path.name] > 1:
            raise DataError(
                f"--groups-csv {by.csv}: {path.name} names {names[path.name]} files of "
                f"{root}; allowed: <class folder>/<name> for a name in two class folders"
            )
        if group is None:
            absent.append(path)
        ids.append(group)
    if absent:
        more = f" and {len(absent) - 1} other file(s)" if len(absent) > 1 else ""
        raise DataError(
            f"{absent[0]}{more} not in --groups-csv {by.csv}; allowed: a row per image, file "
            f"{absent[0].relative_to(root).as_posix()} or {absent[0].name}"
        )
    return np.asarray(ids)


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
    cases = None if groups is None else group_ids(root, files, groups)
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
    images = pad_resize_all(images, image_size or DEFAULT_SIZE)
    if len({im.shape[0] for im in images}) > 1:  # mixed grey and colour: use colour
        images = [np.repeat(im, 3, axis=0) if im.shape[0] == 1 else im for im in images]
    h = hashlib.sha256()
    for path in files:
        h.update(f"{path.relative_to(root)}:{sha256_file(path)}\n".encode())
    classes = CHROMOSOME_CLASSES if order == [str(i) for i in range(24)] else tuple(order)
    pool = ImageSet(
        np.ascontiguousarray(np.stack(images)), np.asarray(labels, dtype=np.int64), cases
    )
    info = {"read_with_tifffile": with_tifffile}
    if groups is not None:
        info["grouped_by"] = groups.describe()
    return RawData(pool, None, f"folder:{root}", h.hexdigest(), classes, info)


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
