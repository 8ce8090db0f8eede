"""The figures a person wants to look at: confusion matrix, learning curves, heat-map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def confusion_matrix_png(conf: np.ndarray, classes: list[str], title: str, path: Path) -> Path:
    """Row-normalised colours, raw counts in the cells; true classes on the rows."""
    conf = np.asarray(conf)
    k = len(classes)
    size = max(5.0, 0.4 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if conf[i, j]:
                    ax.text(
                        j,
                        i,
                        str(conf[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def learning_curves_png(epochs: pd.DataFrame, title: str, path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    e = epochs["epoch"]
    a.plot(e, epochs["train_loss"], "o-", label="train")
    a.plot(e, epochs["val_loss"], "s-", label="validation")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy loss")
    a.legend()
    b.plot(e, 100 * epochs["train_acc"], "o-", label="train")
    b.plot(e, 100 * epochs["val_acc"], "s-", label="validation")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.set_xticks(list(e))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_png(
    df: pd.DataFrame,
    value: str,
    title: str,
    path: Path,
    rows: list[tuple] | None = None,
    index: list[str] | None = None,
    columns: str = "lr",
) -> Path:
    """``value`` (percent) over ``index`` rows (default model, optimizer) x ``columns``
    (default lr), annotated. ``rows`` orders the rows as the paper lists them."""
    index = index or ["model", "optimizer"]
    pivot = df.pivot_table(index=index, columns=columns, values=value)
    if columns != "lr":  # categories in the order the sweep lists them, not alphabetical
        pivot = pivot[[c for c in dict.fromkeys(df[columns]) if c in pivot.columns]]
    if rows:
        keys = rows if len(index) > 1 else [r[0] for r in rows]
        pivot = pivot.reindex([r for r in keys if r in pivot.index])
    width = 1.6 * len(pivot.columns) + (6 if columns != "lr" else 3)
    fig, ax = plt.subplots(figsize=(width, 0.55 * len(pivot) + 1.6))
    im = ax.imshow(pivot.values, cmap="viridis", aspect="auto")
    ax.set_xticks(
        range(len(pivot.columns)),
        [f"lr {c:g}" if columns == "lr" else str(c) for c in pivot.columns],
    )
    names = [" / ".join(map(str, r if isinstance(r, tuple) else (r,))) for r in pivot.index]
    ax.set_yticks(range(len(pivot)), names)
    vals = pivot.values
    finite = vals[np.isfinite(vals)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isfinite(vals[i, j]):
                ax.text(
                    j,
                    i,
                    f"{vals[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="black" if vals[i, j] > mid else "white",
                )
    fig.colorbar(im, ax=ax, label=value)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def worst_images_png(
    images: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    classes: list[str],
    title: str,
    path: Path,
    cols: int = 5,
) -> Path:
    """Grid of test images captioned "true → pred (confidence %)", in the caller's order.

    The Keras CIFAR-10 report's "25 worst classified" figure: the caller picks the wrong
    predictions with the highest confidence (``confidence`` in [0, 1]) and sorts them;
    ``images`` are uint8 ``N x C x H x W`` with C = 1 (drawn grey) or 3.
    """
    images = np.asarray(images)
    n = len(images)
    if not (len(true) == len(pred) == len(confidence) == n):
        raise ValueError(
            f"images, true, pred, confidence differ in length: "
            f"{n}, {len(true)}, {len(pred)}, {len(confidence)}"
        )
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        ax.axis("off")
    else:
        cols = max(1, min(cols, n))
        rows = -(-n // cols)  # ceiling division
        fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows + 0.4), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                _draw_tile(ax, images[i], f"{classes[true[i]]} → {classes[pred[i]]}", confidence[i])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_tile(ax: plt.Axes, image: np.ndarray, label: str, confidence: float) -> None:
    """One C x H x W uint8 image with its caption; fixed 0..255 scale so tiles compare."""
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(np.transpose(image, (1, 2, 0)))
    ax.set_title(f"{label} ({100 * float(confidence):.1f} %)", fontsize=7)
