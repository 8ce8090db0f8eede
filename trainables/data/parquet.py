"""The project's Parquet layout: ``<root>/<name>/MANIFEST.json`` and Parquet files whose
rows hold PNG bytes (``image``), an integer ``label`` and, for pooled sets, a case id.

MNIST and CIFAR-10 come as train*/test* files (with torchvision's copy as a fallback for
users with a network); the chromosome sets are one pool that
:func:`~trainables.data.splits.split_pool` divides 80/10/10, grouped by case.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from trainables.data.images import DEFAULT_SIZE, decode_png, pad_resize_all
from trainables.data.manifest import read_manifest, verify_files
from trainables.data.registry import (
    CHROMOSOME_CLASSES,
    DATA_ROOT_ENV,
    DATASETS,
    DataError,
    DatasetSpec,
    ImageSet,
    RawData,
)
from trainables.data.torchvision_source import torchvision_loader


def read_parquet_images(
    paths: list[Path],
    num_classes: int,
    *,
    size: int | None = None,
    group_column: str | None = None,
) -> ImageSet:
    """Decode every image of some Parquet files; ``size`` pads and resizes variable-size ones.

    Checked file by file, so an error names the file and row to look at. A progress bar
    (on a terminal only: tqdm's ``disable=None``) shows the decode, which takes minutes
    for the full CIFAR-10 or chromosome sets.
    """
    from tqdm import tqdm

    needed = {"image", "label"} | ({group_column} if group_column else set())
    images, labels, groups = [], [], []
    rows = _count_rows(paths)
    bar = tqdm(total=rows, desc="[data] decoding", unit="img", disable=None, mininterval=0.5)
    try:
        for path in paths:
            table = _read_table(path, needed)
            labels.append(_checked_labels(path, table, num_classes))
            images += _decode_images(path, table, bar)
            if group_column:
                groups += [str(g) for g in table.column(group_column).to_pylist()]
    finally:
        bar.close()
    if not images:
        raise DataError(f"{[str(p) for p in paths]} hold no images; allowed: files with rows")
    y = np.concatenate(labels)
    stacked = _stack_images(images, paths, size)
    return ImageSet(stacked, y, np.asarray(groups) if group_column else None)


def _count_rows(paths: list[Path]) -> int:
    """Rows in all files, from their footers (for the progress bar's total)."""
    import pyarrow.parquet as pq

    rows = 0
    for path in paths:
        with contextlib.suppress(Exception):  # reported with its file name by the read
            rows += pq.ParquetFile(path).metadata.num_rows
    return rows


def _read_table(path: Path, needed: set[str]):
    """The file as a pyarrow Table that has the ``needed`` columns."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # truncated or not Parquet at all
        raise DataError(
            f"{path} cannot be read as Parquet ({exc}); re-copy or re-export it"
        ) from exc
    missing = needed - set(table.column_names)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}; needs {sorted(needed)}")
    return table


def _checked_labels(path: Path, table, num_classes: int) -> np.ndarray:
    """The ``label`` column as int64, refused unless every value is a class index."""
    import pyarrow as pa

    col = table.column("label")
    if not pa.types.is_integer(col.type) or col.null_count:
        nulls = f" with {col.null_count} missing" if col.null_count else ""
        raise DataError(
            f"{path}: labels {col.slice(0, 3).to_pylist()}... are {col.type}{nulls}; "
            f"allowed: integers 0..{num_classes - 1}"
        )
    y = col.to_numpy().astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if len(bad):
        raise DataError(
            f"{path}: label {int(y[bad[0]])} out of range; allowed 0..{num_classes - 1} "
            f"(row {bad[0]})"
        )
    return y


def _decode_images(path: Path, table, bar) -> list[np.ndarray]:
    """Every row's PNG as uint8 C x H x W, the bar told of each."""
    images = []
    for i, blob in enumerate(table.column("image").to_pylist()):
        try:
            images.append(decode_png(blob))
        except Exception as exc:  # PIL raises several types for corrupt data
            raise DataError(
                f"{path}: row {i} image cannot be decoded ({exc}); allowed: encoded image "
                "bytes (PNG) in the 'image' column"
            ) from exc
        bar.update()
    return images


def _stack_images(images: list[np.ndarray], paths: list[Path], size: int | None) -> np.ndarray:
    """One N x C x H x W array; variable-size images need ``size`` to be squared to."""
    if size:
        images = pad_resize_all(images, size)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{paths[0].parent}: images differ in size {sorted(shapes)[:3]}; "
            "this source needs an image_size to pad and resize to"
        )
    # C-contiguous: decoded PNGs are H x W x C views and np.stack keeps their layout, so
    # without the copy every training batch would pay a layout copy (2x loader time).
    return np.ascontiguousarray(np.stack(images))


def verified_folder(root: Path | None, folder_name: str, hint: str = "") -> tuple[Path, dict, str]:
    """``<root>/<folder_name>``, its manifest, and the sha256 over its verified files."""
    if root is None:
        raise DataError(
            f"no data root: pass --data-root or set ${DATA_ROOT_ENV} to a folder holding "
            f"{folder_name}/MANIFEST.json{hint}"
        )
    folder = root / folder_name
    manifest = read_manifest(folder)
    return folder, manifest, verify_files(folder, manifest)


def parquet_loader(folder_name: str, num_classes: int):
    """A loader for the ``<root>/<folder_name>`` Parquet layout with train*/test* files."""

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
        hint = " (or pass --download to use torchvision's copy)"
        folder, manifest, digest = verified_folder(root, folder_name, hint)
        files = sorted(e["file"] for e in manifest["files"])
        train = [folder / f for f in files if f.startswith("train")]
        test = [folder / f for f in files if f.startswith("test")]
        if not train or not test:
            raise DataError(f"{folder}: expected train*.parquet and test*.parquet files")
        return RawData(
            read_parquet_images(train, num_classes),
            read_parquet_images(test, num_classes),
            f"parquet:{folder}",
            digest,
        )

    return load


def parquet_or_torchvision(folder_name: str, num_classes: int, cls_name: str):
    """The Parquet layout; torchvision's copy when ``download`` is set and the root has none."""
    pq_load, tv_load = parquet_loader(folder_name, num_classes), torchvision_loader(cls_name)

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
        if download and (root is None or not (root / folder_name / "MANIFEST.json").exists()):
            return tv_load(root, download)
        return pq_load(root, download)

    return load


def parquet_pool(folder_name: str, group_column: str):
    """Loader for a chromosome Parquet folder: every file pooled, grouped by ``group_column``."""

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
        folder, manifest, digest = verified_folder(root, folder_name)
        files = [folder / e["file"] for e in sorted(manifest["files"], key=lambda e: e["file"])]
        pool = read_parquet_images(
            files,
            len(CHROMOSOME_CLASSES),
            size=image_size or DEFAULT_SIZE,
            group_column=group_column,
        )
        return RawData(pool, None, f"parquet:{folder}", digest)

    return load


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
