"""Held-out probes: another seed than the search's, and a score that prefers the closer model."""

import copy

import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search.held_out import HELD_OUT_SEED_OFFSET, best_by_held_out, held_out_probes, held_out_score


@pytest.fixture(scope="module")
def probes_and_model(tmp_path_factory):
    model, spec = zoo.load("mlp")
    config = ProbeConfig(
        synthetic=SyntheticConfig(n=16, steps=2, batch_size=16), eps=0.03, attack_steps=2, n_undesired=16, seed=3
    )
    probes = held_out_probes(model, spec, config, seed=3, cache_dir=tmp_path_factory.mktemp("cache"))
    return probes, model


def test_held_out_probes_use_another_seed(probes_and_model):
    probes, _ = probes_and_model
    assert probes.config.seed == 3 + HELD_OUT_SEED_OFFSET
    assert probes.config.synthetic.seed == 3 + HELD_OUT_SEED_OFFSET


def test_the_original_scores_highest_and_the_damaged_copy_lower(probes_and_model):
    probes, model = probes_and_model
    damaged = copy.deepcopy(model)
    first = next(m for m in damaged.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight.mul_(torch.rand(first.weight.shape, generator=torch.Generator().manual_seed(0)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    score, proxies = held_out_score(model, probes)
    assert proxies["fidelity"] == 1.0 and proxies["robust_fidelity"] == 1.0 and abs(proxies["kl"]) < 1e-6
    assert score == pytest.approx(1.5)  # fidelity 1 + 0.5 robust fidelity 1, no KL, no open-world rise
    index, scores = best_by_held_out([damaged, model], probes)
    assert index == 1 and scores[0] < scores[1]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # scoring changes nothing


def test_a_feature_proxy_weight_is_refused(probes_and_model):
    probes, model = probes_and_model
    with pytest.raises(ValueError, match="feature"):
        held_out_score(model, probes, {"fidelity": 1.0, "feature": 0.5})
