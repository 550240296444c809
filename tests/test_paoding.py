import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from robustprune import InputSpec, baseline
from robustprune.baselines.paoding import (
    PaodingConfig,
    input_intervals,
    interval_relu,
    merge_impact,
    pair_saliency,
    paoding_prune,
    paoding_prune_to_macs,
    paoding_prune_to_params,
    propagate_intervals,
    select_pairs,
    temperature,
)
from robustprune.zoo.architectures import cnn, mlp

torch.set_num_threads(1)

SPEC = InputSpec(shape=(1, 28, 28), mean=(0.2860,), std=(0.3530,), num_classes=10)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mlp().eval()


def _small(n_in: int = 4, hidden: int = 3, n_out: int = 2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out)).double().eval()


def test_pair_saliency_hand_computed():
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([1.0, 3.0, -1.0])
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])  # outgoing weights, ||a|| = 1, 2, 5
    r2 = math.sqrt(2.0)
    expected = torch.tensor(
        [
            [math.inf, (0.5 + r2) * 2, (1.0 + 1.0) * 5],  # b_0 + b_2 == 0, b_0 != b_2 -> bias term 1
            [(0.5 + r2) * 1, math.inf, (2.0 + 1.0) * 5],
            [(1.0 + 1.0) * 1, (2.0 + 1.0) * 2, math.inf],
        ],
        dtype=torch.float64,
    )
    assert torch.allclose(pair_saliency(w, b, a), expected)
    # equal biases summing to zero: the bias term is 0
    s = pair_saliency(torch.tensor([[1.0], [2.0]]), torch.zeros(2), torch.tensor([[1.0], [3.0]]))
    assert s[0, 1].item() == pytest.approx(1.0 * 3.0) and s[1, 0].item() == pytest.approx(1.0)


def test_input_intervals_and_soundness():
    lo, hi = input_intervals(SPEC, 784)
    assert torch.allclose(lo, torch.full((784,), (0 - 0.2860) / 0.3530, dtype=torch.float64))
    assert torch.allclose(hi, torch.full((784,), (1 - 0.2860) / 0.3530, dtype=torch.float64))
    with pytest.raises(ValueError, match="features"):
        input_intervals(SPEC, 100)
    spec3 = InputSpec(shape=(3, 2, 2), mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 2.0), num_classes=2)
    lo3, hi3 = input_intervals(spec3, 12)
    assert lo3.tolist() == [0.0] * 4 + [-1.0] * 4 + [-0.5] * 4 and hi3.tolist() == [1.0] * 4 + [1.0] * 4 + [0.0] * 4

    model = _mlp()
    bounds = propagate_intervals(model, SPEC)
    torch.manual_seed(1)
    pixels = torch.cat([torch.rand(198, 1, 28, 28), torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)])
    x = SPEC.normalize(pixels).flatten(1)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for k, layer in enumerate(linears):
            x = layer(x if k == 0 else torch.relu(x))
            lo, hi = bounds[k]
            assert (x.double() >= lo - 1e-4).all() and (x.double() <= hi + 1e-4).all()
    assert bounds[-1][0].shape == (10,)


def test_merge_impact_bounds_actual_change():
    spec = InputSpec(shape=(6,), mean=(0.5,), std=(0.25,), num_classes=3)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    w0, w1, w2 = (model[i].weight.detach() for i in (0, 2, 4))
    pre = propagate_intervals(model, spec)
    post_lo, post_hi = interval_relu(*pre[0])
    a, b = 1, 3
    lo, hi = merge_impact(np.array([a]), np.array([b]), post_lo, post_hi, w1, [(pre[1][1], w2)])
    merged = w1.clone()
    merged[:, a] += merged[:, b]
    merged[:, b] = 0
    x = spec.normalize(torch.rand(500, 6, dtype=torch.float64))
    with torch.no_grad():
        h = torch.relu(model[0](x))
        before = model(x)
        after = torch.relu(h @ merged.T + model[2].bias) @ w2.T + model[4].bias
    change = after - before
    assert (change >= lo[0] - 1e-9).all() and (change <= hi[0] + 1e-9).all()


def test_merge_of_duplicate_neuron_is_exact():
    model = _small()
    with torch.no_grad():
        model[0].weight[2] = model[0].weight[0]
        model[0].bias[2] = model[0].bias[0]
    for seed in range(3):
        pruned, kept = paoding_prune(model, InputSpec((4,), (0.0,), (1.0,), 2), PaodingConfig(target=1 / 3, seed=seed))
        assert pruned[0].out_features == 2 and pruned[2].in_features == 2
        assert 1 in kept["0"] and len({0, 2} & set(kept["0"])) == 1
        x = torch.rand(100, 4, dtype=torch.float64) * 4 - 2
        with torch.no_grad():
            assert torch.allclose(pruned(x), model(x), atol=1e-5)


def test_least_saliency_pair_first_when_cold():
    torch.manual_seed(3)
    w, b, out = torch.randn(8, 5), torch.randn(8), torch.randn(8, 4)
    s = pair_saliency(w, b, out)
    best = divmod(int(torch.argmin(s)), 8)

    def impact(kept, removed):  # the least-saliency pair looks the worst, every other pair harmless
        m = len(kept)
        lo, hi = np.zeros((m, 3)), np.zeros((m, 3))
        first = (kept == best[0]) & (removed == best[1])
        hi[first] = 100.0
        return lo, hi

    for seed in range(3):
        pairs = select_pairs(s, impact, 3, t0=0.0, rng=np.random.default_rng(seed))
        assert pairs[0] == best and len(pairs) == 3
        assert len({r for _, r in pairs}) == 3 and not {k for k, _ in pairs[1:]} & {r for _, r in pairs[:1]}

    # end to end, cold: the removed neuron is the argmin's j and its outgoing weights go to i
    model = _small(n_in=5, hidden=6, n_out=3, seed=4)
    w_next = model[2].weight.detach()
    s = pair_saliency(model[0].weight, model[0].bias, w_next.T)
    i, j = divmod(int(torch.argmin(s)), 6)
    pruned, kept = paoding_prune(model, InputSpec((5,), (0.0,), (1.0,), 3), PaodingConfig(target=1 / 6, t0=0.0))
    assert j not in kept["0"] and len(kept["0"]) == 5
    assert torch.allclose(pruned[2].weight[:, kept["0"].index(i)], w_next[:, i] + w_next[:, j])


def test_temperature_decreases_over_the_walk():
    values = [temperature(filled, 10, 2.0) for filled in range(11)]
    assert values[0] == pytest.approx(2.0 + 1e-3) and values[-1] == pytest.approx(1e-3)
    assert all(x > y for x, y in zip(values, values[1:], strict=False)) and min(values) > 0


def test_annealing_uses_the_seed_and_is_deterministic():
    rng = np.random.default_rng(5)
    s = torch.tensor(rng.random((12, 12)))
    s.fill_diagonal_(math.inf)
    own = rng.random((12, 12, 4)) * 0.2  # keeps sigmoid(width) off saturation

    def impact(kept, removed):
        return np.zeros((len(kept), 4)), own[kept, removed]

    runs = {seed: select_pairs(s, impact, 5, t0=0.05, rng=np.random.default_rng(seed)) for seed in range(6)}
    assert runs[0] == select_pairs(s, impact, 5, t0=0.05, rng=np.random.default_rng(0))
    assert len({tuple(p) for p in runs.values()}) > 1

    model = _mlp()
    config = PaodingConfig(target=0.2, seed=7)
    p1, k1 = paoding_prune(model, SPEC, config)
    p2, k2 = paoding_prune(model, SPEC, config)
    assert k1 == k2
    assert all(torch.equal(x, y) for x, y in zip(p1.state_dict().values(), p2.state_dict().values(), strict=True))


def test_prune_to_params_lands_and_leaves_the_model_alone():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, kept, config = paoding_prune_to_params(model, SPEC, 0.5)
    fraction = _n_params(pruned) / _n_params(model)
    assert 0.48 <= fraction <= 0.5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [128, 128, 64, 10]
    widths = [m.out_features for m in pruned if isinstance(m, nn.Linear)]
    assert widths[-1] == 10 and widths[:-1] == [len(kept[name]) for name in ("1", "3", "5")]
    assert all(len(set(v)) == len(v) and v == sorted(v) for v in kept.values())
    assert 0 < config.target < 1
    with torch.no_grad():
        assert pruned(torch.randn(3, 1, 28, 28)).shape == (3, 10)

    pruned, _, _ = paoding_prune_to_macs(model, SPEC, 0.7, seed=1, step=0.1)
    assert 0.68 <= _n_params(pruned) / _n_params(model) <= 0.7


def test_unsupported_models_are_named():
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\)"):
        paoding_prune(cnn(), SPEC, PaodingConfig())
    with pytest.raises(ValueError, match="failed on an input of shape"):
        paoding_prune(nn.Linear(3, 2), SPEC, PaodingConfig())
    with pytest.raises(ValueError, match="no hidden dense layer"):
        paoding_prune(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), SPEC, PaodingConfig())
    with pytest.raises(ValueError, match=r"'1' \(Tanh\)"):
        paoding_prune(nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)), SPEC, PaodingConfig())


class PaperMLP(nn.Module):
    """The paper's MLP as users write it: a module holding a Flatten and a Sequential."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(self.flatten(x))


class FunctionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(784, 128), nn.Linear(128, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _sequential_twin(model: nn.Module) -> nn.Sequential:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    twin = nn.Sequential(nn.Flatten(), linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
    return copy.deepcopy(twin).eval()


@pytest.mark.parametrize("build", [PaperMLP, FunctionalMLP])
def test_a_module_computing_the_chain_prunes_as_its_sequential_twin(build):
    torch.manual_seed(0)
    model = build().eval()
    twin = _sequential_twin(model)
    pruned, kept, _ = paoding_prune_to_params(model, SPEC, 0.6, seed=3)
    twin_pruned, twin_kept, _ = paoding_prune_to_params(twin, SPEC, 0.6, seed=3)
    assert list(kept.values()) == list(twin_kept.values())
    assert type(pruned) is build and all(isinstance(m, nn.Linear) for m in pruned.modules() if m._parameters)
    x = torch.rand(16, *SPEC.shape)
    with torch.no_grad():
        assert torch.equal(pruned(x), twin_pruned(x))
    result = baseline(model, SPEC, "paoding", target_params=0.6, seed=3)  # the CLI's route
    assert list(result.candidate.values()) == [tuple(v) for v in kept.values()]


def test_a_module_that_does_not_compute_the_chain_is_refused():
    class Skip(FunctionalMLP):
        def forward(self, x):
            h = torch.relu(self.fc1(x.flatten(1)))
            return self.out(torch.relu(self.fc2(h)) + h)

    class Leaky(FunctionalMLP):
        def forward(self, x):
            h = torch.nn.functional.leaky_relu(self.fc1(x.flatten(1)), 0.1)
            return self.out(torch.relu(self.fc2(h)))

    for build in (Skip, Leaky):
        with pytest.raises(ValueError, match="does not compute"):
            paoding_prune(build().eval(), SPEC, PaodingConfig())
