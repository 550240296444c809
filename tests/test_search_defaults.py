"""The default search on a model unlike the zoo, the criterion choice at a deep target, and the
exported result agreeing with the proxies the search scored it by."""

import pytest
import torch
import torch_pruning as tp
from torch import nn

import robustprune as rp
from robustprune.probes.probeset import ProbeConfig, build_probes, penultimate_features
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.proxies import output_proxies
from robustprune.search import engine
from robustprune.search.objective import weighted_score
from tests.helpers import randomize_norms

torch.set_num_threads(1)

# inputs in [0, 1], fed to the model as they are (no normalization)
SPEC = rp.InputSpec(shape=(3, 12, 12), mean=(0.0,), std=(1.0,), num_classes=4)
# small probes and few trials so the search takes seconds; importance, rescore and compensation stay "auto"
PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=32, steps=10, batch_size=32),
    attack_steps=2,
    n_undesired=16,
    eps=0.03,
)


class Branchy(nn.Module):
    """Concat branches (one with a depthwise conv), a residual add and BatchNorm: no zoo model looks like this."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.point = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.depth = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.fuse = nn.Sequential(nn.Conv2d(16, 12, 1, bias=False), nn.BatchNorm2d(12), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(12, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12))
        self.head = nn.Sequential(nn.Conv2d(12, 24, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.point(x), self.depth(x)], dim=1)
        x = self.fuse(x)
        x = torch.relu(x + self.res(x))
        return self.fc(self.head(x).mean((2, 3)))


def branchy(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_norms(Branchy(), seed)  # BN statistics that are not the identity, as in a trained model


def macs(model: nn.Module) -> int:
    _, _, flops, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, *SPEC.shape), layer_wise=True)
    return int(sum(v for m, v in flops.items() if isinstance(m, (nn.Conv2d, nn.Linear)) and v))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("probes")


@pytest.fixture(scope="module")
def default_result(cache_dir):
    model = branchy(4)  # here the data-free choice is l1, the case that crashed
    config = rp.SearchConfig(target_macs=0.5, trials=4, probes=PROBES)
    return model, rp.search(model, SPEC, config=config, cache_dir=cache_dir, quiet=True)


def test_default_search_on_a_model_unlike_the_zoo_reaches_the_target_and_exports(default_result, tmp_path):
    model, result = default_result
    assert result.target_reached and result.history[-1].kept_macs <= 0.5
    assert result.config.importance in engine.AUTO_CRITERIA
    if result.config.importance not in engine.RESCORED_CRITERIA:
        assert result.config.rescore == "off"
    assert macs(result.model) <= 0.5 * macs(model)
    x = torch.rand(5, *SPEC.shape)
    with torch.no_grad():
        assert result.model(x).shape == (5, SPEC.num_classes)
    result.save(tmp_path / "run")
    loaded, _, _ = rp.load_pruned(tmp_path / "run", build=Branchy)
    with torch.no_grad():
        assert torch.allclose(loaded(x), result.model(x), atol=1e-5)


def test_l1_chosen_at_a_deep_target_drops_the_automatic_rescore(monkeypatch, cache_dir):
    monkeypatch.setattr(engine, "pick_criterion", lambda values, margin=engine.HEDGE_MARGIN: "l1")
    config = rp.SearchConfig(target_macs=0.5, trials=3, probes=PROBES)
    assert config.resolve(rp.PruneSpace(branchy(0), SPEC)).rescore == "synthetic"  # auto, deep target
    result = rp.search(branchy(0), SPEC, config=config, cache_dir=cache_dir, quiet=True)
    assert result.config.importance == "l1" and result.config.rescore == "off"
    assert result.target_reached
    with pytest.raises(ValueError, match="importance 'l1' would ignore it"):  # an explicit request still is refused
        rp.SearchConfig(target_macs=0.5, importance="l1", rescore="synthetic")


def test_exported_model_reproduces_the_proxies_of_the_last_step(default_result, cache_dir):
    model, result = default_result
    space = rp.PruneSpace(model, SPEC)
    probes = build_probes(model, SPEC, space.output_layer, result.config.probes, cache_dir=cache_dir)
    with torch.no_grad():
        logits, kept_features = penultimate_features(result.model, space.output_layer, probes.inputs())
    # the search scores masked features of the full width: put the kept ones back in their places
    last = next(g for g in space.groups if space.output_layer in g.consumers)
    features = torch.zeros(len(kept_features), last.size)
    features[:, list(result.candidate.get(last.name, range(last.size)))] = kept_features
    exported = output_proxies(probes, logits, features)
    scored = result.history[-1].proxies
    for name in scored:
        assert exported[name] == pytest.approx(scored[name], rel=1e-4, abs=1e-5), name
    assert weighted_score(exported, result.config.weights) == pytest.approx(result.history[-1].score, abs=1e-5)
