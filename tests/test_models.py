"""The model registry: every registered model builds, trains a step and evaluates at each
budget's input shape; weights load from a local file."""

from __future__ import annotations

import pytest
import torch

from sweeps.anet_generalization import SWEEP as ANET
from sweeps.chromosome_baselines import SWEEP as CHROMOSOME
from sweeps.cifar_cnns import SWEEP as KERAS
from sweeps.mnist_optimizers import SWEEP as MNIST
from trainables.engine import classification_loss
from trainables.models import MODELS, build_model, forward_flops, get_spec, list_models
from trainables.registry import Registry

# (model, input side) for every model of every sweep at every budget's input shape
SHAPES = sorted(
    {
        (m, b.image_size)
        for sw in (MNIST, CHROMOSOME)
        for b in sw.budgets.values()
        for m in sw.models
    }
    | {
        (c["model"], c["image_size"])
        for sw in (ANET, KERAS)
        for b in sw.budgets.values()
        for c in sw.cells(b).values()
    }
)


def test_registry_lists_the_paper_models():
    assert {"vgg16", "googlenet", "resnet18"} <= set(list_models())


def test_registry_rejects_duplicates_and_names_allowed():
    reg = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", 2)
    with pytest.raises(KeyError, match="allowed: a"):
        reg.get("b")


def test_every_registered_model_is_in_a_sweep():
    assert {m for m, _ in SHAPES} == set(list_models())


@pytest.mark.parametrize(("name", "size"), SHAPES)
def test_forward_backward_at_budget_shapes(name, size):
    torch.manual_seed(0)
    model = build_model(name, num_classes=24, in_channels=3, image_size=size)
    x, y = torch.randn(2, 3, size, size), torch.tensor([1, 23])
    model.train()
    loss, _, logits = classification_loss(model(x), y, get_spec(name).aux_loss_weight)
    assert logits.shape == (2, 24)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 24)


def test_googlenet_aux_heads_count_in_training_only():
    torch.manual_seed(0)
    model = build_model("googlenet", num_classes=10, image_size=64)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and len(out) == 3
    total, main_loss, logits = classification_loss(out, y, 0.3)
    main = torch.nn.functional.cross_entropy(logits, y)
    aux = sum(torch.nn.functional.cross_entropy(a, y) for a in out[1:])
    assert torch.allclose(total, main + 0.3 * aux)
    assert torch.allclose(main_loss, main)


def test_vgg16_is_torchvisions_at_224_and_small_head_at_32():
    big = build_model("vgg16", num_classes=10, image_size=224)
    small = build_model("vgg16", num_classes=10, image_size=32)
    assert big.classifier[0].in_features == 512 * 7 * 7
    assert small.classifier[0].in_features == 512
    assert big.classifier[6].out_features == small.classifier[6].out_features == 10


def test_one_channel_stem():
    model = build_model("resnet18", num_classes=10, in_channels=1, image_size=32)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_too_small_input_is_an_error():
    with pytest.raises(ValueError, match="image_size=16 is too small for vgg16"):
        build_model("vgg16", num_classes=10, image_size=16)


def test_local_weights_file_initialises_all_but_the_head(tmp_path):
    torch.manual_seed(1)
    source = build_model("resnet18", num_classes=1000, image_size=32)  # like ImageNet weights
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    model = build_model("resnet18", num_classes=10, image_size=32, weights_path=str(path))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert model.fc.weight.shape == (10, 512)  # the 1000-class head was skipped


def test_weights_file_that_matches_nothing_is_an_error(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"nope": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no tensor"):
        build_model("resnet18", num_classes=10, image_size=32, weights_path=str(path))


def test_every_spec_has_sane_sizes():
    for name in MODELS.names():
        spec = get_spec(name)
        assert spec.min_input_size <= spec.paper_input_size


def test_forward_flops_counts_a_known_model_and_ranks_costs():
    # torchvision lists ResNet-18 at 1.81 GMACs per 224 px image: 3.63 GFLOPs
    assert 3.6e9 < forward_flops("resnet18", image_size=224) < 3.66e9
    small = {m: forward_flops(m, image_size=32) for m in ("vgg16", "googlenet", "resnet18")}
    assert small["vgg16"] > 5 * max(small["googlenet"], small["resnet18"])
