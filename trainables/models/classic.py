"""VGG-16, GoogLeNet and ResNet-18: the three networks of the deep-networks MNIST paper.

All three are torchvision's architectures. At the paper's 224 px they are exactly
torchvision's models. For small CPU inputs (32 px) one documented change is made:
VGG-16's classifier is sized for the feature map the input really produces (1x1x512 at
32 px) instead of upsampling it to 7x7 and feeding torchvision's 25088x4096 layer, which
would spend most of the compute on 49 copies of the same value.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from trainables.models.api import (
    new_linear,
    register_model,
    replace_first_conv,
    with_pretrained_fallback,
)


@register_model(paper_input_size=224, min_input_size=32, imagenet="vgg16")
def vgg16(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool) -> nn.Module:
    model = with_pretrained_fallback(
        lambda w: tvm.vgg16(weights=tvm.VGG16_Weights.DEFAULT if w else None), pretrained, "vgg16"
    )
    model.features[0] = replace_first_conv(model.features[0], in_channels)
    side = image_size // 32  # five 2x2 max-pools
    if side != 7:
        # Small-input variant: classifier sized for the real side x side x 512 map.
        model.avgpool = nn.AdaptiveAvgPool2d((side, side))
        model.classifier[0] = nn.Linear(512 * side * side, 4096)
    model.classifier[6] = new_linear(model.classifier[6], num_classes)
    return model


@register_model(paper_input_size=224, min_input_size=32, aux_loss_weight=0.3, imagenet="googlenet")
def googlenet(
    *, num_classes: int, in_channels: int, image_size: int, pretrained: bool
) -> nn.Module:
    # aux_logits=True: in training mode the forward returns (logits, aux2, aux1) and the
    # engine adds 0.3 x each auxiliary loss (Szegedy et al.); in eval mode only logits.
    model = with_pretrained_fallback(
        lambda w: (
            tvm.googlenet(weights=tvm.GoogLeNet_Weights.DEFAULT, aux_logits=True)
            if w
            else tvm.googlenet(weights=None, aux_logits=True, init_weights=True)
        ),
        pretrained,
        "googlenet",
    )
    model.transform_input = False  # our data pipeline normalises with the dataset's stats
    model.conv1.conv = replace_first_conv(model.conv1.conv, in_channels)
    model.fc = new_linear(model.fc, num_classes)
    model.aux1.fc2 = new_linear(model.aux1.fc2, num_classes)
    model.aux2.fc2 = new_linear(model.aux2.fc2, num_classes)
    return model


@register_model(paper_input_size=224, min_input_size=32, imagenet="resnet18")
def resnet18(*, num_classes: int, in_channels: int, image_size: int, pretrained: bool) -> nn.Module:
    model = with_pretrained_fallback(
        lambda w: tvm.resnet18(weights=tvm.ResNet18_Weights.DEFAULT if w else None),
        pretrained,
        "resnet18",
    )
    model.conv1 = replace_first_conv(model.conv1, in_channels)
    model.fc = new_linear(model.fc, num_classes)
    return model
