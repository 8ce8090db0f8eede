"""The "most confidently wrong" image grid: a real PNG of a sensible size for RGB, grey and none."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from sweeps.plots import worst_images_png

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def grid_inputs(n: int, channels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, channels, 32, 32), dtype=np.uint8)
    true = rng.integers(0, 10, n)
    pred = (true + rng.integers(1, 10, n)) % 10  # always wrong
    confidence = np.sort(rng.uniform(0.5, 1.0, n))[::-1]
    return images, true, pred, confidence


def read_png(path) -> np.ndarray:
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    return mpimg.imread(path)


@pytest.mark.parametrize(("n", "channels", "cols"), [(7, 3, 5), (6, 1, 3)])
def test_grid_is_a_png_with_one_tile_per_image(tmp_path, n, channels, cols):
    path = tmp_path / f"worst_{channels}.png"
    out = worst_images_png(*grid_inputs(n, channels), CLASSES, "worst", path, cols=cols)
    assert out == path
    pixels = read_png(path)
    height, width = pixels.shape[:2]
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    # Two rows of ``cols`` tiles, each a few hundred pixels wide at 110 dpi.
    assert 150 * cols <= width <= 300 * cols
    assert 2 * 150 <= height <= 2 * 300
    assert pixels[..., :3].std() > 0.05  # images were drawn, not a blank page


def test_empty_selection_still_writes_a_figure(tmp_path):
    path = tmp_path / "none.png"
    worst_images_png(*grid_inputs(0, 3), CLASSES, "worst", path)
    height, width = read_png(path).shape[:2]
    assert width > height > 100


def test_mismatched_lengths_are_an_error(tmp_path):
    images, true, pred, confidence = grid_inputs(4, 3)
    with pytest.raises(ValueError, match="differ in length"):
        worst_images_png(images, true, pred[:3], confidence, CLASSES, "worst", tmp_path / "x.png")
