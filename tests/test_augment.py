"""Batch augmentation: exact pixel moves, nearest fill, seeding, layout, and labels kept paired."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainables.augment import AUGMENTATIONS, augment_batch, flip_and_rotate, flip_and_shift

KINDS = ("flip_shift", "flip_rotate")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 8, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=gen(seed))


def roll_replicate(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: torch.roll along one axis at a time, then overwrite the wrapped-around strip
    with copies of the edge pixel it came in past."""
    return _roll_axis(_roll_axis(img, dx, -1), dy, -2)


def _roll_axis(img: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    out = torch.roll(img, k, dims=dim)
    n = img.shape[dim]
    if k > 0:
        out.narrow(dim, 0, k).copy_(img.narrow(dim, 0, 1).expand_as(out.narrow(dim, 0, k)))
    elif k < 0:
        tail = out.narrow(dim, n + k, -k)
        tail.copy_(img.narrow(dim, n - 1, 1).expand_as(tail))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_shape_dtype_device_kept_and_input_untouched(kind, device):
    x = batch().to(device)
    before = x.clone()
    out = augment_batch(x, kind, gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, before)
    if kind != "none":
        assert out.data_ptr() != x.data_ptr()


def test_none_is_identity():
    x = batch()
    assert torch.equal(augment_batch(x, "none", gen()), x)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_other_seed_differs(kind):
    x = batch(n=16)
    a = augment_batch(x, kind, gen(1))
    assert torch.equal(a, augment_batch(x, kind, gen(1)))
    assert not torch.equal(a, augment_batch(x, kind, gen(2)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_on_cpu_and_gpu(kind):
    x = batch(n=16)
    cpu = augment_batch(x, kind, gen(3))
    gpu = augment_batch(x.cuda(), kind, gen(3)).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-5, rtol=0)


def test_flip_and_shift_moves_content_by_exact_pixels():
    img = torch.arange(20.0).view(1, 1, 4, 5)
    out = flip_and_shift(img, torch.tensor([False]), torch.tensor([-1]), torch.tensor([2]))
    # Up one row (bottom row repeated), right two columns (left column repeated).
    expected = torch.tensor(
        [
            [5, 5, 5, 6, 7],
            [10, 10, 10, 11, 12],
            [15, 15, 15, 16, 17],
            [15, 15, 15, 16, 17],
        ],
        dtype=torch.float32,
    )
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(out, roll_replicate(img, -1, 2))


@pytest.mark.parametrize(("dy", "dx"), [(0, 3), (2, -1), (-3, 0), (1, 1)])
def test_flip_and_shift_matches_roll_reference_per_sample(dy, dx):
    x = batch(n=2, h=6, w=7)
    hflip, dys, dxs = torch.tensor([False, True]), torch.tensor([dy, 0]), torch.tensor([dx, dx])
    out = flip_and_shift(x, hflip, dys, dxs)
    assert torch.equal(out[0], roll_replicate(x[0], dy, dx))
    assert torch.equal(out[1], roll_replicate(x[1].flip(-1), 0, dx))


def test_flip_shift_draws_are_flips_and_integer_shifts_within_range():
    x = batch(n=64, c=2, h=8, w=8)
    out = augment_batch(x, "flip_shift", gen(5), shift=0.25)  # up to 2 pixels each way
    used = set()
    for i in range(len(x)):
        hits = [
            (f, dy, dx)
            for f, dy, dx in itertools.product((False, True), range(-2, 3), range(-2, 3))
            if torch.equal(out[i], roll_replicate(x[i].flip(-1) if f else x[i], dy, dx))
        ]
        assert len(hits) == 1, f"sample {i} matches {hits}"
        used.add(hits[0])
    assert {f for f, _, _ in used} == {False, True}
    assert {dy for _, dy, _ in used} == set(range(-2, 3))
    assert {dx for _, _, dx in used} == set(range(-2, 3))


def test_flip_shift_without_shift_is_identity_or_mirror_and_both_occur():
    x = batch(n=64)
    out = augment_batch(x, "flip_shift", gen(0), shift=0.0)
    same = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    mirrored = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)]
    assert all(a != b for a, b in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)


def test_flip_shift_nearest_fill_creates_no_new_values():
    x = batch(n=32, h=10, w=10)
    out = augment_batch(x, "flip_shift", gen(7), shift=0.3)
    for o, s in zip(out, x, strict=True):
        assert torch.isin(o, s).all()
        assert s.min() <= o.min() and o.max() <= s.max()


def test_flip_rotate_without_rotation_gives_one_of_the_four_flips():
    x = batch(n=64)
    out = augment_batch(x, "flip_rotate", gen(0), rotation_deg=0.0)
    seen = set()
    for o, s in zip(out, x, strict=True):
        combos = {
            (h, v): s.flip(-1) if h else s for h, v in itertools.product((False, True), repeat=2)
        }
        combos = {k: (c.flip(-2) if k[1] else c) for k, c in combos.items()}
        hits = [k for k, c in combos.items() if torch.allclose(o, c, atol=1e-5, rtol=0)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) == 4


def test_rotation_by_90_and_180_degrees_is_exact_on_the_pixel_grid():
    x = batch(n=1, h=6, w=6)
    no = torch.tensor([False])
    quarter = flip_and_rotate(x, no, no, torch.tensor([90.0]))
    torch.testing.assert_close(quarter, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-5, rtol=0)
    wide = batch(n=1, h=4, w=9)
    half = flip_and_rotate(wide, no, no, torch.tensor([180.0]))
    torch.testing.assert_close(half, wide.flip(-1).flip(-2), atol=1e-5, rtol=0)
    # Non-square: the centred square turns like a square image would (no shear).
    wide = batch(n=1, h=4, w=8)
    quarter = flip_and_rotate(wide, no, no, torch.tensor([90.0]))[..., 2:6]
    expected = torch.rot90(wide[..., 2:6], k=1, dims=(-2, -1))
    torch.testing.assert_close(quarter, expected, atol=1e-5, rtol=0)


def test_flip_rotate_stays_within_each_samples_range():
    x = batch(n=16, h=12, w=12)
    out = augment_batch(x, "flip_rotate", gen(4), rotation_deg=45.0)
    assert not torch.equal(out, x)
    lo, hi = x.amin((1, 2, 3)), x.amax((1, 2, 3))
    assert (out.amin((1, 2, 3)) >= lo - 1e-5).all() and (out.amax((1, 2, 3)) <= hi + 1e-5).all()


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_channels_last_in_channels_last_out(kind):
    x = batch().contiguous(memory_format=torch.channels_last)
    out = augment_batch(x, kind, gen())
    assert out.is_contiguous(memory_format=torch.channels_last)
    if kind != "none":
        assert augment_batch(batch(), kind, gen()).is_contiguous()


def test_unknown_kind_names_the_value_and_the_allowed_ones():
    with pytest.raises(ValueError, match="'mixup'.*none, flip_shift, flip_rotate"):
        augment_batch(batch(), "mixup", gen())


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_labels_stay_paired_with_their_images(kind):
    # Each image is constant at its label's value; flips, shifts and rotations keep it so.
    labels = torch.arange(32) % 10
    images = labels.float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8).contiguous()
    perm = torch.randperm(len(labels), generator=gen(9))
    xb, yb = images[perm], labels[perm]
    out = augment_batch(xb, kind, gen(9), shift=0.25, rotation_deg=30.0)
    torch.testing.assert_close(out.mean((1, 2, 3)), yb.float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.amax((1, 2, 3)), yb.float(), atol=1e-5, rtol=0)
