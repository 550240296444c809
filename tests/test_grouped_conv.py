"""Grouped (non-depthwise) convs, as in ResNeXt and RegNet: pruned keeping their groups, exactly."""

import math

import pytest
import torch
import torchvision
from torch import nn

from robustprune.compensate import merge_overrides
from robustprune.criteria import all_scores
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search
from robustprune.select import keep_top, select_keep
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, load_pruned, masked, save_pruned
from robustprune.structure.space import UnsupportedModelError
from tests.helpers import randomize_norms

SPEC = InputSpec(shape=(3, 16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=5)


class Bottleneck(nn.Module):
    """ResNeXt's block: 1x1 conv, grouped 3x3 conv, 1x1 conv, each with BN, and a residual add."""

    def __init__(self, channels: int, width: int, groups: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(x + self.bn3(self.conv3(y)))


class TinyResNeXt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.blocks = nn.Sequential(Bottleneck(16, 32, groups=4), Bottleneck(16, 32, groups=8))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.blocks(torch.relu(self.bn(self.stem(x)))).mean((2, 3)))


def tiny_resnext() -> nn.Module:
    torch.manual_seed(0)
    return randomize_norms(TinyResNeXt())


def random_half(space: PruneSpace, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: keep_top(torch.rand(grp.size, generator=g), grp.size // 2, grp.blocks) for grp in space.groups}


def counted_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv and linear multiply-accumulates (bias adds included) of one sample, read off the layers as they run."""
    total = 0

    def hook(module, _inputs, out):
        nonlocal total
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            fan_in = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += out[0].numel() * (fan_in + (module.bias is not None))
        else:
            total += out[0].numel() * (module.in_features + (module.bias is not None))

    layers = [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in layers]
    with torch.no_grad():
        model(x[:1])
    for h in handles:
        h.remove()
    return total


def assert_exact(space: PruneSpace, candidate: dict) -> nn.Module:
    """masked == exported within 1e-4, and the space's MACs and params are the exported model's."""
    x = torch.randn(3, *space.spec.shape)
    with torch.no_grad(), masked(space, candidate):
        y_masked = space.model(x)
    pruned = export(space, candidate)
    with torch.no_grad():
        y_pruned = pruned(x)
    assert (y_masked - y_pruned).abs().max().item() <= 1e-4 * max(1.0, y_masked.abs().max().item())
    macs, params = space.cost(candidate)
    assert params == sum(p.numel() for p in pruned.parameters())
    assert macs == counted_macs(pruned, x)
    return pruned


def test_grouped_convs_split_their_groups_into_blocks():
    space = PruneSpace(tiny_resnext(), SPEC)
    blocks = {g.name: g.blocks for g in space.groups}
    # conv1 -> conv2 (reads it in 4 or 8 blocks), conv2 -> conv3 (writes 4 or 8 blocks), the residual stream whole
    assert blocks == {
        "blocks.1.conv3": 1,
        "blocks.0.conv1": 4,
        "blocks.0.conv2": 4,
        "blocks.1.conv1": 8,
        "blocks.1.conv2": 8,
    }
    assert space.full_macs == counted_macs(space.model, torch.randn(1, *SPEC.shape))
    keep = select_keep(space, {"blocks.0.conv1": 0.5, "blocks.1.conv2": 0.3}, "l1")
    assert torch.bincount(torch.tensor(keep["blocks.0.conv1"]) // 8).tolist() == [4, 4, 4, 4]
    assert torch.bincount(torch.tensor(keep["blocks.1.conv2"]) // 4).tolist() == [2] * 8  # 0.3 of 4 rounds down
    with pytest.raises(ValueError, match="split into 8 blocks"):
        space.cost({"blocks.1.conv1": list(range(16))})  # whole blocks 0 to 3 only: the blocks would shift


def test_masked_equals_exported_with_different_channels_kept_in_each_block():
    space = PruneSpace(tiny_resnext(), SPEC)
    candidate = random_half(space)
    per_block = torch.tensor(candidate["blocks.0.conv1"]).view(4, -1) % 8
    assert len({tuple(row.tolist()) for row in per_block}) > 1  # not the same local channels in every block
    pruned = assert_exact(space, candidate)
    conv = pruned.blocks[1].conv2
    assert (conv.groups, conv.in_channels, conv.out_channels) == (8, 16, 16)
    assert space.model.blocks[1].conv2.groups == 8 and space.model.blocks[1].conv2.in_channels == 32  # untouched


@pytest.mark.parametrize("exclude", [["blocks.0.conv2"], ["blocks.0.conv1"], ["blocks.0.conv1", "blocks.1.conv2"]])
def test_a_grouped_conv_whose_input_or_output_group_is_excluded_exports_exactly(exclude):
    space = PruneSpace(tiny_resnext(), SPEC, exclude=exclude)
    assert not any(name in g.members for name in exclude for g in space.groups)
    assert_exact(space, random_half(space, seed=2))


class Multiplier(nn.Module):
    """A channel-multiplier conv (groups == in_channels, 2 outputs per input) and a grouped Conv1d."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn_a = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b, self.bn_b = nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.BatchNorm2d(16)
        self.c = nn.Conv1d(16, 12, 1, groups=4)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        y = torch.relu(self.bn_b(self.b(torch.relu(self.bn_a(self.a(x))))))
        return self.fc(torch.relu(self.c(y.flatten(2))).mean(2))


def test_channel_multiplier_and_grouped_conv1d_export_exactly():
    torch.manual_seed(0)
    space = PruneSpace(randomize_norms(Multiplier()), SPEC)
    assert {g.name: g.blocks for g in space.groups} == {"a": 8, "b": 8, "c": 4}  # "a": one channel per block
    candidate = random_half(space, seed=1)
    assert len(candidate["a"]) == 8 and len(candidate["b"]) == 8 and len(candidate["c"]) == 4
    assert_exact(space, candidate)


@pytest.mark.parametrize("criterion", ["l1", "l2", "fpgm"])
def test_magnitude_criteria_score_a_group_read_by_a_channel_multiplier(criterion):
    # torch-pruning cannot slice the inputs of Conv2d(8, 16, groups=8); the producers alone score group "a"
    torch.manual_seed(0)
    space = PruneSpace(randomize_norms(Multiplier()), SPEC)
    scores = all_scores(space, criterion)
    for group in space.groups:
        assert scores[group.name].shape == (group.size,) and torch.isfinite(scores[group.name]).all()
    a = space.group("a")
    weight = dict(space.model.named_modules())["a"].weight.detach()
    if criterion == "l1":  # conv out-channel L1 and BN |gamma| (torch-pruning's terms), mean over the two
        bn = dict(space.model.named_modules())[a.members[1]].weight.detach().abs()
        expected = (weight.abs().flatten(1).sum(1) + bn) / 2
        torch.testing.assert_close(scores["a"], expected / expected.mean())


def test_cost_of_counts_rounds_a_blocked_group_down_as_keep_top_does():
    space = PruneSpace(tiny_resnext(), SPEC)
    i = space.index_of("blocks.1.conv1")
    counts = [g.size for g in space.groups]
    counts[i] = 21  # 8 blocks: keep_top keeps 2 per block, 16 channels
    rounded = list(counts)
    rounded[i] = 16
    assert space.cost_of_counts(counts) == space.cost_of_counts(rounded)
    assert len(keep_top(torch.rand(32), 21, 8)) == 16


def test_merge_compensation_refuses_a_grouped_consumer_in_one_line():
    space = PruneSpace(tiny_resnext(), SPEC)
    with pytest.raises(UnsupportedModelError, match="grouped conv 'blocks.0.conv2' reads group"):
        merge_overrides(space, {"blocks.0.conv1": keep_top(torch.rand(32), 16, 4)})


def test_grouped_model_searches_exports_and_reloads(tmp_path):
    model = tiny_resnext()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probes = ProbeConfig(synthetic=SyntheticConfig(n=16, steps=3, batch_size=16), attack_steps=1, n_undesired=8)
    config = SearchConfig(target_macs=0.7, steps=1, trials=3, probes=probes)
    result = search(model, SPEC, config=config, cache_dir=tmp_path / "cache", quiet=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.target_reached and result.history[-1].kept_macs <= 0.7 + 1e-9
    assert any(len(result.candidate.get(n, range(32))) < 32 for n in ("blocks.0.conv1", "blocks.1.conv2"))
    assert_exact(result.space, result.candidate)
    save_pruned(tmp_path / "run", result.space, result.candidate, result.model)
    reloaded, spec, data = load_pruned(tmp_path / "run", build=tiny_resnext)
    x = torch.randn(4, *SPEC.shape)
    with torch.no_grad():
        assert torch.equal(reloaded(x), result.model(x))
    assert spec == SPEC and data["params"] == sum(p.numel() for p in reloaded.parameters())


@pytest.mark.parametrize("name", ["resnext50_32x4d", "regnet_x_400mf", "regnet_y_400mf"])
def test_torchvision_grouped_families_export_exactly(name):
    torch.manual_seed(0)
    model = randomize_norms(getattr(torchvision.models, name)(num_classes=10))
    spec = InputSpec(shape=(3, 64, 64), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=10)
    space = PruneSpace(model, spec)
    assert space.grouped_convs and max(g.blocks for g in space.groups) > 1
    assert_exact(space, random_half(space))


def test_latency_table_times_grouped_convs_with_their_groups(tmp_path, monkeypatch):
    from robustprune.evaluate import lut

    timed_groups = set()

    def fake_ms(module, shape, *_args):  # layer timings are not what is tested: the layers timed are
        timed_groups.add(getattr(module, "groups", 1))
        with torch.no_grad():
            module(torch.zeros(1, *shape))  # the layer accepts its input shape
        return float(sum(p.numel() for p in module.parameters()))

    monkeypatch.setattr(lut, "_time_ms", fake_ms)
    space = PruneSpace(tiny_resnext(), SPEC)
    table = lut.build_latency_model(space, threads=1, cache_dir=tmp_path, runs=1, whole_runs=1)
    assert {4, 8} <= timed_groups
    grouped = {t.name: t for t in table.tables if t.name in space.grouped_convs}
    assert set(grouped) == {"blocks.0.conv2", "blocks.1.conv2"}
    for name, t in grouped.items():
        groups = dict(space.model.named_modules())[name].groups
        assert all(w % groups == 0 for w in t.in_grid + t.out_grid) and len(t.in_grid) > 1
    assert table.fraction([g.size for g in space.groups]) == pytest.approx(1.0)


def test_global_candidate_removes_one_channel_per_block_at_a_time():
    from robustprune.select import global_candidate
    from robustprune.targets import Target

    space = PruneSpace(tiny_resnext(), SPEC)
    scores = {g.name: torch.rand(g.size, generator=torch.Generator().manual_seed(3)) for g in space.groups}
    candidate = global_candidate(space, Target(macs=0.5), scores)
    macs, _ = space.cost(candidate)  # validates: equal counts per block
    assert macs <= 0.5 * space.full_macs
    assert any(len(candidate[n]) < 32 for n in ("blocks.0.conv1", "blocks.1.conv1", "blocks.0.conv2"))
    assert_exact(space, candidate)
