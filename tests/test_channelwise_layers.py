"""Per-channel layers that mix no channels (PReLU, instance norm): sliced with their group, exact, searchable."""

import pytest
import torch
from torch import nn

from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, load_pruned, save_pruned
from robustprune.structure.analysis import terminal_members
from tests.test_layernorm import assert_masked_equals_export, random_half

SPEC = InputSpec(shape=(3, 16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=5)

LAYERS = {
    "prelu_shared": lambda c: nn.PReLU(),
    "prelu_per_channel": lambda c: nn.PReLU(c),
    "instance_norm": lambda c: nn.InstanceNorm2d(c),
    "instance_norm_affine": lambda c: nn.InstanceNorm2d(c, affine=True),
    "instance_norm_statistics": lambda c: nn.InstanceNorm2d(c, affine=True, track_running_stats=True),
}


class Net(nn.Module):
    """conv -> BN -> layer -> conv -> layer, a residual add, then a head: the layer after a member, an add
    and a concat-free chain (a face-recognition or style-transfer block in miniature)."""

    def __init__(self, make) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), make(16)
        self.conv2, self.act2 = nn.Conv2d(16, 16, 3, padding=1), make(16)
        self.conv3 = nn.Conv2d(16, 12, 3, stride=2, padding=1)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = x + self.act2(self.conv2(x))
        return self.head(torch.relu(self.conv3(x)).mean((2, 3)))


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    model = Net(LAYERS[kind]).eval()
    with torch.no_grad():  # away from the defaults, so a wrongly sliced slope or statistic shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.PReLU | nn.InstanceNorm2d):
                for p in module.parameters():
                    p.uniform_(-0.5, 1.5)
                for name in ("running_mean", "running_var"):
                    if getattr(module, name, None) is not None:
                        getattr(module, name).uniform_(0.2, 1.5)
    return model


@pytest.mark.parametrize("kind", list(LAYERS))
def test_channelwise_layers_are_pruned_exactly_with_their_group(kind):
    model = build(kind)
    space = PruneSpace(model, SPEC)
    carries = kind != "prelu_shared" and kind != "instance_norm"  # a state of one value per channel
    group = next(g for g in space.groups if "conv1" in g.members)  # the residual group: conv1, conv2, ...
    assert ("act1" in group.members) == (kind != "prelu_shared")
    pruned = assert_masked_equals_export(space, random_half(space))
    if carries:
        sliced = next(p for n, p in pruned.named_parameters() if n.startswith("act1"))
        assert sliced.shape[0] == len(random_half(space)[group.name])


def test_a_shared_slope_prelu_called_everywhere_is_element_wise():
    class Reuses(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.PReLU()  # one module, one slope, called after every conv
            self.a, self.b, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Linear(8, 5)

        def forward(self, x):
            return self.head(self.act(self.b(self.act(self.a(x)))).mean((2, 3)))

    space = PruneSpace(Reuses().eval(), SPEC)
    assert sorted(space.group_names()) == ["a", "b"]
    assert_masked_equals_export(space, random_half(space))


@pytest.mark.parametrize("make", [lambda: nn.PReLU(), lambda: nn.PReLU(8), lambda: nn.ReLU()])
def test_a_flatten_into_the_head_after_a_prelu_is_pruned_exactly(make):
    # torch's prelu kernel reshapes its slope: read as a reshape of the channels, the flatten mapped none of them
    torch.manual_seed(0)
    chain = nn.Sequential(nn.Conv2d(3, 8, 3), make(), nn.Flatten(), nn.Linear(8 * 14 * 14, 5)).eval()
    space = PruneSpace(chain, SPEC)  # verified: refused before when the PReLU had one slope
    assert space.group("0").consumers == ("3",)
    pruned = assert_masked_equals_export(space, random_half(space))
    assert pruned[3].in_features == len(random_half(space)["0"]) * 14 * 14
    assert isinstance(chain[1].forward, type(chain.forward))  # the slope's own forward is back


def test_importance_reads_the_channelwise_layer_consumers_read():
    chain = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.PReLU(8), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 144, 5)
    )
    space = PruneSpace(chain.eval(), SPEC)
    group = next(g for g in space.groups if "2" in g.members)
    assert set(group.members) == {"0", "1", "2"} and terminal_members(space, group) == {"2"}


def test_an_instance_norm_model_searches_uncompensated_exports_and_reloads(tmp_path):
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.InstanceNorm2d(16, affine=True, track_running_stats=True),
        nn.PReLU(16),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.InstanceNorm2d(16, affine=True),
        nn.PReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    ).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = SearchConfig(
        target_macs=0.7,
        steps=2,
        trials=3,
        probes=ProbeConfig(synthetic=SyntheticConfig(n=16, steps=3, batch_size=16), attack_steps=1, n_undesired=8),
    )
    assert config.resolve(PruneSpace(model, SPEC)).compensation == ()  # per-channel normalization: no merge
    result = search(model, SPEC, config=config, cache_dir=tmp_path / "cache", quiet=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.target_reached and result.space.cost(result.candidate)[0] < result.space.full_macs
    save_pruned(tmp_path / "run", result.space, result.candidate, result.model)
    reloaded, _, _ = load_pruned(tmp_path / "run", build=lambda: model)
    x = torch.randn(4, *SPEC.shape)
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model(x))


def test_an_instance_norm_is_scored_as_the_group_norm_that_computes_the_same():
    from robustprune.criteria import channel_scores

    def net(norm: nn.Module) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 6, 3), norm, nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.LazyLinear(5))
        model(torch.zeros(1, *SPEC.shape))
        with torch.no_grad():
            model[1].weight.copy_(torch.linspace(0.2, 2.0, 6))
            model[1].bias.copy_(torch.linspace(-1.0, 1.0, 6))
        return model.eval()

    instance, group = net(nn.InstanceNorm2d(6, affine=True)), net(nn.GroupNorm(6, 6))
    x = torch.rand(2, *SPEC.shape)
    with torch.no_grad():
        assert torch.allclose(instance(x), group(x), atol=1e-5)  # one normalization per sample and channel
    scores = [channel_scores(PruneSpace(m, SPEC), "0", "merge_saliency") for m in (instance, group)]
    assert torch.allclose(*scores)
