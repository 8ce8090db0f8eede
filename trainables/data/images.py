"""Decoding and squaring images: shared by the Parquet and the image-folder sources."""

from __future__ import annotations

import io

import numpy as np

DEFAULT_SIZE = 224  # side that variable-size images are padded and resized to by default


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
