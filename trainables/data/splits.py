"""Dividing decoded images: stratified subsets, pools and 80/10/10 (grouped) splits."""

from __future__ import annotations

import numpy as np

from trainables.data.registry import DataError, ImageSet


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


def limit(s: ImageSet, n: int | None, rng: np.random.Generator) -> ImageSet:
    """A stratified subset of ``n`` images (``s`` itself when ``n`` is None or not smaller)."""
    if n is None or n >= len(s):
        return s
    return s.take(stratified_pick(s.labels, n, rng))


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
