"""ANet-c6 as the paper describes it, and the Keras report's networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import build_model
from trainables.models.anet import anet_c6_features


def count(model: nn.Module, kind) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_anet_c6_layer_counts_match_the_paper():
    net = build_model("anet_c6", num_classes=24, image_size=227)
    assert count(net, nn.Conv2d) == 6
    assert count(net, nn.MaxPool2d) == 5
    assert count(net, nn.Linear) == 3
    assert count(net, nn.LocalResponseNorm) == 2
    layers = list(net.features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    lrns = [i for i, m in enumerate(layers) if isinstance(m, nn.LocalResponseNorm)]
    # LRN follows conv1 and conv2 (after their ReLU), nothing else
    assert lrns == [convs[0] + 2, convs[1] + 2]
    # conv6 and a pool come after the pool that follows conv5 ("pool5")
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    assert convs[4] < pools[3] < convs[5] < pools[4] == len(layers) - 1


@pytest.mark.parametrize(
    ("size", "classes", "side"), [(227, 24, 2), (227, 10, 2), (67, 10, 1), (35, 10, 1)]
)
def test_anet_c6_shapes(size, classes, side):
    net = build_model("anet_c6", num_classes=classes, image_size=size).eval()
    feats = anet_c6_features(3)(torch.zeros(1, 3, size, size))
    assert feats.shape == (1, 256, side, side)
    assert net(torch.zeros(2, 3, size, size)).shape == (2, classes)
    # 227 px: the feature maps the module docstring lists
    if size == 227:
        sides, x = [], torch.zeros(1, 3, 227, 227)
        for m in net.features:
            x = m(x)
            if isinstance(m, nn.Conv2d | nn.MaxPool2d):
                sides.append(x.shape[-1])
        assert sides == [55, 27, 27, 13, 13, 7, 7, 7, 4, 4, 2]


def test_anet_c6_from_scratch_even_when_pretrained_asked():
    net = build_model("anet_c6", num_classes=10, image_size=67, pretrained=True)
    assert net.weights_source.startswith("scratch")


@pytest.mark.parametrize(
    ("name", "convs", "bns", "dropouts"),
    [
        ("simple_cnn", 3, 0, 0),
        ("simple_cnn_dropout", 3, 0, 2),
        ("vgg_blocks", 6, 0, 4),
        ("vgg_blocks_bn", 6, 7, 4),
    ],
)
def test_keras_report_networks(name, convs, bns, dropouts):
    net = build_model(name, num_classes=10, image_size=32)
    assert count(net, nn.Conv2d) == convs
    assert count(net, nn.BatchNorm2d) + count(net, nn.BatchNorm1d) == bns
    assert count(net, nn.Dropout) == dropouts
    assert net.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet50_transfer_bn", "vgg19_transfer"])
def test_transfer_models_get_a_new_head_and_record_weights(name, tmp_path):
    net = build_model(name, num_classes=10, image_size=32, pretrained=False)
    assert net.weights_source == "scratch"
    head = net.fc if name.startswith("resnet") else net.classifier
    assert head[-1].out_features == 10 and head[0].out_features == 256
    assert count(head, nn.BatchNorm1d) == (1 if name.endswith("_bn") else 0)
    # the local-weights path: a state_dict saved here initialises the backbone
    torch.save(net.state_dict(), tmp_path / "w.pt")
    again = build_model(name, num_classes=10, image_size=32, weights_path=str(tmp_path / "w.pt"))
    assert again.weights_source == "file:w.pt"
