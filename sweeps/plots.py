"""The figures a person wants to look at: confusion matrix, learning curves, heat-map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from trainables.schema import LABELS  # noqa: E402


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
    *,
    cbar_label: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """``value`` (percent) over ``index`` rows (default model, optimizer) x ``columns``
    (default lr), annotated. ``rows`` orders the rows as the paper lists them;
    ``vmin``/``vmax`` fix the colour scale (0..100 makes two heat-maps comparable)."""
    index = index or ["model", "optimizer"]
    pivot = df.pivot_table(index=index, columns=columns, values=value)
    if columns != "lr":  # categories in the order the sweep lists them, not alphabetical
        pivot = pivot[[c for c in dict.fromkeys(df[columns]) if c in pivot.columns]]
    if rows:
        keys = rows if len(index) > 1 else [r[0] for r in rows]
        pivot = pivot.reindex([r for r in keys if r in pivot.index])
    width = 1.6 * len(pivot.columns) + (6 if columns != "lr" else 3)
    fig, ax = plt.subplots(figsize=(width, 0.55 * len(pivot) + 1.6))
    im = ax.imshow(pivot.values, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(
        range(len(pivot.columns)),
        [f"lr {c:g}" if columns == "lr" else str(c) for c in pivot.columns],
    )
    names = [" / ".join(map(str, r if isinstance(r, tuple) else (r,))) for r in pivot.index]
    ax.set_yticks(range(len(pivot)), names)
    vals = pivot.values
    finite = vals[np.isfinite(vals)]
    lo, hi = im.get_clim()
    mid = (lo + hi) / 2 if finite.size else 0
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
    fig.colorbar(im, ax=ax, label=cbar_label or value)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a narrow map kept its colour-bar label
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


# ------------------------------------------------------------------ report figures
# Okabe-Ito without its yellow (faint on white): distinguishable with the common
# colour-vision deficiencies. Past seven lines the colours repeat with another marker
# (line styles are taken: dashed means validation loss).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
MARKERS = ["o", "^", "s", "D", "v", "P", "X"]
PUBLISHED, OURS, WORSE, BETTER = "#555555", "#0072B2", "#D55E00", "#009E73"
REPORT_DPI = 120


def _style(i: int) -> dict:
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i // len(PALETTE) % 7]}


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=REPORT_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Path(path)


def published_vs_ours_png(cells: pd.DataFrame, title: str, path: Path) -> Path:
    """Dot plot, one panel per metric: the paper's value (open grey) and ours (filled
    blue) per table cell, joined by a line, with the difference written right of it.

    ``cells`` has columns ``panel`` (the metric, used as x-axis label), ``row`` (the
    cell's name), ``published``, ``ours`` and ``delta`` (text, e.g. "-5.2 pp"), in the
    order to draw them (first row on top).
    """
    panels = list(dict.fromkeys(cells["panel"]))
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    most = cells.groupby("panel").size().max()
    label_in = 0.075 * cells["row"].str.len().max()  # inches of y tick labels
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(ncols * (4.6 + label_in), nrows * (0.32 * most + 1.3) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax, panel in zip(axes.flat, panels, strict=False):
        _dumbbells(ax, cells[cells["panel"] == panel].reset_index(drop=True), panel)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles[::-1], labels[::-1], loc="outside lower center", ncols=2, fontsize=9, frameon=False
    )
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _dumbbells(ax: plt.Axes, c: pd.DataFrame, panel: str) -> None:
    """One metric's cells: published and ours joined by a line, Δ written to the right."""
    y = np.arange(len(c))[::-1]
    ax.hlines(y, c["published"], c["ours"], color="#bbbbbb", lw=2, zorder=1)
    # ours under published: where the two agree, a blue dot shows inside the grey ring
    ax.scatter(c["ours"], y, s=40, color=OURS, zorder=2, label="ours")
    ax.scatter(
        c["published"],
        y,
        s=95,
        facecolor="none",
        edgecolor=PUBLISHED,
        lw=1.6,
        zorder=3,
        label="published",
    )
    ax.set_yticks(y, c["row"], fontsize=9)
    ax.set_ylim(-0.7, len(c) - 0.3)
    ax.set_xlabel(panel, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    vals = np.concatenate([c["published"].to_numpy(float), c["ours"].to_numpy(float)])
    lo, hi = np.nanmin(vals), np.nanmax(vals)
    pad = 0.05 * (hi - lo or abs(hi) or 1)
    ax.set_xlim(lo - pad, hi + pad)
    for yi, text, worse in zip(y, c["delta"], c["worse"], strict=True):
        ax.annotate(
            text,
            (1.0, yi),
            xycoords=("axes fraction", "data"),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
            color=PUBLISHED if worse is None else WORSE if worse else BETTER,
        )


def delta_heatmap_png(pivot: pd.DataFrame, title: str, path: Path, label: str) -> Path:
    """ours - published per cell of a long table (rows x columns, e.g. model x class), on a
    diverging scale centred on 0; the Δ values are written in the cells."""
    vals = pivot.to_numpy(float)
    lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
    fig, ax = plt.subplots(
        figsize=(0.42 * vals.shape[1] + 3.2, 0.42 * vals.shape[0] + 1.6), layout="constrained"
    )
    im = ax.imshow(vals, cmap="PuOr", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(vals.shape[1]), [str(c) for c in pivot.columns], fontsize=8)
    ax.set_yticks(range(vals.shape[0]), [str(r) for r in pivot.index], fontsize=9)
    ax.set_xlabel(str(pivot.columns.name or ""))
    ax.set_ylabel(str(pivot.index.name or ""))
    for i, j in zip(*np.nonzero(np.isfinite(vals)), strict=True):
        ax.text(
            j,
            i,
            f"{vals[i, j]:.0f}",
            ha="center",
            va="center",
            fontsize=6.5,
            color="white" if abs(vals[i, j]) > 0.6 * lim else "black",
        )
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def accuracy_bars_png(
    names: list[str], values: list[float], groups: list[str], title: str, path: Path
) -> Path:
    """Horizontal bars (one per trial, first on top) of an accuracy in percent, coloured
    by ``groups`` (e.g. the dataset), with the value at the end of each bar: the stand-in
    for a heat-map whose grid would have a single column."""
    order = list(dict.fromkeys(groups))
    fig, ax = plt.subplots(
        figsize=(6.5 + 0.07 * max(map(len, names)), 0.36 * len(names) + 1.4),
        layout="constrained",
    )
    y = np.arange(len(names))[::-1]
    colors = [PALETTE[order.index(g) % len(PALETTE)] for g in groups]
    ax.barh(y, values, color=colors, height=0.7)
    for yi, v in zip(y, values, strict=True):
        if np.isfinite(v):
            ax.text(v + 1, yi, f"{v:.1f}", va="center", fontsize=9)
    ax.set_yticks(y, names, fontsize=9)
    ax.set_xlim(0, 108)
    ax.set_xlabel(LABELS["test_acc"])
    ax.grid(axis="x", alpha=0.3)
    if len(order) > 1:
        from matplotlib.patches import Patch

        handles = [Patch(color=PALETTE[i % len(PALETTE)], label=g) for i, g in enumerate(order)]
        fig.legend(
            handles=handles,
            title="dataset",
            loc="outside lower center",
            ncols=len(order),
            fontsize=9,
            frameon=False,
        )
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def curves_png(epochs: pd.DataFrame, names: dict[str, str], title: str, path: Path) -> Path:
    """Learning curves of a few trials (``names``: trial_id -> legend text): validation
    accuracy, and training (solid) and validation (dashed) loss, by epoch; the legend
    sits below the panels so it never covers a curve."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for i, (tid, name) in enumerate(names.items()):
        e = epochs[epochs["trial_id"] == tid].sort_values("epoch")
        st = _style(i)
        a.plot(e["epoch"], 100 * e["val_acc"], ms=5, label=name, **st)
        b.plot(e["epoch"], e["train_loss"], ms=5, ls="-", **st)
        b.plot(e["epoch"], e["val_loss"], ms=5, ls="--", mfc="white", **st)
    a.set_ylabel(LABELS["val_acc"])
    b.set_ylabel("cross-entropy loss")
    b.plot([], [], color="grey", ls="-", label="train")
    b.plot([], [], color="grey", ls="--", label="validation")  # open markers too
    b.legend(fontsize=9, loc="best")
    last = int(epochs["epoch"].max()) if len(epochs) else 1
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.7, last + 0.3)
    fig.legend(
        *a.get_legend_handles_labels(),
        loc="outside lower center",
        ncols=min(len(names), 3 if max(map(len, names.values())) < 48 else 2),
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def asha_png(
    epochs: pd.DataFrame,
    outcome: dict[str, str],
    rungs: list[int],
    cutoffs: pd.DataFrame | None,
    title: str,
    path: Path,
) -> Path:
    """Every trial's validation accuracy by epoch, coloured by how it ended (``outcome``:
    trial_id -> 'finished' | 'stopped by ASHA' | other stop reasons); an ASHA-stopped
    trial's last point is an X. Rung epochs are dotted verticals; ``cutoffs`` (rung,
    cutoff as fractions) are drawn as black dashes at their rung when given."""
    kinds = list(dict.fromkeys(["finished", "stopped by ASHA", *sorted(set(outcome.values()))]))
    color = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(kinds)}
    fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    _trial_curves(ax, epochs, outcome, color)
    top = ax.get_ylim()[1]
    _rungs_and_cutoffs(ax, rungs, cutoffs)
    for k in kinds:
        if k in outcome.values() or k == "finished" and len(outcome) < epochs["trial_id"].nunique():
            ax.plot([], [], color=color[k], marker="X" if k == "stopped by ASHA" else "o", label=k)
    ax.set_ylim(top=max(top, 100 * float(epochs["val_acc"].max()) + 8))
    ax.set_xlim(0.75, float(epochs["epoch"].max()) + 0.25)
    ax.set_xlabel("epoch")
    ax.set_ylabel(LABELS["val_acc"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
    ax.set_title(title, fontsize=11)
    return _save(fig, path)


def _trial_curves(ax: plt.Axes, epochs: pd.DataFrame, outcome: dict, color: dict) -> None:
    """Each trial's validation accuracy; an ASHA-stopped trial's last point as an X."""
    for tid, e in epochs.groupby("trial_id", sort=False):
        kind = outcome.get(tid, "finished")
        e = e.sort_values("epoch")
        ax.plot(
            e["epoch"],
            100 * e["val_acc"],
            marker="o",
            ms=3.5,
            lw=1.2,
            alpha=0.85,
            color=color[kind],
        )
        if kind == "stopped by ASHA":
            ax.plot(
                e["epoch"].iloc[-1],
                100 * e["val_acc"].iloc[-1],
                marker="X",
                ms=10,
                color=color[kind],
                mec="black",
                mew=0.6,
                ls="none",
            )


def _rungs_and_cutoffs(ax: plt.Axes, rungs: list[int], cutoffs: pd.DataFrame | None) -> None:
    """Rung epochs as dotted verticals, cutoffs (fractions) as black dashes at their rung."""
    for r in rungs:
        ax.axvline(r, color="grey", ls=":", lw=1.2)
        ax.annotate(
            f"rung {r}",
            (r, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=9,
            color="grey",
        )
    if cutoffs is not None and len(cutoffs):
        ax.plot(
            cutoffs["rung"],
            100 * cutoffs["cutoff"],
            ls="none",
            marker="_",
            ms=22,
            mew=2,
            color="black",
            label="cutoff at a decision",
        )
