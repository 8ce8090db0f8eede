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

import contextlib
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
    groups: np.ndarray | None = None  # case/cell id per image, for grouped splits

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> ImageSet:
        groups = None if self.groups is None else self.groups[idx]
        return ImageSet(self.images[idx], self.labels[idx], groups)


@dataclass(frozen=True)
class RawData:
    """What a source loader returns: a train split and a test split, or (test None) one
    pool of images that :func:`load_splits` divides itself, grouped by ``groups``."""

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


MANIFEST_SHAPE = 'allowed: {"files": [{"file": <name>, "sha256": <hex digest>}, ...]}'


def read_manifest(folder: Path) -> dict:
    """``<folder>/MANIFEST.json``, checked for shape: a hand-edited or half-copied manifest
    fails here, naming the file, rather than as a JSONDecodeError or KeyError later."""
    path = folder / "MANIFEST.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; a data root holds <dataset>/MANIFEST.json")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise DataError(f"{path} is not valid JSON ({exc}); {MANIFEST_SHAPE}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("sha256"), str)
        for e in files
    ):
        raise DataError(f"{path} has no 'files' list of file/sha256 entries; {MANIFEST_SHAPE}")
    return manifest


def verify_files(folder: Path, manifest: dict) -> str:
    """Check every file's sha256 against the manifest; return one digest over all of them."""
    digests = []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if not path.is_file():
            raise DataError(
                f"{path} is listed in the manifest but missing; re-copy the dataset folder"
            )
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise DataError(
                f"{path}: sha256 {got} does not match the manifest's {entry['sha256']}; the "
                "file is damaged or was changed: re-copy it"
            )
        digests.append(f"{entry['file']}:{got}")
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def decode_png(blob: bytes) -> np.ndarray:
    """PNG bytes -> uint8 C x H x W array (1 channel for L images, 3 for RGB)."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        arr = np.asarray(im)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def pad_resize(img: np.ndarray, size: int, canvas: int = 0) -> np.ndarray:
    """C x H x W uint8 -> C x size x size: centre on a square of the background, then resize.

    Padding, not stretching, keeps the aspect ratio. With ``canvas`` (the largest side in
    the dataset) every image is centred on the same canvas before the one common resize,
    so absolute size survives too, as in ChromosomeNet's 300x300 blank images: length is
    the first cue that tells chromosome 1 from 21. With ``canvas=0`` each image is padded
    to its own square. The background is the median of the image's border pixels: white
    for G-band, black for Q-band, whatever a user's folder has.
    """
    from PIL import Image

    c, h, w = img.shape
    border = np.concatenate([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], axis=1)
    bg = np.median(border, axis=1).astype(np.uint8)
    side = max(h, w, canvas)
    canvas = np.empty((c, side, side), dtype=np.uint8)
    canvas[:] = bg[:, None, None]
    top, left = (side - h) // 2, (side - w) // 2
    canvas[:, top : top + h, left : left + w] = img
    if side == size:
        return canvas
    resample = Image.Resampling.BILINEAR  # PIL antialiases when it shrinks
    chans = [np.asarray(Image.fromarray(ch).resize((size, size), resample)) for ch in canvas]
    return np.stack(chans)


def pad_resize_all(images: list[np.ndarray], size: int, canvas: bool = True) -> list[np.ndarray]:
    """Pad and resize a list of variable-size images to ``size`` (see :func:`pad_resize`).

    The common canvas is the 99th percentile of the images' longer sides, so that a few
    outliers (a 163 px chromosome among 60 px ones) do not shrink every other image; the
    1 % larger than the canvas are scaled down to fit it.
    """
    side = int(np.percentile([max(im.shape[1:]) for im in images], 99)) if canvas else 0
    return [pad_resize(im, size, side) for im in images]


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
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    images, labels, groups = [], [], []
    rows = 0
    for path in paths:
        with contextlib.suppress(Exception):  # reported with its file name by the read below
            rows += pq.ParquetFile(path).metadata.num_rows
    bar = tqdm(total=rows, desc="[data] decoding", unit="img", disable=None, mininterval=0.5)
    needed = {"image", "label"} | ({group_column} if group_column else set())
    allowed = f"allowed: integers 0..{num_classes - 1}"
    try:
        for path in paths:
            try:
                table = pq.read_table(path)
            except Exception as exc:  # truncated or not Parquet at all
                raise DataError(
                    f"{path} cannot be read as Parquet ({exc}); re-copy or re-export it"
                ) from exc
            missing = needed - set(table.column_names)
            if missing:
                raise DataError(f"{path} lacks columns {sorted(missing)}; needs {sorted(needed)}")
            col = table.column("label")
            if not pa.types.is_integer(col.type) or col.null_count:
                nulls = f" with {col.null_count} missing" if col.null_count else ""
                raise DataError(
                    f"{path}: labels {col.slice(0, 3).to_pylist()}... are {col.type}{nulls}; "
                    f"{allowed}"
                )
            y = col.to_numpy().astype(np.int64)
            bad = np.flatnonzero((y < 0) | (y >= num_classes))
            if len(bad):
                raise DataError(
                    f"{path}: label {int(y[bad[0]])} out of range; allowed 0..{num_classes - 1} "
                    f"(row {bad[0]})"
                )
            labels.append(y)
            for i, blob in enumerate(table.column("image").to_pylist()):
                try:
                    images.append(decode_png(blob))
                except Exception as exc:  # PIL raises several types for corrupt data
                    raise DataError(
                        f"{path}: row {i} image cannot be decoded ({exc}); allowed: encoded image "
                        "bytes (PNG) in the 'image' column"
                    ) from exc
                bar.update()
            if group_column:
                groups += [str(g) for g in table.column(group_column).to_pylist()]
    finally:
        bar.close()
    if not images:
        raise DataError(f"{[str(p) for p in paths]} hold no images; allowed: files with rows")
    y = np.concatenate(labels)
    if size:
        images = pad_resize_all(images, size)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{paths[0].parent}: images differ in size {sorted(shapes)[:3]}; "
            "this source needs an image_size to pad and resize to"
        )
    # C-contiguous N x C x H x W: decoded PNGs are H x W x C views, and np.stack keeps
    # their layout, which made every training batch pay a layout copy (2x loader time).
    images = np.ascontiguousarray(np.stack(images))
    return ImageSet(images, y, np.asarray(groups) if group_column else None)


def parquet_loader(folder_name: str, num_classes: int):
    """A loader for the ``<root>/<folder_name>`` Parquet layout with train*/test* files."""

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
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
        return RawData(
            read_parquet_images(train, num_classes),
            read_parquet_images(test, num_classes),
            f"parquet:{folder}",
            digest,
        )

    return load


def torchvision_loader(cls_name: str):
    """Fallback to torchvision's standard files (downloaded when ``download`` is true)."""

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


def parquet_or_torchvision(folder_name: str, num_classes: int, cls_name: str):
    pq_load, tv_load = parquet_loader(folder_name, num_classes), torchvision_loader(cls_name)

    def load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
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


def _synthetic_load(root: Path | None, download: bool, image_size: int | None = None) -> RawData:
    train, test = make_synthetic(512, seed=1), make_synthetic(128, seed=2)
    digest = hashlib.sha256(train.images.tobytes() + test.images.tobytes()).hexdigest()
    return RawData(train, test, "synthetic", digest)


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
    return s.take(stratified_pick(s.labels, limit, rng))


def concat(a: ImageSet, b: ImageSet) -> ImageSet:
    """One pool of two splits (same image shape); groups kept only if both have them."""
    if a.images.shape[1:] != b.images.shape[1:]:
        raise DataError(
            f"cannot pool images of shapes {a.images.shape[1:]} and {b.images.shape[1:]}"
        )
    groups = None if a.groups is None or b.groups is None else np.concatenate([a.groups, b.groups])
    return ImageSet(
        np.concatenate([a.images, b.images]), np.concatenate([a.labels, b.labels]), groups
    )


def check_fractions(fractions: tuple[float, float, float]) -> int:
    """The fold count that realises (train, val, test) with one fold each for val and test."""
    train, val, test = fractions
    folds = round(1 / test) if test > 0 else 0
    if (
        abs(train + val + test - 1) > 1e-6
        or abs(val - test) > 1e-9
        or folds < 3
        or abs(folds * test - 1) > 1e-6
    ):
        raise DataError(
            f"split fractions {fractions} are not supported; allowed: val = test = 1/k for an "
            "integer k >= 3 and train = 1 - 2/k (e.g. 0.8/0.1/0.1, 0.9/0.05/0.05)"
        )
    return folds


def split_pool(pool: ImageSet, *, method: str, seed: int, folds: int = 10):
    """80/10/10 train/val/test indices (``folds=20``: 90/5/5), stratified by class and,
    with ``method="grouped"``, grouped so that no group (case, cell) has images in two
    splits.

    Uses scikit-learn's StratifiedGroupKFold with ``folds`` folds: fold 0 is test, fold 1
    is validation, the others are training. ``method="random"`` is the plain stratified
    split by image that papers often use, which lets one case's chromosomes sit in both
    training and test (kept as an option to measure that leak).
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if method not in ("grouped", "random"):
        raise DataError(f"split method {method!r} is unknown; allowed: grouped, random")
    if method == "grouped" and pool.groups is None:
        raise DataError(
            "a grouped split needs group ids (case/cell); this source has none, use --split random"
        )
    # scikit-learn would raise a bare ValueError about n_splits; say what the user can change
    units = "groups (cases)" if method == "grouped" else "images"
    have = len(np.unique(pool.groups)) if method == "grouped" else len(pool)
    if have < folds:
        raise DataError(
            f"{have} {units} cannot be split {folds} ways for train/val/test; allowed: at "
            f"least {folds} {units}"
        )
    dummy = np.zeros(len(pool))
    if method == "grouped":
        kf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = [test for _, test in kf.split(dummy, pool.labels, pool.groups)]
    else:
        kf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        parts = [test for _, test in kf.split(dummy, pool.labels)]
    return np.sort(np.concatenate(parts[2:])), np.sort(parts[1]), np.sort(parts[0])


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over a uint8 N x C x H x W array, as fractions of 255."""
    x = images.astype(np.float64) / 255
    return tuple(x.mean(axis=(0, 2, 3)).tolist()), tuple(x.std(axis=(0, 2, 3)).tolist())


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
    image_size: int | None = None,
    split: str = "grouped",
    split_fractions: tuple[float, float, float] | None = None,
    groups: FileGroups | None = None,
) -> DataSplits:
    """Decode a dataset once and split it; the test split is touched only by final tests.

    Sources with their own test split (MNIST, CIFAR-10) get a stratified validation split
    of ``val_fraction`` carved from training with a fixed seed. Sources that are one pool
    (chromosomes, image folders) are split 80/10/10 by :func:`split_pool`. ``*_limit``
    take stratified subsets (the CPU budgets); sizes and per-class counts actually used
    are recorded in ``info``.

    ``split_fractions`` (train, val, test), e.g. ANet-c6's 90/5/5, pools *all* of a
    source's images (its own test split included) and splits that pool; grouped by case
    where the source has groups, stratified by image where it has none (MNIST, CIFAR-10).
    ``groups`` tells a folder of class folders which case each file is from (see
    :class:`FileGroups`); a pool without groups is split by image, and ``info`` says so.
    """
    spec = DATASETS.get(name)
    kw = {} if groups is None else {"groups": groups}
    raw = spec.load(root, download, image_size, **kw)
    rng = np.random.default_rng(seed)
    if raw.test is None or split_fractions is not None:
        fractions = split_fractions or (0.8, 0.1, 0.1)
        folds = check_fractions(fractions)
        pool = raw.train if raw.test is None else concat(raw.train, raw.test)
        method = split if pool.groups is not None else "random"
        tr, va, te = split_pool(pool, method=method, seed=seed, folds=folds)
        train, val, test = pool.take(tr), pool.take(va), pool.take(te)
        how = {"split": method, "fractions": list(fractions), "pooled": len(pool)}
        if method == "random" and raw.test is None:
            how["split_warning"] = (
                "split by image: images of one case may be in both train and test; "
                + (
                    "pass --group-pattern or --groups-csv"
                    if pool.groups is None
                    else "drop --split random to split by case"
                )
            )
    else:
        val_idx = stratified_pick(raw.train.labels, round(val_fraction * len(raw.train)), rng)
        mask = np.ones(len(raw.train), dtype=bool)
        mask[val_idx] = False
        train, val, test = raw.train.take(np.flatnonzero(mask)), raw.train.take(val_idx), raw.test
        how = {
            "split": "given test split; validation carved from train",
            "val_fraction": val_fraction,
        }
    train, val, test = (
        _limit(s, lim, rng)
        for s, lim in ((train, train_limit), (val, val_limit), (test, test_limit))
    )
    classes = raw.classes or spec.classes
    mean, std = (spec.mean, spec.std) if spec.mean else channel_stats(train.images)
    info = {"train": len(train), "val": len(val), "test": len(test), "split_seed": seed, **how}
    info |= raw.info
    info["per_class"] = {
        k: np.bincount(s.labels, minlength=len(classes)).tolist()
        for k, s in (("train", train), ("val", val), ("test", test))
    }
    if train.groups is not None:
        info["groups"] = {
            k: int(len(np.unique(s.groups)))
            for k, s in (("train", train), ("val", val), ("test", test))
        }
    return DataSplits(
        name,
        train,
        val,
        test,
        tuple(classes),
        tuple(mean),
        tuple(std),
        raw.source,
        raw.sha256,
        info,
    )


# Importing a source module runs its registrations.
from trainables import chromosomes  # noqa: E402,F401
