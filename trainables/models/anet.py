"""AlexNet and ANet-c6: the networks of the ANet-c6 generalisation paper (000/001).

``alexnet`` is torchvision's AlexNet (the single-GPU variant: 64/192/384/256/256 filters,
no LRN, an adaptive 6x6 pool before the classifier), as the issue asks.

``anet_c6`` follows the paper's section 2 and Figure 1's caption: "six convolutional
layers, five pooling layers and three fully connected layers", "a LRN layer after
convolutional layer one and two", "after pooling layer five, there is a sixth
convolutional layer and pooling layer". The text leaves these open; our choices:

- Filters and kernels of conv1-conv5 are the original AlexNet's (Krizhevsky et al. 2012:
  96@11x11/4, 256@5x5, 384@3x3, 384@3x3, 256@3x3); conv6 is 256@3x3, padding 1.
- LRN as in AlexNet: size 5, alpha 1e-4, beta 0.75, k 2, after the ReLU.
- "Five pooling layers" *and* "after pooling layer five ... a sixth conv and pooling
  layer" cannot both hold if pools are numbered in order. We read "pooling layer five" as
  AlexNet's name ``pool5`` (the pool after conv5) and keep the stated count of five: the
  pools follow conv1, conv2, conv3 (the one pool AlexNet lacks), conv5 (``pool5``) and
  conv6. All are 3x3 stride 2 max-pools; pool1/pool2 are unpadded as in AlexNet, the
  three new ones pad by 1 (TensorFlow's ``SAME``, which the authors' TF 1.14 code would
  use), so at 227 px the maps are 55-27-13-7-7-7-4-4-2: a 2x2x256 feature map.
- The classifier is AlexNet's: dropout 0.5, FC 4096, ReLU, dropout 0.5, FC 4096, ReLU,
  FC classes; its input width is the flattened feature map at the configured input size
  (1024 at 227 px), so smaller CPU inputs need no upsampling of the feature map.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from trainables.models.api import (
    new_linear,
    register_model,
    replace_first_conv,
    with_pretrained_fallback,
)


@register_model(paper_input_size=227, min_input_size=63, imagenet="alexnet")
def alexnet(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool) -> nn.Module:
    model = with_pretrained_fallback(
        lambda w: tvm.alexnet(weights=tvm.AlexNet_Weights.DEFAULT if w else None),
        pretrained,
        "alexnet",
    )
    model.features[0] = replace_first_conv(model.features[0], in_channels)
    model.classifier[6] = new_linear(model.classifier[6], num_classes)
    return model


def _conv(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=pad), nn.ReLU(inplace=True)]


def _lrn() -> nn.Module:
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _pool(pad: int = 0) -> nn.Module:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=pad)


def anet_c6_features(in_channels: int) -> nn.Sequential:
    """The six conv / five pool trunk; see the module docstring for each choice."""
    return nn.Sequential(
        *_conv(in_channels, 96, 11, stride=4),
        _lrn(),
        _pool(),  # pool1
        *_conv(96, 256, 5, pad=2),
        _lrn(),
        _pool(),  # pool2
        *_conv(256, 384, 3, pad=1),
        _pool(pad=1),  # pool3: the pool AlexNet does not have
        *_conv(384, 384, 3, pad=1),
        *_conv(384, 256, 3, pad=1),
        _pool(pad=1),  # pool5 (AlexNet's name)
        *_conv(256, 256, 3, pad=1),  # conv6
        _pool(pad=1),  # pool6
    )


class ANetC6(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int):
        super().__init__()
        self.features = anet_c6_features(in_channels)
        with torch.no_grad():
            width = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(width, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_model(paper_input_size=227, min_input_size=35)
def anet_c6(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool) -> nn.Module:
    # No published weights exist: always from scratch, whatever ``pretrained`` says.
    model = ANetC6(num_classes, in_channels, image_size)
    model.weights_source = "scratch (no published weights)" if pretrained else "scratch"
    return model
