"""Batch augmentation on the training device, after the Keras ImageDataGenerator settings of
the CIFAR-10 lab report.

Whole batches are transformed at once on whatever device holds them (no per-sample Python
loop, no CPU round trip of the images). The per-sample random numbers are drawn on the CPU
from the caller's ``torch.Generator`` and only then moved to the batch's device, so one seed
gives the same augmentation on CPU and GPU and the engine can checkpoint the generator state.

Kinds:
  - ``"none"``: no augmentation.
  - ``"flip_shift"``: Keras ``horizontal_flip=True, width_shift_range=0.1,
    height_shift_range=0.1`` with its default ``fill_mode="nearest"``. Shifts are whole
    pixels (Keras draws fractional ones and interpolates); nearest fill creates no new values.
  - ``"flip_rotate"``: horizontal and vertical flips plus a rotation of up to
    ``rotation_deg`` degrees, bilinear, nearest fill -- the variant the report found harmful.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "flip_shift", "flip_rotate")


def augment_batch(
    x: torch.Tensor,
    kind: str,
    gen: torch.Generator,
    *,
    shift: float = 0.1,
    rotation_deg: float = 20.0,
) -> torch.Tensor:
    """A randomly augmented copy of the ``N x C x H x W`` float batch ``x``; ``x`` is untouched.

    Output has the input's shape, dtype, device and memory format (channels_last stays so).
    ``shift`` is the largest move as a fraction of the side; ``rotation_deg`` the largest
    angle. Labels are not an argument: no kind changes which class an image shows.
    """
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augmentation {kind!r} is unknown; allowed: {', '.join(AUGMENTATIONS)}")
    if x.dim() != 4:
        raise ValueError(f"expected an N x C x H x W batch, got shape {tuple(x.shape)}")
    if gen.device.type != "cpu":
        raise ValueError("gen must be a CPU torch.Generator so results match across devices")
    if kind == "none":
        return x
    n, _, h, w = x.shape
    hflip = torch.rand(n, generator=gen) < 0.5
    if kind == "flip_shift":
        dy = _uniform_ints(n, round(shift * h), gen)
        dx = _uniform_ints(n, round(shift * w), gen)
        return flip_and_shift(x, hflip, dy, dx)
    vflip = torch.rand(n, generator=gen) < 0.5
    angle = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * rotation_deg
    return flip_and_rotate(x, hflip, vflip, angle)


def flip_and_shift(
    x: torch.Tensor, hflip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor
) -> torch.Tensor:
    """Flip left-right where ``hflip``, then move by whole pixels, edges replicated.

    ``hflip``, ``dy``, ``dx`` are per-sample (length N, any device); positive ``dx`` moves
    content right, positive ``dy`` down. Deterministic, so tests can check exact pixels.
    """
    n, _, h, w = x.shape
    dev = x.device
    dy, dx, hflip = dy.to(dev).long(), dx.to(dev).long(), hflip.to(dev).bool()
    # Output pixel (i, j) reads source (i - dy, j - dx); clamping is the nearest-edge fill.
    rows = (torch.arange(h, device=dev) - dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=dev) - dx[:, None]).clamp(0, w - 1)
    cols = torch.where(hflip[:, None], w - 1 - cols, cols)
    batch = torch.arange(n, device=dev)[:, None, None]
    # Advanced indexing on the NHWC view gathers every sample's crop in one kernel.
    out = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def flip_and_rotate(
    x: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, angle_deg: torch.Tensor
) -> torch.Tensor:
    """Flip where ``hflip`` / ``vflip``, then rotate by ``angle_deg`` about the centre.

    Bilinear sampling, border (nearest-edge) fill. The flips are exact index reversals; the
    rotation works in pixel units, so non-square images are rotated without shearing.
    """
    dev, fmt = x.device, _memory_format(x)  # before torch.where, which may change the layout
    hflip, vflip = hflip.to(dev).bool(), vflip.to(dev).bool()
    x = torch.where(hflip[:, None, None, None], x.flip(-1), x)
    x = torch.where(vflip[:, None, None, None], x.flip(-2), x)
    theta = _rotation_theta(angle_deg.detach().cpu().double(), *x.shape[-2:])
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.contiguous(memory_format=fmt)


def _rotation_theta(angle_deg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """N x 2 x 3 affine_grid matrices rotating about the centre in pixel space.

    affine_grid works in [-1, 1] coordinates per axis, so a plain rotation matrix would
    shear a non-square image; the aspect factors undo that.
    """
    rad = angle_deg * (math.pi / 180)
    cos, sin = rad.cos(), rad.sin()
    zero = torch.zeros_like(rad)
    row_x = torch.stack([cos, -sin * (h / w), zero], dim=-1)
    row_y = torch.stack([sin * (w / h), cos, zero], dim=-1)
    return torch.stack([row_x, row_y], dim=1)


def _uniform_ints(n: int, bound: int, gen: torch.Generator) -> torch.Tensor:
    """n integers uniform on [-bound, bound], drawn on the CPU from ``gen``."""
    return torch.randint(-bound, bound + 1, (n,), generator=gen)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last only when ``x`` is laid out that way and not also plain-contiguous."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
