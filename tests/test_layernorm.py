"""LayerNorm and GroupNorm models: prune space, masks, exclude, compensation without BN, search end to end."""

import pytest
import torch
from torch import nn

from robustprune.compensate import bias_overrides, consumer_input_means
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search
from robustprune.select import select_keep
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, load_pruned, masked, save_pruned
from robustprune.structure.space import UnsupportedModelError
from tests.helpers import randomize_norms

SPEC = InputSpec(shape=(3, 16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=5)


class Block(nn.Module):
    """torchvision's CNBlock layout: depthwise conv, permute to NHWC, LayerNorm + Linear 4x + GELU + Linear,
    permute back, layer scale (a free parameter), residual add."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.rand(dim, 1, 1) + 0.5)

    def forward(self, x):
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.fc2(nn.functional.gelu(self.fc1(y))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class TinyConvNeXt(nn.Module):
    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks = nn.Sequential(Block(dim), Block(dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.stem(x)).mean((2, 3))))


def tiny_convnext() -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(TinyConvNeXt())


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.gn1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.conv2, self.gn2 = nn.Conv2d(16, 12, 3, padding=1), nn.GroupNorm(1, 12)
        self.fc = nn.Linear(12 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        x = torch.relu(self.gn2(self.conv2(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 2).flatten(1))


def random_half(space: PruneSpace, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: sorted(torch.randperm(grp.size, generator=g)[: grp.size // 2].tolist()) for grp in space.groups}


def assert_masked_equals_export(space: PruneSpace, candidate: dict) -> nn.Module:
    x = torch.randn(3, *space.spec.shape)
    with torch.no_grad(), masked(space, candidate):
        y_masked = space.model(x)
    pruned = export(space, candidate)
    with torch.no_grad():
        y_pruned = pruned(x)
    assert (y_masked - y_pruned).abs().max().item() <= 1e-5 * max(1.0, y_masked.abs().max().item())
    assert space.cost(candidate)[1] == sum(p.numel() for p in pruned.parameters())
    return pruned


def test_channels_last_layernorm_groups_are_pruned_exactly():
    model = tiny_convnext()
    space = PruneSpace(model, SPEC)
    stream = next(g for g in space.groups if "blocks.0.norm" in g.members)
    assert {"stem", "blocks.0.norm", "blocks.1.norm", "blocks.0.fc2", "norm"} <= set(stream.members)
    assert space.channel_axes["blocks.0.norm"] == -1 and space.channel_axes["stem"] == 1
    pruned = assert_masked_equals_export(space, random_half(space))
    assert pruned.blocks[0].norm.normalized_shape == (4,) and pruned.blocks[0].layer_scale.shape == (4, 1, 1)


def test_masked_layernorm_renormalizes_over_the_kept_channels_only():
    model = tiny_convnext()
    space = PruneSpace(model, SPEC)
    candidate = random_half(space, seed=1)
    x = torch.randn(2, *SPEC.shape)
    with torch.no_grad():
        plain = model(x)
        with masked(space, candidate):
            y = model(x)
    assert not torch.allclose(plain, y)  # the candidate matters
    with torch.no_grad():
        assert torch.equal(model(x), plain)  # and the hooks are gone


def test_exclude_protects_a_layernorm_group_and_leaves_the_expansions_prunable():
    model = tiny_convnext()
    full = PruneSpace(model, SPEC)
    space = PruneSpace(model, SPEC, exclude=["blocks.0.norm"])
    names = space.group_names()
    assert not any("blocks.0.norm" in g.members for g in space.groups)
    assert {"blocks.0.fc1", "blocks.1.fc1"} <= set(names) and len(names) == len(full.groups) - 1
    assert_masked_equals_export(space, random_half(space))


def test_groupnorm_keeps_the_same_count_in_each_of_its_groups():
    torch.manual_seed(0)
    model = randomize_norms(GroupNormNet())
    space = PruneSpace(model, SPEC)
    blocks = {g.name: g.blocks for g in space.groups}
    assert blocks == {"conv1": 4, "conv2": 1}
    keep = select_keep(space, {"conv1": 0.5, "conv2": 0.5}, "l1")
    per_group = torch.bincount(torch.tensor(keep["conv1"]) // 4, minlength=4)
    assert per_group.tolist() == [2, 2, 2, 2]
    pruned = assert_masked_equals_export(space, keep)
    assert pruned.gn1.num_groups == 4 and pruned.gn1.num_channels == 8 and pruned.gn2.num_channels == 6
    with pytest.raises(ValueError, match="split into 4 blocks"):
        space.cost({"conv1": list(range(8))})  # whole groups 0 and 1 only: the grouping would shift


def test_unsupported_layernorm_shapes_are_refused_and_can_be_excluded():
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 14, 14]), nn.Linear(4, 5)
            self.mid = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.fc(self.mid(self.norm(self.conv(x))).mean((2, 3)))

    with pytest.raises(UnsupportedModelError, match=r"LayerNorm over .*; exclude it \(exclude=\['norm'\]\)"):
        PruneSpace(Wide().eval(), SPEC)
    assert PruneSpace(Wide().eval(), SPEC, exclude=["norm"]).group_names() == ["mid"]


@pytest.mark.parametrize("conv1d", [False, True], ids=["conv2d_into_linear", "conv1d_into_conv1d"])
def test_bias_correction_is_exact_for_a_constant_channel(conv1d):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4 * 14 * 14, 5)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    class Net1d(nn.Module):  # a 1-D signal: (N, 3, 16) -> conv -> conv -> mean over time
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(3, 4, 3), nn.Conv1d(4, 5, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x))).mean(2)

    torch.manual_seed(0)
    model = (Net1d() if conv1d else Net()).eval()
    spec = InputSpec(shape=(3, 16), mean=(0.5,), std=(0.25,), num_classes=5) if conv1d else SPEC
    with torch.no_grad():
        model.conv.weight[3].zero_()
        model.conv.bias[3] = 0.7  # channel 3 is 0.7 everywhere, whatever the input
    space = PruneSpace(model, spec)
    x = torch.randn(6, *spec.shape)
    candidate = {"conv": [0, 1, 2]}
    overrides = bias_overrides(space, candidate, consumer_input_means(space, x))
    assert set(overrides) == {"fc.bias"}
    with torch.no_grad():
        reference = model(x)
        with masked(space, candidate):
            uncorrected = model(x)
            corrected = torch.func.functional_call(model, overrides, (x,))
    assert not torch.allclose(uncorrected, reference, atol=1e-3)
    assert torch.allclose(corrected, reference, atol=1e-4)


def test_merge_and_bias_together_are_refused():
    with pytest.raises(ValueError, match="choose one"):
        SearchConfig(target_macs=0.5, compensation=("merge", "bias"))


def test_layernorm_model_searches_exports_and_reloads(tmp_path):
    model = tiny_convnext()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probes = ProbeConfig(synthetic=SyntheticConfig(n=16, steps=3, batch_size=16), attack_steps=1, n_undesired=8)
    config = SearchConfig(target_macs=0.7, steps=2, trials=3, probes=probes)
    result = search(model, SPEC, config=config, cache_dir=tmp_path / "cache", quiet=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.target_reached and result.history[-1].kept_macs <= 0.7 + 1e-9
    assert result.space.cost(result.candidate)[0] < result.space.full_macs
    save_pruned(tmp_path / "run", result.space, result.candidate, result.model)
    reloaded, spec, _ = load_pruned(tmp_path / "run", build=tiny_convnext)
    x = torch.randn(4, *SPEC.shape)
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model(x))
    assert spec == SPEC
