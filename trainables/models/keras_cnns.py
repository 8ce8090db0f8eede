"""The CNNs of the Keras CIFAR-10 lab report (paper 002), in PyTorch.

The report gives the layer sequence but no filter counts or dense widths (its Figures 4
and 5 are not in the text). Where it is silent we use the Keras examples such reports are
built from, and say so here:

- ``simple_cnn`` (its Fig. 4, used for MNIST and CIFAR-10): conv 32@3x3, max-pool 2,
  conv 64@3x3, conv 64@3x3, max-pool 2, dense 100, dense classes; ReLU, Keras ``valid``
  padding. ``simple_cnn_dropout`` adds "two dropout layers before and after the fully
  connected layer" (rate 0.5, which the report does not give).
- ``vgg_blocks`` (its Fig. 5): three blocks of two 3x3 ``same`` convs (32, 64, 128
  filters), max-pool 2 and dropout 0.2, then a dense block (dense 128, dropout 0.2) and
  the classifier. ``vgg_blocks_bn`` puts batch-norm after each conv and the dense layer
  (after the ReLU, as ``Conv2D(activation="relu")`` followed by ``BatchNormalization``).
- Transfer (``resnet50_transfer``, ``vgg19_transfer``, ``*_bn``): torchvision's ImageNet
  backbone without its classifier (Keras ``include_top=False, pooling="avg"``), then a new
  head: dense 256, ReLU, [batch-norm], dropout 0.5, dense classes. The whole network is
  fine-tuned (the report's lr 1e-4 "since only fine tuning was needed"). ImageNet weights
  are used when they can be had; otherwise the run starts from scratch and
  ``weights_source`` records it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from trainables.models.api import register_model, replace_first_conv, with_pretrained_fallback


def _flat_width(features: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, in_channels, image_size, image_size)).flatten(1).shape[1]


class Sequential2(nn.Module):
    """features -> flatten -> classifier: the Keras ``Sequential`` shape of these models."""

    def __init__(self, features: nn.Module, classifier: nn.Module):
        super().__init__()
        self.features, self.classifier = features, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def simple_cnn_model(num_classes: int, in_channels: int, image_size: int, dropout: float):
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
    width = _flat_width(features, in_channels, image_size)

    def drop() -> list[nn.Module]:
        return [nn.Dropout(dropout)] if dropout else []

    classifier = nn.Sequential(
        *drop(), nn.Linear(width, 100), nn.ReLU(inplace=True), *drop(), nn.Linear(100, num_classes)
    )
    return Sequential2(features, classifier)


@register_model(paper_input_size=32, min_input_size=16)
def simple_cnn(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return simple_cnn_model(num_classes, in_channels, image_size, dropout=0.0)


@register_model(paper_input_size=32, min_input_size=16)
def simple_cnn_dropout(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return simple_cnn_model(num_classes, in_channels, image_size, dropout=0.5)


def vgg_blocks_model(num_classes: int, in_channels: int, image_size: int, bn: bool):
    def block(cin: int, cout: int) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers += [nn.Conv2d(c, cout, 3, padding=1), nn.ReLU(inplace=True)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
        return [*layers, nn.MaxPool2d(2), nn.Dropout(0.2)]

    features = nn.Sequential(*block(in_channels, 32), *block(32, 64), *block(64, 128))
    width = _flat_width(features, in_channels, image_size)
    dense = [nn.Linear(width, 128), nn.ReLU(inplace=True)]
    if bn:
        dense.append(nn.BatchNorm1d(128))
    classifier = nn.Sequential(*dense, nn.Dropout(0.2), nn.Linear(128, num_classes))
    return Sequential2(features, classifier)


@register_model(paper_input_size=32, min_input_size=8)
def vgg_blocks(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return vgg_blocks_model(num_classes, in_channels, image_size, bn=False)


@register_model(paper_input_size=32, min_input_size=8)
def vgg_blocks_bn(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return vgg_blocks_model(num_classes, in_channels, image_size, bn=True)


def transfer_head(width: int, num_classes: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(width, 256), nn.ReLU(inplace=True)]
    if bn:
        layers.append(nn.BatchNorm1d(256))
    return nn.Sequential(*layers, nn.Dropout(0.5), nn.Linear(256, num_classes))


def resnet50_transfer_model(num_classes: int, in_channels: int, pretrained: bool, bn: bool):
    net = with_pretrained_fallback(
        lambda w: tvm.resnet50(weights=tvm.ResNet50_Weights.DEFAULT if w else None),
        pretrained,
        "resnet50",
    )
    net.conv1 = replace_first_conv(net.conv1, in_channels)
    net.fc = transfer_head(net.fc.in_features, num_classes, bn)  # after the global avg-pool
    return net


def vgg19_transfer_model(num_classes: int, in_channels: int, pretrained: bool, bn: bool):
    net = with_pretrained_fallback(
        lambda w: tvm.vgg19(weights=tvm.VGG19_Weights.DEFAULT if w else None),
        pretrained,
        "vgg19",
    )
    net.features[0] = replace_first_conv(net.features[0], in_channels)
    net.avgpool = nn.AdaptiveAvgPool2d(1)  # Keras pooling="avg"
    net.classifier = transfer_head(512, num_classes, bn)
    return net


@register_model(paper_input_size=32, min_input_size=32, imagenet="resnet50")
def resnet50_transfer(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return resnet50_transfer_model(num_classes, in_channels, pretrained, bn=False)


@register_model(paper_input_size=32, min_input_size=32, imagenet="resnet50")
def resnet50_transfer_bn(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return resnet50_transfer_model(num_classes, in_channels, pretrained, bn=True)


@register_model(paper_input_size=32, min_input_size=32, imagenet="vgg19")
def vgg19_transfer(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return vgg19_transfer_model(num_classes, in_channels, pretrained, bn=False)


@register_model(paper_input_size=32, min_input_size=32, imagenet="vgg19")
def vgg19_transfer_bn(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool):
    return vgg19_transfer_model(num_classes, in_channels, pretrained, bn=True)
