"""The model registry and the helpers model families share.

Kept apart from the families (as torchvision's ``models/_api.py``): a family module
imports this one and registers its builders; :mod:`trainables.models` imports every
family, so nothing imports in a circle.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from trainables.models import weights
from trainables.registry import Registry


class Builder(Protocol):
    def __call__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        image_size: int,
        pretrained: bool,
    ) -> nn.Module: ...


@dataclass(frozen=True)
class ModelSpec:
    """A registered model and the facts the data pipeline and validation need."""

    name: str
    builder: Builder
    paper_input_size: int  # the input side the architecture was designed for
    min_input_size: int  # smallest input side whose feature map is still >= 1x1
    aux_loss_weight: float = 0.0  # weight of auxiliary-head losses in training
    # the label of its ImageNet weights ("mobilenet_v2", "timm/resnest50d"); None: none exist
    imagenet: str | None = None


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    *,
    paper_input_size: int = 224,
    min_input_size: int = 32,
    aux_loss_weight: float = 0.0,
    imagenet: str | None = None,
):
    """Decorator registering a builder under its function name; ``imagenet`` names the
    ImageNet weights its ``pretrained=True`` loads (what ``cnnsweep weights`` lists)."""

    def wrap(fn: Builder) -> Builder:
        name = fn.__name__  # type: ignore[attr-defined]
        spec = ModelSpec(name, fn, paper_input_size, min_input_size, aux_loss_weight, imagenet)
        MODELS.add(name, spec)
        return fn

    return wrap


def list_models() -> list[str]:
    return MODELS.names()


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    pretrained: bool = False,
    weights_path: str | None = None,
    weights_dir: str | None = None,
) -> nn.Module:
    """Build a registered model; ``weights_path`` loads a local state_dict on top.

    ``weights_dir`` is searched first for the ImageNet weights ``pretrained`` asks for
    (:mod:`trainables.models.weights`). The ``weights_path`` file is how users start from
    their own weights: it is loaded with ``weights_only=True`` and tensors whose shape
    does not match (the classifier head, a 1-channel stem) are skipped, so a 1000-class
    ImageNet file initialises a 10-class model. ``model.weights_sha256`` records the
    file read (None: from scratch).
    """
    spec = get_spec(name)
    size = image_size or spec.paper_input_size
    if size < spec.min_input_size:
        raise ValueError(
            f"image_size={size} is too small for {name}; allowed: >= {spec.min_input_size}"
        )
    with weights.searching(weights_dir):
        model = spec.builder(
            num_classes=num_classes, in_channels=in_channels, image_size=size, pretrained=pretrained
        )
    if weights_path:
        found = weights.check_file(Path(weights_path))
        load_matching_weights(model, weights_path)
        model.weights_source = f"file:{Path(weights_path).name}"
        model.weights_sha256 = found.sha256
    return model


def forward_flops(
    name: str, *, image_size: int, in_channels: int = 3, num_classes: int = 10
) -> int:
    """FLOPs of one image's forward pass (a multiply-add counts 2), counted on the meta
    device: no memory, no weights, under a second per model (ResNet-152 at 224 px: 1 s on
    2 cores). A model's relative cost, for ordering trials (:func:`sweeps.asha.trial_order`)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = get_spec(name)
    with torch.device("meta"):
        model = spec.builder(
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            pretrained=False,
        )
        x = torch.empty(1, in_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops()


def with_pretrained_fallback(
    build: Callable[[bool | Path], nn.Module], pretrained: bool, label: str
) -> nn.Module:
    """A model with ``label``'s ImageNet weights: from the weights folder, else the library.

    ``build(w)``: ``False`` builds from scratch, ``True`` loads ImageNet weights the
    library's normal way (its cache or the network), a ``Path`` is a checked file from the
    weights folder (torchvision builders read it through torch.hub, as for ``True``;
    timm's pass it as ``pretrained_cfg_overlay={"file": w}``). A file that fails its
    check is an error, never a silent fallback. Where no weights can be had (no file, no
    network, no cache) the model is built from scratch rather than failing the sweep,
    and ``model.weights_source`` says so; it ends up in the trial's results and MLflow
    tags, so nobody mistakes a from-scratch number for a fine-tuned one.
    """
    found = weights.find_in_use(label) if pretrained else None
    if found is not None:
        timm = label.startswith("timm/")
        with contextlib.nullcontext() if timm else weights.torchvision_reads(found, label):
            model = build(found.path)
        return _recorded(model, f"imagenet:{label} (file {found.path.name})", found.sha256)
    if pretrained:
        try:
            model = build(True)
            cached = weights.cached(label)
            return _recorded(
                model, f"imagenet:{label}", weights.file_sha256(cached) if cached else None
            )
        except Exception as exc:  # URLError, HF hub errors, missing cache: all the same here
            warnings.warn(
                f"{label}: ImageNet weights unavailable ({exc}); training from scratch",
                stacklevel=2,
            )
            source = f"scratch (ImageNet weights unavailable: {type(exc).__name__})"
    else:
        source = "scratch"
    return _recorded(build(False), source, None)


def _recorded(model: nn.Module, source: str, sha256: str | None) -> nn.Module:
    model.weights_source = source
    model.weights_sha256 = sha256
    return model


def new_linear(linear: nn.Linear, num_classes: int) -> nn.Linear:
    """A fresh classifier layer with the same input width."""
    return nn.Linear(linear.in_features, num_classes)


def load_matching_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load every tensor of a state_dict file whose name and shape match; return skipped names."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a checkpoint written by this project's engine
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"no tensor in {path} matches the model's parameters")
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))


def replace_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A stem conv for ``in_channels`` inputs with the same geometry (for 1-channel data)."""
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
