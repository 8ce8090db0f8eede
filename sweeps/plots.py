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
    df: pd.DataFrame, value: str, title: str, path: Path, rows: list[tuple] | None = None
) -> Path:
    """``value`` (percent) over (model, optimizer) rows x lr columns, annotated.

    ``rows`` orders the (model, optimizer) rows as the paper lists them.
    """
    pivot = df.pivot_table(index=["model", "optimizer"], columns="lr", values=value)
    if rows:
        pivot = pivot.reindex([r for r in rows if r in pivot.index])
    fig, ax = plt.subplots(figsize=(1.6 * len(pivot.columns) + 3, 0.55 * len(pivot) + 1.6))
    im = ax.imshow(pivot.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(pivot.columns)), [f"lr {c:g}" for c in pivot.columns])
    ax.set_yticks(range(len(pivot)), [f"{m} / {o}" for m, o in pivot.index])
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
