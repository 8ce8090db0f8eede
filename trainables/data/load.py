"""``load_splits``: decode a registered dataset once and divide it into train/val/test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainables.data.registry import DataSplits, FileGroups, ImageSet, RawData, get_dataset
from trainables.data.splits import (
    channel_stats,
    check_fractions,
    concat,
    limit,
    split_pool,
    stratified_pick,
)

Splits = tuple[ImageSet, ImageSet, ImageSet]


def data_key(dataset: str | None, split: str | None = None) -> str | None:
    """A sweep's loaded splits are keyed by dataset name; a trial that asks for another
    split of that dataset (a leak-free twin) finds it under ``name-split`` (MLflow keys and file
    names can carry it)."""
    return dataset if split is None else f"{dataset}-{split}"


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
    spec = get_dataset(name)
    kw = {} if groups is None else {"groups": groups}
    raw = spec.load(root, download, image_size, **kw)
    # One generator, drawn in this order: the validation carve-out, then the subsets.
    rng = np.random.default_rng(seed)
    if raw.test is None or split_fractions is not None:
        (train, val, test), how = _split_pooled(raw, split, split_fractions, seed)
    else:
        (train, val, test), how = _carve_validation(raw, val_fraction, rng)
    train, val, test = (
        limit(s, n, rng) for s, n in ((train, train_limit), (val, val_limit), (test, test_limit))
    )
    classes = tuple(raw.classes or spec.classes)
    mean, std = (spec.mean, spec.std) if spec.mean else channel_stats(train.images)
    info = {"train": len(train), "val": len(val), "test": len(test), "split_seed": seed, **how}
    info |= raw.info
    info |= _split_counts((train, val, test), len(classes))
    return DataSplits(
        name, train, val, test, classes, tuple(mean), tuple(std), raw.source, raw.sha256, info
    )


def _split_pooled(
    raw: RawData,
    split: str,
    split_fractions: tuple[float, float, float] | None,
    seed: int,
) -> tuple[Splits, dict]:
    """A pool (the source's one pool, or its train and test together) split by
    :func:`split_pool`: by case where the pool has groups, else by image."""
    fractions = split_fractions or (0.8, 0.1, 0.1)
    folds = check_fractions(fractions)
    pool = raw.train if raw.test is None else concat(raw.train, raw.test)
    method = split if pool.groups is not None else "random"
    tr, va, te = split_pool(pool, method=method, seed=seed, folds=folds)
    how = {"split": method, "fractions": list(fractions), "pooled": len(pool)}
    if method == "random" and raw.test is None:
        how["split_warning"] = (
            "split by image: images of one case may be in both train and test; "
            + (
                "pass --group-pattern or --groups-csv"
                if pool.groups is None
                else "--split grouped splits by case"
            )
        )
    return (pool.take(tr), pool.take(va), pool.take(te)), how


def _carve_validation(
    raw: RawData, val_fraction: float, rng: np.random.Generator
) -> tuple[Splits, dict]:
    """The source's own test split; validation a stratified ``val_fraction`` of training."""
    val_idx = stratified_pick(raw.train.labels, round(val_fraction * len(raw.train)), rng)
    mask = np.ones(len(raw.train), dtype=bool)
    mask[val_idx] = False
    splits = raw.train.take(np.flatnonzero(mask)), raw.train.take(val_idx), raw.test
    how = {"split": "given test split; validation carved from train", "val_fraction": val_fraction}
    return splits, how


def _split_counts(splits: Splits, num_classes: int) -> dict:
    """Per-class counts of each split and, where there are groups, distinct groups."""
    named = tuple(zip(("train", "val", "test"), splits, strict=True))
    info: dict = {
        "per_class": {k: np.bincount(s.labels, minlength=num_classes).tolist() for k, s in named}
    }
    if splits[0].groups is not None:
        info["groups"] = {k: int(len(np.unique(s.groups))) for k, s in named}
    return info
