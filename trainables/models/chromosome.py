"""The eight ChromosomeNet baselines (paper 004, Table 1), each with a new class head.

Six are torchvision's, two are timm's (Res2Net-50 26w4s and ResNeSt-50d, the variants
timm ships ImageNet weights for). ``pretrained=True`` loads ImageNet weights the library's
normal way and falls back to training from scratch, recorded, where none can be had.
A 1-channel stem is swapped in for grey inputs only when asked; the sweeps feed grey
chromosomes as 3 repeated channels so ImageNet stems stay usable.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import timm
from torch import nn
from torchvision import models as tvm

from trainables.models.api import (
    new_linear,
    register_model,
    replace_first_conv,
    with_pretrained_fallback,
)


def _tv(fn, weights, name: str, pretrained: bool) -> nn.Module:
    return with_pretrained_fallback(
        lambda w: fn(weights=weights.DEFAULT if w else None), pretrained, name
    )


def _resnet_family(fn, weights, name, *, num_classes, in_channels, pretrained) -> nn.Module:
    model = _tv(fn, weights, name, pretrained)
    model.conv1 = replace_first_conv(model.conv1, in_channels)
    model.fc = new_linear(model.fc, num_classes)
    return model


@register_model(min_input_size=32, imagenet="mobilenet_v2")
def mobilenet_v2(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    model = _tv(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, "mobilenet_v2", pretrained)
    model.features[0][0] = replace_first_conv(model.features[0][0], in_channels)
    model.classifier[1] = new_linear(model.classifier[1], num_classes)
    return model


@register_model(min_input_size=32, imagenet="densenet121")
def densenet121(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    model = _tv(tvm.densenet121, tvm.DenseNet121_Weights, "densenet121", pretrained)
    model.features.conv0 = replace_first_conv(model.features.conv0, in_channels)
    model.classifier = new_linear(model.classifier, num_classes)
    return model


@register_model(min_input_size=32, imagenet="resnet50")
def resnet50(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _resnet_family(
        tvm.resnet50,
        tvm.ResNet50_Weights,
        "resnet50",
        num_classes=num_classes,
        in_channels=in_channels,
        pretrained=pretrained,
    )


@register_model(min_input_size=32, imagenet="resnet101")
def resnet101(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _resnet_family(
        tvm.resnet101,
        tvm.ResNet101_Weights,
        "resnet101",
        num_classes=num_classes,
        in_channels=in_channels,
        pretrained=pretrained,
    )


@register_model(min_input_size=32, imagenet="resnet152")
def resnet152(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _resnet_family(
        tvm.resnet152,
        tvm.ResNet152_Weights,
        "resnet152",
        num_classes=num_classes,
        in_channels=in_channels,
        pretrained=pretrained,
    )


@register_model(min_input_size=32, imagenet="resnext101_32x8d")
def resnext101_32x8d(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _resnet_family(
        tvm.resnext101_32x8d,
        tvm.ResNeXt101_32X8D_Weights,
        "resnext101_32x8d",
        num_classes=num_classes,
        in_channels=in_channels,
        pretrained=pretrained,
    )


@functools.cache
def _hub_reachable(host: str = "huggingface.co") -> bool:
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _timm(arch: str, *, num_classes: int, in_channels: int, pretrained: bool) -> nn.Module:
    # timm rebuilds the head and adapts the stem itself (num_classes, in_chans).
    if pretrained and not _hub_reachable():
        # Cache only: without this the hub client retries for ~50 s per model offline.
        import huggingface_hub.constants

        huggingface_hub.constants.HF_HUB_OFFLINE = True
    # w: False, True (timm's own loading) or a checked local file (timm's file override)
    return with_pretrained_fallback(
        lambda w: timm.create_model(
            arch,
            pretrained=bool(w),
            pretrained_cfg_overlay={"file": str(w)} if isinstance(w, Path) else None,
            num_classes=num_classes,
            in_chans=in_channels,
        ),
        pretrained,
        f"timm/{arch}",
    )


@register_model(min_input_size=32, imagenet="timm/res2net50_26w_4s")
def res2net50(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _timm(
        "res2net50_26w_4s", num_classes=num_classes, in_channels=in_channels, pretrained=pretrained
    )


@register_model(min_input_size=32, imagenet="timm/resnest50d")
def resnest50(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return _timm(
        "resnest50d", num_classes=num_classes, in_channels=in_channels, pretrained=pretrained
    )
