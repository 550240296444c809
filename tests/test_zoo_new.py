"""The inception and convnext zoo architectures: shapes, sizes, structure, prunability and their training recipe."""

import pytest
import torch
import torch_pruning as tp
from torch import nn

from benchmarks.train_zoo import ADAMW, EPOCHS, make_optimizer
from robustprune import zoo
from robustprune.structure import PruneSpace, export, masked
from robustprune.zoo.architectures import ARCHITECTURES, LayerNorm2d
from tests.helpers import randomize_norms

torch.set_num_threads(1)


def macs_and_params(model: nn.Module) -> tuple[float, int]:
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 1, 28, 28))
    return macs, params


@pytest.mark.parametrize("name", ["inception", "convnext"])
def test_in_the_zoo_with_a_trained_checkpoint(name):
    assert name in zoo.names() and zoo.checkpoint_path(name).is_file()
    entry = zoo.manifest()[name]
    assert entry["val_accuracy"] >= 0.9 and entry["test_accuracy"] >= 0.9  # the zoo's accuracy floor


@pytest.mark.parametrize("name", ["inception", "convnext"])
def test_forward_shape(name):
    model = zoo.build(name).eval()
    with torch.no_grad():
        y = model(torch.rand(3, 1, 28, 28))
    assert y.shape == (3, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "name, max_macs, params_range",
    [("inception", 40e6, (100_000, 300_000)), ("convnext", 40e6, (100_000, 500_000))],
)
def test_cost_is_small(name, max_macs, params_range):
    macs, params = macs_and_params(zoo.build(name))
    resnet_macs, _ = macs_and_params(zoo.build("resnet20"))
    assert 1e6 < macs <= min(max_macs, resnet_macs)  # no dearer than resnet20
    assert params_range[0] <= params <= params_range[1]


def test_inception_has_the_structures_it_stands_for():
    model = zoo.build("inception")
    kinds = [type(m) for m in model.modules()]
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    pointwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert nn.BatchNorm2d in kinds and depthwise and pointwise


def test_convnext_has_no_batchnorm_and_uses_layernorm_and_gelu():
    model = zoo.build("convnext")
    kinds = {type(m) for m in model.modules()}
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert {LayerNorm2d, nn.LayerNorm, nn.GELU} <= kinds
    depthwise_7x7 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (7, 7)]
    assert depthwise_7x7 and all(m.groups == m.in_channels for m in depthwise_7x7)


def test_layernorm2d_normalizes_each_pixel_over_channels():
    norm = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 6))
        norm.bias.copy_(torch.linspace(-1, 1, 6))
    x = torch.randn(2, 6, 5, 5)
    mean, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_inception_prune_space_masked_equals_export():
    torch.manual_seed(0)
    model = randomize_norms(zoo.build("inception"))
    space = PruneSpace(model, zoo.FASHION_MNIST_SPEC)
    assert any(grp.size == 64 for grp in space.groups) and len(space.groups) > 10
    g = torch.Generator().manual_seed(0)
    candidate = {
        grp.name: sorted(torch.randperm(grp.size, generator=g)[: max(1, grp.size // 2)].tolist())
        for grp in space.groups
    }
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad(), masked(space, candidate):
        y_masked = model(x)
    pruned = export(space, candidate)
    with torch.no_grad():
        y_pruned = pruned(x)
    assert (y_masked - y_pruned).abs().max().item() <= 1e-4 * max(1.0, y_masked.abs().max().item())
    macs, params = space.cost(candidate)
    assert params == sum(p.numel() for p in pruned.parameters()) < space.full_params


def test_train_recipe_covers_every_model():
    assert set(EPOCHS) == set(ARCHITECTURES)
    assert ADAMW <= set(EPOCHS)
    assert isinstance(make_optimizer("convnext", zoo.build("convnext")), torch.optim.AdamW)
    assert isinstance(make_optimizer("inception", zoo.build("inception")), torch.optim.SGD)
