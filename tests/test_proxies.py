import math

import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig, build_probes
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.probes.undesired import undesired_probes
from robustprune.proxies import (
    PROXIES,
    feature_cosine,
    fidelity,
    kl_divergence,
    open_world_delta,
    score,
    similarity_preservation,
)
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace


@pytest.fixture(scope="module")
def mlp_probes(tmp_path_factory):
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    config = ProbeConfig(
        synthetic=SyntheticConfig(kind="inversion", n=64, steps=20, batch_size=64), attack_steps=3, n_undesired=48
    )
    probes = build_probes(model, spec, space.output_layer, config, cache_dir=tmp_path_factory.mktemp("cache"))
    return space, probes


def test_proxy_functions_on_hand_built_cases():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [0.5, 0.0, 0.0]])
    assert fidelity(logits, logits) == 1.0
    assert kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-12)
    flipped = logits.roll(1, dims=1)  # every argmax moves to another class
    assert fidelity(flipped, logits) == 0.0
    assert kl_divergence(logits, flipped) > 0.1
    half = torch.cat([logits[:2], flipped[2:]])
    assert fidelity(half, logits) == 0.5
    # open world: a candidate that is more confident on undesired inputs scores > 0
    assert open_world_delta(logits, logits * 3) > 0 and open_world_delta(logits, logits / 3) < 0
    assert open_world_delta(logits, logits) == 0.0
    feats = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert feature_cosine(feats, feats) == pytest.approx(1.0)
    assert feature_cosine(-feats, feats) == pytest.approx(-1.0)
    assert similarity_preservation(feats, feats) == pytest.approx(1.0)
    assert similarity_preservation(2 * feats, feats) == pytest.approx(1.0)  # scale-invariant like SP distillation
    assert 0.0 <= similarity_preservation(torch.randn(8, 5), feats) < 1.0


def test_identical_model_scores_perfectly(mlp_probes):
    space, probes = mlp_probes
    s = score(space, probes, {})
    assert set(s) == set(PROXIES)
    assert s["fidelity"] == 1.0 and s["robust_fidelity"] == 1.0
    assert s["kl"] == pytest.approx(0.0, abs=1e-9)
    assert s["open_world"] == 0.0
    assert s["feature"] == pytest.approx(1.0) and s["feature_sp"] == pytest.approx(1.0)
    for name, value in s.items():
        low, high = PROXIES[name][0]
        assert low - 1e-9 <= value <= high + 1e-9


def test_flipping_model_scores_zero_fidelity(mlp_probes):
    space, probes = mlp_probes
    weight, bias = dict(space.model.named_parameters())["7.weight"], dict(space.model.named_parameters())["7.bias"]
    flip = {"7.weight": weight.detach().roll(1, dims=0), "7.bias": bias.detach().roll(1, dims=0)}
    s = score(space, probes, {}, overrides=flip, attack=None)
    assert s["fidelity"] == 0.0 and s["robust_fidelity"] == 0.0
    assert s["kl"] > 0.5
    assert "attack_robustness" not in s


def test_pruning_lowers_fidelity(mlp_probes):
    space, probes = mlp_probes
    mild = {g.name: tuple(range(g.size - 4)) for g in space.groups}
    harsh = {g.name: tuple(range(3)) for g in space.groups}
    s_mild, s_harsh = score(space, probes, mild, attack=None), score(space, probes, harsh, attack=None)
    assert s_harsh["fidelity"] < s_mild["fidelity"] <= 1.0
    assert s_harsh["kl"] > s_mild["kl"]


def test_attack_robustness_drops_under_pruning(mlp_probes):
    space, probes = mlp_probes
    full = score(space, probes, {})["attack_robustness"]
    harsh = score(space, probes, {g.name: tuple(range(2)) for g in space.groups})["attack_robustness"]
    assert 0.0 <= harsh <= 1.0 and 0.0 <= full <= 1.0
    assert not math.isnan(full)


def test_probe_set_contents(mlp_probes):
    _, probes = mlp_probes
    eps = probes.config.eps
    syn, adv = probes.pixels["synthetic"], probes.pixels["adversarial"]
    assert adv.shape == syn.shape
    assert (adv - syn).abs().max().item() <= eps + 1e-6, "adversarial probes stay within eps of their sources"
    assert adv.min() >= 0 and adv.max() <= 1
    und = probes.pixels["undesired"]
    assert len(und) == 48 and und.min() >= 0 and und.max() <= 1
    assert probes.features.shape[0] == len(syn)
    assert probes.logits["synthetic"].shape == (len(syn), 10)


def test_split_keeps_each_input_with_its_adversarial_version_and_answers(mlp_probes):
    space, probes = mlp_probes
    first, rest = probes.split(40)
    assert len(first.pixels["synthetic"]) == 40 and len(rest.pixels["synthetic"]) == 24
    assert torch.equal(rest.pixels["adversarial"], probes.pixels["adversarial"][40:])
    assert torch.equal(rest.logits["adversarial"], probes.logits["adversarial"][40:])
    assert torch.equal(first.features, probes.features[:40])
    assert torch.equal(rest.pixels["undesired"], probes.pixels["undesired"])
    full = {g.name: tuple(range(g.size)) for g in space.groups}
    assert score(space, rest, full, attack=None)["fidelity"] == 1.0  # answers still line up with inputs
    with pytest.raises(ValueError, match="n_first"):
        probes.split(64)


def test_undesired_probes_deterministic_and_in_range():
    spec = zoo.FASHION_MNIST_SPEC
    syn = torch.rand(10, 1, 28, 28)
    a = undesired_probes(spec, 30, synthetic=syn, seed=3)
    b = undesired_probes(spec, 30, synthetic=syn, seed=3)
    assert torch.equal(a, b) and a.shape == (30, 1, 28, 28)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, undesired_probes(spec, 30, synthetic=syn, seed=4))


def test_undesired_probes_destroy_inputs_of_any_range_and_shape_alike():
    """The destroyed synthetic inputs of a 0..255 spec, or of the same pixels seen as (C, L) signals or
    features, are the unit-range images' ones, mapped: not clipped to [0, 1], not refused as non-images."""
    unit = InputSpec((1, 28, 28), (0.5,), (0.25,), 10)
    syn = torch.rand(12, 1, 28, 28)
    reference = undesired_probes(unit, 30, synthetic=syn, seed=3)[20:]  # the third part: destroyed inputs
    wide = InputSpec((1, 28, 28), (127.5,), (63.75,), 10, value_range=(0.0, 255.0))
    torch.testing.assert_close(undesired_probes(wide, 30, synthetic=syn * 255, seed=3)[20:] / 255, reference)
    signal = InputSpec((1, 784), (0.5,), (0.25,), 10)
    destroyed = undesired_probes(signal, 30, synthetic=syn.view(12, 1, 784), seed=3)[20:]
    assert destroyed.shape == (10, 1, 784)
    features = undesired_probes(InputSpec((784,), (0.5,), (0.25,), 10), 30, synthetic=syn.view(12, 784), seed=3)
    assert features.shape == (30, 784) and torch.equal(features[20:], destroyed.view(10, 784))
