"""Volumetric classifiers (video clips, CT/MRI volumes): Conv3d, BatchNorm3d and InstanceNorm3d groups are
pruned exactly, costed, searched, compensated, exported and recovered like their 2-D kin."""

import pytest
import torch
from torch import nn

import robustprune as rp
from robustprune.evaluate.cost import count_macs_params
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.recover import RecoverConfig, expand_model, merge_model
from robustprune.search import SearchConfig, search
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, load_pruned, save_pruned
from tests.test_layernorm import assert_masked_equals_export, random_half

SPEC = InputSpec(shape=(1, 6, 12, 12), mean=(0.5,), std=(0.25,), num_classes=4)  # (C, D, H, W)
TINY_PROBES = ProbeConfig(synthetic=SyntheticConfig(n=16, steps=3, batch_size=16), attack_steps=1, n_undesired=8)


class Volume(nn.Module):
    """A residual 3-D block with a depthwise conv, a strided conv and a flatten into the head."""

    def __init__(self, norm=nn.BatchNorm3d) -> None:
        super().__init__()
        self.stem, self.bn0 = nn.Conv3d(1, 8, 3, padding=1, bias=False), norm(8)
        self.dw, self.bn1 = nn.Conv3d(8, 8, 3, padding=1, groups=8, bias=False), norm(8)
        self.pw, self.bn2 = nn.Conv3d(8, 8, 1, bias=False), norm(8)
        self.down = nn.Conv3d(8, 12, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.head = nn.Linear(12 * 6 * 6 * 6, 4)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = x + self.bn2(self.pw(torch.relu(self.bn1(self.dw(x)))))
        return self.head(torch.relu(self.down(x)).flatten(1))


def build(norm=nn.BatchNorm3d) -> nn.Module:
    torch.manual_seed(0)
    model = Volume(norm).eval()
    with torch.no_grad():  # away from the defaults, so a wrongly sliced statistic shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm3d | nn.InstanceNorm3d):
                for p in module.parameters():
                    p.uniform_(0.5, 1.5)
                for name in ("running_mean", "running_var"):
                    if getattr(module, name, None) is not None:
                        getattr(module, name).uniform_(0.2, 1.5)
    return model


@pytest.mark.parametrize("norm", [nn.BatchNorm3d, lambda c: nn.InstanceNorm3d(c, affine=True)])
def test_conv3d_groups_are_pruned_exactly_and_costed(norm):
    model = build(norm)
    space = PruneSpace(model, SPEC)
    assert len(space.groups) == 2
    stream = next(g for g in space.groups if "stem" in g.members)
    assert {"stem", "dw", "pw"} <= set(stream.members)  # the residual add and the depthwise conv tie them
    candidate = random_half(space)
    pruned = assert_masked_equals_export(space, candidate)
    assert pruned.head.in_features == len(candidate["down"]) * 6 * 6 * 6
    assert space.cost(candidate) == (layer_macs(pruned), count_macs_params(pruned, SPEC)[1])


def layer_macs(model: nn.Module) -> int:
    """Multiply-accumulates of the conv and linear layers on one input (the space's cost counts these), by hooks."""
    total = 0

    def hook(module, _, out):
        nonlocal total
        per_output = module.weight[0].numel()  # a conv's in/groups x kernel elements, a linear's inputs
        total += out.numel() * per_output + (out.numel() if module.bias is not None else 0)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv3d | nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, *SPEC.shape))
    for h in handles:
        h.remove()
    return total


def test_a_volumetric_model_searches_exports_reloads_and_recovers(tmp_path):
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = SearchConfig(target_macs=0.7, steps=2, trials=3, probes=TINY_PROBES)
    assert config.resolve(PruneSpace(model, SPEC)).compensation == ("bn",)  # BN statistics re-estimated
    result = search(model, SPEC, config=config, cache_dir=tmp_path / "cache", quiet=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.target_reached and result.space.cost(result.candidate)[0] <= 0.7 * result.space.full_macs
    save_pruned(tmp_path / "run", result.space, result.candidate, result.model)
    reloaded, spec, _ = load_pruned(tmp_path / "run", build=build)
    x = torch.randn(3, *SPEC.shape)
    with torch.no_grad():
        assert spec == SPEC and torch.equal(reloaded(x), result.model(x))
    expanded = expand_model(result.model, 2, seed=0).eval()  # linear over-parameterization of 3-D kernels
    assert sum(isinstance(m, nn.Conv3d) for m in expanded.modules()) > sum(
        isinstance(m, nn.Conv3d) for m in result.model.modules()
    )
    with torch.no_grad():
        assert (expanded(x) - result.model(x)).abs().max() <= 1e-4
        assert (merge_model(expanded)(x) - result.model(x)).abs().max() <= 1e-4
    recover = RecoverConfig(steps=2, batch_size=4, pool_size=4, synthetic=SyntheticConfig(n=4, steps=2), expand=2)
    recovered = rp.recover(result.model, model, SPEC, recover, candidate=result.candidate, quiet=True).model
    assert count_macs_params(recovered, SPEC) == count_macs_params(result.model, SPEC)  # merged back, same shape
    with torch.no_grad():
        assert not torch.equal(recovered(x), result.model(x))  # trained: block outputs supervised in 3-D


def test_a_volumetric_model_without_norms_is_merged_and_bias_corrected(tmp_path):
    from robustprune.compensate.bias import bias_overrides, consumer_input_means

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 4),
    ).eval()  # fmt: skip
    space = PruneSpace(model, SPEC)
    candidate = random_half(space)
    inputs = SPEC.normalize(torch.rand(8, *SPEC.shape))
    means = consumer_input_means(space, inputs)
    assert means["2"].shape == (8,)  # a conv's input features: its channels, averaged over batch and volume
    assert set(bias_overrides(space, candidate, means)) == {"2.bias", "6.bias"}
    config = SearchConfig(target_macs=0.7, steps=2, trials=3, probes=TINY_PROBES)
    assert config.resolve(space).compensation == ("merge",)  # no norm layer: pruned channels merged (Paoding)
    result = search(model, SPEC, config=config, cache_dir=tmp_path / "cache", quiet=True)
    assert result.target_reached


def test_a_torch_export_program_of_a_volumetric_model_is_pruned(tmp_path):
    from robustprune.models import load_model

    model = build()
    path = tmp_path / "volume.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(2, *SPEC.shape),)), str(path))
    (tmp_path / "volume.pt2.inputspec.json").write_text(SPEC.to_json())
    loaded, spec = load_model(str(path))
    space = PruneSpace(loaded, spec)
    assert any(isinstance(m, nn.Conv3d) for m in loaded.modules()) and len(space.groups) == 2
    assert_masked_equals_export(space, random_half(space))


class Conv3DSimple(nn.Conv3d):  # as torchvision's video models: an __init__ of its own, the base class's forward
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, (3, 3, 3), padding=(1, 1, 1), bias=False)


def test_conv_subclasses_are_counted_expanded_timed_and_int8_is_refused_for_conv3d():
    from robustprune.evaluate.lut import _layer_at

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv3d(1, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 864, 4))
    sub = nn.Sequential(Conv3DSimple(1, 8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 864, 4))
    sub.load_state_dict(plain.state_dict())
    assert count_macs_params(sub, SPEC) == count_macs_params(plain, SPEC)  # the counter knew only exact types
    expanded = expand_model(sub.eval(), 2, seed=0)
    assert type(expanded[0]).__name__ == "ExpandedConv"  # its forward is the base class's: expanded
    x = torch.randn(2, *SPEC.shape)
    with torch.no_grad():
        assert (merge_model(expanded)(x) - sub(x)).abs().max() <= 1e-4
    layer, shape = _layer_at(sub[0], (1, 6, 12, 12), 1, 4, 1, False)  # the latency table builds the base class
    assert type(layer) is nn.Conv3d and layer(torch.zeros(1, *shape)).shape[1] == 4
    pytest.importorskip("torchao")
    from robustprune.quantize import QuantizeError, quantize_int8

    with pytest.raises(QuantizeError, match="Conv3d '0' would stay float"):
        quantize_int8(sub, SPEC, torch.rand(2, *SPEC.shape))
