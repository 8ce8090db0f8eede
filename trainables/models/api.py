"""The model registry and the helpers model families share.

Kept apart from the families (as torchvision's ``models/_api.py``): a family module
imports this one and registers its builders; :mod:`trainables.models` imports every
family, so nothing imports in a circle.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

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


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    *, paper_input_size: int = 224, min_input_size: int = 32, aux_loss_weight: float = 0.0
):
    """Decorator registering a builder under its function name."""

    def wrap(fn: Builder) -> Builder:
        name = fn.__name__  # type: ignore[attr-defined]
        MODELS.add(name, ModelSpec(name, fn, paper_input_size, min_input_size, aux_loss_weight))
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
) -> nn.Module:
    """Build a registered model; ``weights_path`` loads a local state_dict on top.

    The local file is how users without network access (or with their own ImageNet
    weights) start from pretrained weights: it is loaded with ``weights_only=True`` and
    tensors whose shape does not match (the classifier head, a 1-channel stem) are
    skipped, so a 1000-class ImageNet file initialises a 10-class model.
    """
    spec = get_spec(name)
    size = image_size or spec.paper_input_size
    if size < spec.min_input_size:
        raise ValueError(
            f"image_size={size} is too small for {name}; allowed: >= {spec.min_input_size}"
        )
    model = spec.builder(
        num_classes=num_classes, in_channels=in_channels, image_size=size, pretrained=pretrained
    )
    if weights_path:
        load_matching_weights(model, weights_path)
        model.weights_source = f"file:{Path(weights_path).name}"
    return model


def with_pretrained_fallback(
    build: Callable[[bool], nn.Module], pretrained: bool, label: str
) -> nn.Module:
    """``build(True)`` loads ImageNet weights the library's normal way (network or cache).

    Where they cannot be had (no network, no cache) the model is built from scratch rather
    than failing the sweep, and ``model.weights_source`` says so; it ends up in the
    trial's results and MLflow tags, so nobody mistakes a from-scratch number for a
    fine-tuned one.
    """
    if pretrained:
        try:
            model = build(True)
            model.weights_source = f"imagenet:{label}"
            return model
        except Exception as exc:  # URLError, HF hub errors, missing cache: all the same here
            warnings.warn(
                f"{label}: ImageNet weights unavailable ({exc}); training from scratch",
                stacklevel=2,
            )
            source = f"scratch (ImageNet weights unavailable: {type(exc).__name__})"
    else:
        source = "scratch"
    model = build(False)
    model.weights_source = source
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
