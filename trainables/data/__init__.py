"""The dataset registry and the one-time decode of images into uint8 arrays.

A sweep decodes its images once (on the driver), keeps them as uint8 ``N x C x H x W``
numpy arrays and hands them to every trial through Ray's object store, so trials on a
node share one read-only copy instead of decoding PNGs again. Conversion to float,
normalisation and resizing happen per batch in the engine, on the trial's device.

Sources, one module each, registering their datasets when imported (below):
:mod:`.parquet` (the project's Parquet layout of a data root, every file's sha256
verified: MNIST, CIFAR-10, the chromosome sets), :mod:`.torchvision_source`
(torchvision's own files or download, ``download=True``), :mod:`.synthetic` (generated
in memory, for tests) and :mod:`.folders` (a folder of class folders). Source modules
import :mod:`.registry` and their siblings, never this package, so nothing imports in a
circle.
"""

from trainables.data import folders, parquet, synthetic, torchvision_source
from trainables.data.folders import class_names, load_image_folder
from trainables.data.images import DEFAULT_SIZE, decode_png, pad_resize, pad_resize_all
from trainables.data.load import data_key, load_splits
from trainables.data.manifest import read_manifest, sha256_file, verify_files
from trainables.data.parquet import read_parquet_images
from trainables.data.registry import (
    CHROMOSOME_CLASSES,
    DATA_ROOT_ENV,
    DATASETS,
    DataError,
    DatasetSpec,
    DataSplits,
    FileGroups,
    ImageSet,
    RawData,
    get_dataset,
    list_datasets,
    resolve_data_root,
)
from trainables.data.splits import channel_stats, split_pool, stratified_pick
from trainables.data.synthetic import make_synthetic

__all__ = [
    "CHROMOSOME_CLASSES",
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_SIZE",
    "DataError",
    "DataSplits",
    "DatasetSpec",
    "FileGroups",
    "ImageSet",
    "RawData",
    "channel_stats",
    "class_names",
    "decode_png",
    "folders",
    "get_dataset",
    "list_datasets",
    "load_image_folder",
    "data_key",
    "load_splits",
    "make_synthetic",
    "pad_resize",
    "pad_resize_all",
    "parquet",
    "read_manifest",
    "read_parquet_images",
    "resolve_data_root",
    "sha256_file",
    "split_pool",
    "stratified_pick",
    "synthetic",
    "torchvision_source",
    "verify_files",
]
