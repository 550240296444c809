"""Channel importance criteria, selection, neuron merging and BN re-estimation."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from robustprune.compensate import apply_overrides, bn_reestimate_overrides, merge_overrides
from robustprune.criteria import CRITERIA, all_scores, channel_scores, magnitude
from robustprune.select import select_keep
from robustprune.spec import InputSpec
from robustprune.structure.masks import masked
from robustprune.structure.space import PruneSpace
from robustprune.structure.surgery import export
from robustprune.zoo import FASHION_MNIST_SPEC
from robustprune.zoo.architectures import ARCHITECTURES

torch.set_num_threads(1)


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def zoo_space(name: str, seed: int = 0) -> PruneSpace:
    torch.manual_seed(seed)
    return PruneSpace(randomize_norms(ARCHITECTURES[name](), seed), FASHION_MNIST_SPEC)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def inputs(n: int = 8, seed: int = 0, shape=(1, 28, 28)) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cnn_space():
    return zoo_space("cnn")


@pytest.fixture(scope="module")
def mlp_space():
    return zoo_space("mlp")


# -- scores -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("criterion", CRITERIA)
def test_scores_shape_and_determinism(cnn_space, criterion):
    x = inputs()
    first = all_scores(cnn_space, criterion, inputs=x, seed=3)
    again = all_scores(cnn_space, criterion, inputs=x, seed=3)
    assert list(first) == cnn_space.group_names()
    for name, s in first.items():
        assert s.shape == (cnn_space.group(name).size,)
        assert s.dtype.is_floating_point and torch.isfinite(s).all()
        assert torch.equal(s, again[name])
        one = channel_scores(cnn_space, name, criterion, inputs=x, seed=3)
        assert torch.allclose(one, s, rtol=1e-5, atol=1e-7)


def test_random_depends_on_seed_and_group_only():
    a = zoo_space("cnn", seed=0)
    b = zoo_space("cnn", seed=1)  # other weights, same architecture: same random scores
    sa, sb = all_scores(a, "random", seed=5), all_scores(b, "random", seed=5)
    other = all_scores(a, "random", seed=6)
    for name in sa:
        assert torch.equal(sa[name], sb[name])
        assert not torch.equal(sa[name], other[name])
    names = a.group_names()
    assert not torch.equal(sa[names[1]][:32], sa[names[2]][:32])  # groups get different streams


def test_unknown_criterion_and_missing_inputs(cnn_space):
    with pytest.raises(ValueError, match="l1.*taylor_synthetic"):
        channel_scores(cnn_space, "4", "l3")
    with pytest.raises(ValueError, match="inputs"):
        channel_scores(cnn_space, "4", "taylor_synthetic")
    with pytest.raises(KeyError):
        channel_scores(cnn_space, "nope", "l1")


@pytest.mark.parametrize("criterion", ["l1", "l2"])
def test_magnitude_ranks_zeroed_channel_lowest(criterion):
    space = zoo_space("cnn")
    model = space.model
    with torch.no_grad():  # group "4": conv 4 -> BN 5 -> consumer conv 8
        model[4].weight[11].zero_()
        model[5].weight[11] = 0.0
        model[8].weight[:, 11].zero_()
    s = channel_scores(space, "4", criterion)
    assert int(s.argmin()) == 11 and s[11] == 0
    assert s.mean() == pytest.approx(1.0)  # torch-pruning's default mean normalisation


def test_l1_zero_group_gives_zeros_not_nan():
    space = zoo_space("mlp")
    with torch.no_grad():
        space.model[1].weight.zero_()
        space.model[3].weight.zero_()
    s = channel_scores(space, "1", "l1")
    assert torch.equal(s, torch.zeros(128))


def test_bn_scale_ranks_zero_gamma_lowest_and_falls_back_to_l1(cnn_space, mlp_space):
    space = zoo_space("cnn")
    with torch.no_grad():
        space.model[9].weight[5] = 0.0  # BN of group "8"
    s = channel_scores(space, "8", "bn_scale")
    assert int(s.argmin()) == 5 and s[5] == 0
    assert not torch.equal(s, channel_scores(space, "8", "l1"))
    for name in mlp_space.group_names():  # no BatchNorm anywhere
        with pytest.warns(UserWarning, match="no BatchNorm"):
            s = channel_scores(mlp_space, name, "bn_scale")
        assert torch.equal(s, channel_scores(mlp_space, name, "l1"))


def test_merge_saliency_duplicate_is_free_and_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [1.0, 0, 0, 0]]))
        model[0].bias.copy_(torch.tensor([0.5, -1.0, 0.5]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 4.0]]))
    space = PruneSpace(model, InputSpec(shape=(4,), mean=(0.0,), std=(1.0,), num_classes=2))
    s = channel_scores(space, "0", "merge_saliency")
    a = torch.tensor([1.0, 5.0, 25.0]).sqrt()  # ||outgoing|| per channel
    w = model[0].weight.detach().double()
    b = model[0].bias.detach().double()

    def sal(i, j):
        return (abs((b[i] - b[j]) / (b[i] + b[j])) + (w[i] - w[j]).norm()) * a[j]

    expected = [min(sal(i, j) for i in range(3) if i != j) for j in range(3)]
    assert s[0] == 0 and s[2] == 0  # exact duplicates: removing either is free
    assert torch.allclose(s.double(), torch.stack(expected), atol=1e-6)
    assert s[1] > 0


def test_merge_saliency_counts_a_duplicate_free_only_with_the_same_prelu_slope():
    model = nn.Sequential(nn.Linear(4, 3), nn.PReLU(3), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [1.0, 0, 0, 0]]))
        model[0].bias.copy_(torch.tensor([0.5, -1.0, 0.5]))
        model[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, 4.0]]))
        model[1].weight.copy_(torch.tensor([0.25, 0.1, 0.25]))
    spec = InputSpec(shape=(4,), mean=(0.0,), std=(1.0,), num_classes=2)
    s = channel_scores(PruneSpace(model, spec), "0", "merge_saliency")
    assert s[0] == 0 and s[2] == 0  # duplicates with one slope: removing either is free
    with torch.no_grad():
        model[1].weight[2] = 0.5  # channel 2 now computes something else for negative inputs
    s = channel_scores(PruneSpace(model, spec), "0", "merge_saliency")
    assert s[0] > 0 and s[2] > 0


def test_merge_saliency_bias_guard():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        model[0].bias.copy_(torch.tensor([1.0, -1.0]))  # b_i + b_j = 0, b_i != b_j -> bias term 1
        model[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    space = PruneSpace(model, InputSpec(shape=(2,), mean=(0.0,), std=(1.0,), num_classes=2))
    assert torch.allclose(channel_scores(space, "0", "merge_saliency"), torch.ones(2))


def test_taylor_l1_is_the_rank_sum_and_needs_inputs():
    space = zoo_space("cnn")
    x = inputs(6)
    taylor, l1 = all_scores(space, "taylor_synthetic", inputs=x), all_scores(space, "l1")
    both = all_scores(space, "taylor_l1", inputs=x)

    def rank(v: torch.Tensor) -> torch.Tensor:
        return torch.argsort(torch.argsort(v.double(), stable=True), stable=True).double() / (len(v) - 1)

    for name, s in both.items():
        assert torch.allclose(s, rank(taylor[name]) + rank(l1[name]))
        assert s.max() <= 2 and s.min() >= 0
        # a channel last under both criteria is the first to go
        if int(torch.argmin(taylor[name])) == int(torch.argmin(l1[name])):
            assert int(torch.argmin(s)) == int(torch.argmin(l1[name]))
    assert torch.allclose(channel_scores(space, "4", "taylor_l1", inputs=x), both["4"])
    with pytest.raises(ValueError):
        all_scores(space, "taylor_l1")


def test_taylor_on_resnet20_leaves_grads_and_mode_alone():
    space = zoo_space("resnet20")
    model = space.model.train()
    before = snapshot(model)
    fc_grad = torch.ones_like(model.fc.weight)
    model.fc.weight.grad = fc_grad
    with torch.no_grad():  # zero the output of channel 4 of layer1.0.bn1 (the group's terminal member)
        model.layer1[0].bn1.weight[4] = 0.0
        model.layer1[0].bn1.bias[4] = 0.0
    before = snapshot(model)
    scores = all_scores(space, "taylor_synthetic", inputs=inputs(6))
    assert model.training
    assert_same_state(model, before)
    assert model.fc.weight.grad is fc_grad
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    assert set(scores) == set(space.group_names())
    for name, s in scores.items():
        assert s.shape == (space.group(name).size,) and (s >= 0).all() and torch.isfinite(s).all()
    assert scores["layer1.0.conv1"][4] == 0 and scores["layer1.0.conv1"].sum() > 0


# -- selection ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.99])
def test_select_keep_counts_and_top_scores(cnn_space, amount):
    g = torch.Generator().manual_seed(1)
    scores = {n: torch.randn(cnn_space.group(n).size, generator=g) for n in cnn_space.group_names()}
    keep = select_keep(cnn_space, {"4": amount, "0": amount}, "l1", scores=scores)
    assert set(keep) == {"4", "0"}
    for name, kept in keep.items():
        size = cnn_space.group(name).size
        n_keep = max(1, size - math.floor(amount * size))
        assert len(kept) == n_keep and list(kept) == sorted(kept)
        top = set(torch.topk(scores[name], n_keep).indices.tolist())
        assert set(kept) == top


def test_select_keep_float_slack_and_computed_scores(mlp_space):
    keep = select_keep(mlp_space, {"5": 0.3}, "l1")  # group "5" has 64 channels: 19 removed
    assert len(keep["5"]) == 64 - 19
    l1 = channel_scores(mlp_space, "5", "l1")
    dropped = set(range(64)) - set(keep["5"])
    assert max(l1[list(dropped)]) <= min(l1[list(keep["5"])])
    space = PruneSpace(nn.Sequential(nn.Linear(3, 10), nn.ReLU(), nn.Linear(10, 2)), InputSpec((3,), (0.0,), (1.0,), 2))
    assert len(select_keep(space, {"0": 0.3}, "random")["0"]) == 7  # 0.3 * 10 = 2.9999999999999996 in floats
    assert len(select_keep(space, {"0": 0.7}, "random")["0"]) == 3


def test_select_keep_validates(cnn_space):
    with pytest.raises(ValueError, match="merge_saliency"):
        select_keep(cnn_space, {"4": 0.5}, "magnitude")
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            select_keep(cnn_space, {"4": bad})
    with pytest.raises(KeyError):
        select_keep(cnn_space, {"no-such-group": 0.5})
    with pytest.raises(ValueError, match="inputs"):
        select_keep(cnn_space, {"4": 0.5}, "taylor_synthetic")
    with pytest.raises(ValueError, match="entries"):
        select_keep(cnn_space, {"4": 0.5}, scores={"4": torch.zeros(3)})


# -- neuron merging -----------------------------------------------------------------------------------
class ConvNet(nn.Module):
    def __init__(self, flatten_head: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, stride=2)
        self.bn2 = nn.BatchNorm2d(4)
        self.flatten_head = flatten_head
        self.fc = nn.Linear(4 * 4 * 4 if flatten_head else 4, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = x.flatten(1) if self.flatten_head else x.mean((2, 3))
        return self.fc(x)


CONV_SPEC = InputSpec(shape=(3, 8, 8), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), num_classes=5)
MLP_SPEC = InputSpec(shape=(6,), mean=(0.0,), std=(1.0,), num_classes=3)


def duplicate(layer: nn.Module, norm: nn.Module | None, src: int, dst: int, factor: float = 1.0) -> None:
    with torch.no_grad():
        layer.weight[dst] = factor * layer.weight[src]
        if layer.bias is not None:
            layer.bias[dst] = factor * layer.bias[src]
        if norm is not None:
            for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
                t[dst] = t[src]


def check_merge_exact(space: PruneSpace, candidate: dict, x: torch.Tensor) -> None:
    model = space.model
    before = snapshot(model)
    reference = model(x)
    overrides = merge_overrides(space, candidate)
    assert_same_state(model, before)
    assert overrides
    merged = export(space, candidate, model=apply_overrides(model, overrides))
    plain = export(space, candidate)
    assert torch.allclose(merged(x), reference, atol=1e-5)
    assert not torch.allclose(plain(x), reference, atol=1e-3)
    with masked(space, candidate):  # the masked, functional evaluation agrees with the export
        assert torch.allclose(functional_call(model, overrides, (x,)), reference, atol=1e-5)
    assert_same_state(model, before)


@pytest.mark.parametrize("flatten_head", [False, True])
def test_merge_exact_for_duplicated_conv_channel(flatten_head):
    torch.manual_seed(0)
    model = randomize_norms(ConvNet(flatten_head))
    duplicate(model.conv1, model.bn1, src=1, dst=3)
    duplicate(model.conv2, model.bn2, src=0, dst=2)  # conv2's group feeds the (flattening) head
    space = PruneSpace(model, CONV_SPEC)
    x = inputs(5, shape=CONV_SPEC.shape)
    check_merge_exact(space, {"conv1": [0, 1, 2, 4, 5]}, x)
    check_merge_exact(space, {"conv1": [0, 1, 2, 4, 5], "conv2": [0, 1, 3]}, x)


def test_merge_folds_batchnorm():
    """Channel 3's conv row is twice channel 1's, its BN undoes it: identical outputs, found only with BN folded."""
    torch.manual_seed(0)
    model = randomize_norms(ConvNet(False))
    duplicate(model.conv1, model.bn1, src=1, dst=3, factor=2.0)
    with torch.no_grad():
        model.bn1.running_mean[3] = 2 * model.bn1.running_mean[1]
        model.bn1.running_var[3] = 4 * model.bn1.running_var[1] + 3 * model.bn1.eps
    space = PruneSpace(model, CONV_SPEC)
    check_merge_exact(space, {"conv1": [0, 1, 2, 4, 5]}, inputs(5, shape=CONV_SPEC.shape))
    s = channel_scores(space, "conv1", "merge_saliency")
    assert s[1] < 1e-5 and s[3] < 1e-5 and s.max() > 0.1


@pytest.mark.parametrize("factor", [1.0, 2.5])
def test_merge_exact_for_duplicated_linear_neuron(factor):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    duplicate(model[0], None, src=1, dst=3, factor=factor)  # positive multiple: exact under ReLU
    space = PruneSpace(model, MLP_SPEC)
    check_merge_exact(space, {"0": [0, 1, 2, 4]}, inputs(7, shape=MLP_SPEC.shape))


def test_merge_partners_share_a_per_channel_prelu_slope():
    """Channel 3 computes twice channel 1 before the PReLU; after it only if both have the same slope."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.PReLU(5), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    duplicate(model[0], None, src=1, dst=3, factor=2.0)
    x = inputs(7, shape=MLP_SPEC.shape)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.05, 0.2, 0.35, 0.2, 0.5]))  # channels 1 and 3 share 0.2
    check_merge_exact(PruneSpace(model, MLP_SPEC), {"0": [0, 1, 2, 4]}, x)
    with torch.no_grad():
        model[1].weight[3] = 0.4  # now no kept channel has channel 3's slope: merging it would be wrong
    assert merge_overrides(PruneSpace(model, MLP_SPEC), {"0": [0, 1, 2, 4]}) == {}


def test_merge_threshold_and_no_removal(mlp_space):
    assert merge_overrides(mlp_space, {}) == {}
    assert merge_overrides(mlp_space, {g.name: range(g.size) for g in mlp_space.groups}) == {}
    keep = {"1": list(range(64))}
    assert merge_overrides(mlp_space, keep, threshold=1.0) == {}  # no similarity exceeds 1
    overrides = merge_overrides(mlp_space, keep, threshold=-1.0)
    assert set(overrides) == {"3.weight"}
    assert torch.equal(overrides["3.weight"][:, 64:], mlp_space.model[3].weight[:, 64:])  # removed columns untouched


def test_apply_overrides_copies_and_rejects_unknown(mlp_space):
    model = mlp_space.model
    before = snapshot(model)
    new = torch.zeros_like(model[1].bias)
    out = apply_overrides(model, {"1.bias": new})
    assert torch.equal(out[1].bias, new) and out is not model
    assert_same_state(model, before)
    with pytest.raises(KeyError, match="nope.weight"):
        apply_overrides(model, {"nope.weight": new, "1.bias": new})
    with pytest.raises(ValueError, match="shape"):
        apply_overrides(model, {"1.bias": torch.zeros(3)})


# -- BN re-estimation ---------------------------------------------------------------------------------
def test_bn_reestimate_matches_hand_computed_statistics(cnn_space):
    space = zoo_space("cnn")
    model = space.model.train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(7.0)
                m.running_var.fill_(123.0)
    before = snapshot(model)
    x = inputs(20)
    overrides = bn_reestimate_overrides(space, {}, x)
    assert model.training
    assert_same_state(model, before)
    assert set(overrides) == {f"{i}.running_{s}" for i in (1, 5, 9) for s in ("mean", "var")}
    with torch.no_grad():
        z = model[0](x).double()  # first BN's input, by hand
    assert torch.allclose(overrides["1.running_mean"].double(), z.mean((0, 2, 3)), atol=1e-5)
    # unbiased, over samples and positions (a biased variance is off by 6e-5 here)
    assert torch.allclose(overrides["1.running_var"].double(), z.transpose(0, 1).flatten(1).var(1), rtol=1e-7, atol=0)
    model.eval()
    with torch.no_grad():  # a deeper BN: its input computed with the re-estimated first BN
        h = torch.nn.functional.batch_norm(
            z.float(), overrides["1.running_mean"], overrides["1.running_var"], model[1].weight, model[1].bias
        )
        z2 = model[4](model[3](model[2](h))).double()
    assert torch.allclose(overrides["5.running_mean"].double(), z2.mean((0, 2, 3)), atol=1e-4)
    with torch.no_grad():
        assert not torch.allclose(functional_call(model, overrides, (x,)), model(x), atol=1e-3)
    model.train()
    assert_same_state(model, before)


@pytest.mark.parametrize("arch", ["resnet20", "mobilenetv2"])
def test_bn_reestimate_is_consistent_and_batch_independent(arch):
    space = zoo_space(arch)
    model = space.model
    grp = space.groups[len(space.groups) // 2]
    candidate = {grp.name: list(range(0, grp.size, 2))}
    x = inputs(12)
    before = snapshot(model)
    one = bn_reestimate_overrides(space, candidate, x)
    split = bn_reestimate_overrides(space, candidate, x, batch_size=5)  # one pass per BN depth level
    assert_same_state(model, before)
    assert one.keys() == split.keys()
    for k in one:
        assert torch.allclose(one[k], split[k], rtol=1e-4, atol=1e-5), k
    # every BN sees, with all the new statistics in place, inputs whose mean is its running mean
    seen = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: seen.__setitem__(n, a[0].detach().mean((0, 2, 3))))
        for n, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad(), masked(space, candidate):
            functional_call(model, one, (x,))
    finally:
        for h in hooks:
            h.remove()
    modules = dict(model.named_modules())
    removed = [i for i in range(grp.size) if i not in candidate[grp.name]]
    gone = {m: [c[i] for i in removed] for m, c in zip(grp.members, grp.channel_maps, strict=True)}
    assert len(seen) == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for name, mean in seen.items():
        kept = torch.ones(mean.numel(), dtype=torch.bool)
        kept[gone.get(name, [])] = False
        assert torch.allclose(mean[kept], one[f"{name}.running_mean"][kept], atol=1e-4), name
    # channels the candidate removes keep their old statistics
    for member, cmap in zip(grp.members, grp.channel_maps, strict=True):
        if isinstance(modules[member], nn.BatchNorm2d):
            idx = [cmap[i] for i in removed]
            assert torch.equal(one[f"{member}.running_var"][idx], modules[member].running_var[idx])


def test_bn_reestimate_with_base_overrides():
    torch.manual_seed(0)
    model = randomize_norms(ConvNet(False))
    duplicate(model.conv1, model.bn1, src=1, dst=3)
    space = PruneSpace(model, CONV_SPEC)
    candidate = {"conv1": [0, 1, 2, 4, 5]}
    x = inputs(9, shape=CONV_SPEC.shape)
    merge = merge_overrides(space, candidate)
    plain = bn_reestimate_overrides(space, candidate, x)
    based = bn_reestimate_overrides(space, candidate, x, base=merge)
    assert torch.allclose(plain["bn1.running_mean"], based["bn1.running_mean"])
    assert not torch.allclose(plain["bn2.running_mean"], based["bn2.running_mean"])  # conv2 reads merged weights
    pruned = export(space, candidate, model=apply_overrides(model, {**merge, **based}))
    seen = []
    pruned.bn2.register_forward_pre_hook(lambda mod, a: seen.append(a[0].mean((0, 2, 3))))
    with torch.no_grad():
        pruned(x)
    assert torch.allclose(seen[0], based["bn2.running_mean"], atol=1e-5)
    with pytest.raises(KeyError, match="bogus"):
        bn_reestimate_overrides(space, candidate, x, base={"bogus": torch.zeros(1)})


# -- every criterion and compensation on every zoo architecture --------------------------------------
def zoo_cases():
    """Every zoo architecture (convnext: LayerNorm, no BatchNorm)."""
    return [pytest.param(name, id=name) for name in ARCHITECTURES]


@pytest.mark.parametrize("arch", list(zoo_cases()))
def test_every_criterion_and_compensation_on_zoo(arch):
    space = zoo_space(arch)
    model = space.model
    before = snapshot(model)
    x = inputs(4)
    scores = {c: all_scores(space, c, inputs=x) for c in CRITERIA}
    for c, per_group in scores.items():
        assert set(per_group) == set(space.group_names()), c
        for name, s in per_group.items():
            assert s.shape == (space.group(name).size,) and torch.isfinite(s).all(), (c, name)
    amounts = {name: 0.5 for name in space.group_names()}
    keep = select_keep(space, amounts, "merge_saliency", scores=scores["merge_saliency"])
    overrides = merge_overrides(space, keep)
    overrides.update(bn_reestimate_overrides(space, keep, x, base=overrides))
    assert_same_state(model, before)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad(), masked(space, keep):
        y = functional_call(model, overrides, (x,))
    pruned = export(space, keep, model=apply_overrides(model, overrides))
    with torch.no_grad():
        assert torch.allclose(pruned(x), y, rtol=1e-4, atol=1e-4 * max(1.0, float(y.abs().max())))


def test_overrides_applied_is_undone_and_rejects_unknown_names():
    from robustprune.compensate import overrides_applied

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with overrides_applied(model, {"1.running_mean": torch.ones(2), "0.weight": torch.zeros(2, 3)}):
        assert torch.equal(model[1].running_mean, torch.ones(2)) and not model[0].weight.any()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError), overrides_applied(model, {"1.running_mean": torch.ones(2)}):
        raise RuntimeError("inside")
    assert torch.equal(model[1].running_mean, before["1.running_mean"]), "restored after an error too"
    with pytest.raises(KeyError, match="nope"), overrides_applied(model, {"nope": torch.ones(1)}):
        pass


def test_taylor_scores_against_given_targets():
    from robustprune.criteria import taylor_scores

    torch.manual_seed(0)
    model = ARCHITECTURES["cnn"]().eval()
    space = PruneSpace(model, FASHION_MNIST_SPEC)
    inputs = torch.randn(16, 1, 28, 28)
    own = model(inputs).argmax(dim=1)
    default = taylor_scores(space, inputs)
    same = taylor_scores(space, inputs, targets=own)
    other = taylor_scores(space, inputs, targets=(own + 1) % 10)
    assert all(torch.allclose(default[k], same[k]) for k in default)
    assert any(not torch.allclose(default[k], other[k]) for k in default)
    with pytest.raises(ValueError, match="targets must have shape"):
        taylor_scores(space, inputs, targets=own[:3])


def test_a_criterion_that_cannot_score_a_group_says_so_and_names_the_fallback(cnn_space, mlp_space, monkeypatch):
    group = mlp_space.group_names()[0]
    with pytest.warns(UserWarning, match=rf"'bn_scale' cannot score group '{group}' \(it has no BatchNorm\).*'l1'"):
        channel_scores(mlp_space, group, "bn_scale")

    original = magnitude.tp_importance

    def broken(criterion):
        def score(_group):
            raise RuntimeError("boom")

        return score if criterion == "fpgm" else original(criterion)

    monkeypatch.setattr(magnitude, "tp_importance", broken)
    name = cnn_space.group_names()[0]
    with pytest.warns(UserWarning, match=rf"'fpgm' cannot score group '{name}' \(RuntimeError: boom\).*'l1'"):
        s = channel_scores(cnn_space, name, "fpgm")
    assert torch.equal(s, channel_scores(cnn_space, name, "l1"))
