"""Prune space, masks, physical export and persistence: equivalence on every zoo model and torchvision checks."""

import pytest
import torch
import torch_pruning as tp
from torch import nn

from robustprune import zoo
from robustprune.spec import InputSpec
from robustprune.structure import (
    PruneSpace,
    UnsupportedModelError,
    export,
    load_pruned,
    masked,
    save_pruned,
)
from robustprune.zoo.architectures import ARCHITECTURES
from tests.helpers import randomize_norms

RATIOS = (0.0, 0.3, 0.7)
TV_SPEC = InputSpec(shape=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=10)


def random_candidate(space: PruneSpace, ratio: float, seed: int = 0) -> dict:
    """About ``ratio`` of each group removed, the share varying by group (branches of a concat pruned unevenly)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for grp in space.groups:
        share = ratio * (0.5 + torch.rand(1, generator=g).item())
        out[grp.name] = sorted(torch.randperm(grp.size, generator=g)[: max(1, round(grp.size * (1 - share)))].tolist())
    return out


def zoo_cases():
    """Every zoo architecture (convnext: LayerNorm, no BatchNorm)."""
    return [pytest.param(name, id=name) for name in ARCHITECTURES]


def torchvision_model(name: str) -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return randomize_norms(getattr(torchvision.models, name)(num_classes=10))


def conv_linear_macs(model: nn.Module, spec: InputSpec) -> int:
    _, _, flops, _ = tp.utils.count_ops_and_params(model, torch.zeros(1, *spec.shape), layer_wise=True)
    return int(sum(v for m, v in flops.items() if isinstance(m, (nn.Conv2d, nn.Linear)) and v))


def check_equivalence(model: nn.Module, spec: InputSpec, x: torch.Tensor, exclude: tuple[str, ...] = ()) -> None:
    space = PruneSpace(model, spec, exclude=exclude)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = model(x)
    for i, ratio in enumerate(RATIOS):
        candidate = random_candidate(space, ratio, seed=i)
        pruned = export(space, candidate)
        with torch.no_grad(), masked(space, candidate):
            y_masked = model(x)
        with torch.no_grad():
            y_pruned = pruned(x)
        scale = max(1.0, reference.abs().max().item())
        assert (y_masked - y_pruned).abs().max().item() <= 1e-4 * scale, f"ratio {ratio}"
        macs, params = space.cost(candidate)
        assert params == sum(p.numel() for p in pruned.parameters())
        assert macs == conv_linear_macs(pruned, spec)
        if ratio > 0:
            assert params < space.full_params
    with torch.no_grad():
        assert torch.equal(model(x), reference), "leaving the mask context must restore the exact outputs"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "export must not touch the model"


@pytest.mark.parametrize("name", list(zoo_cases()))
def test_masked_equals_physical_on_zoo(name):
    model, spec = zoo.load(name)
    check_equivalence(model, spec, torch.rand(6, 1, 28, 28))


@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v2", "googlenet", pytest.param("vgg11_bn", marks=pytest.mark.slow)]
)
def test_masked_equals_physical_on_torchvision(name):
    # googlenet: concats of unequal branches (64, 128, 32, 32), each a group of its own, read by one conv
    check_equivalence(torchvision_model(name), TV_SPEC, torch.rand(2, 3, 64, 64))


@pytest.mark.parametrize("name", list(zoo_cases()))
def test_save_load_roundtrip_is_exact(name, tmp_path):
    model, spec = zoo.load(name)
    space = PruneSpace(model, spec)
    candidate = random_candidate(space, 0.4)
    pruned = export(space, candidate)
    save_pruned(tmp_path, space, candidate, pruned, model_ref=f"zoo:{name}")
    loaded, loaded_spec, data = load_pruned(tmp_path)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
    assert loaded_spec == spec
    assert data["params"] == sum(p.numel() for p in loaded.parameters())


def test_group_names_are_stable_and_output_layer_is_protected():
    model, spec = zoo.load("resnet20")
    a, b = PruneSpace(model, spec), PruneSpace(zoo.build("resnet20").eval(), spec)
    assert a.group_names() == b.group_names()
    assert all("fc" not in g.members for g in a.groups)
    # the residual stream of each stage is one group holding every conv that writes into it
    stage3 = [g for g in a.groups if "layer3.0.shortcut.0" in g.members][0]
    assert {"layer3.0.conv2", "layer3.1.conv2", "layer3.2.conv2"} <= set(stage3.members)
    assert "fc" in stage3.consumers


def test_cost_per_channel_is_marginal_cost():
    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec)
    first = space.group("1")  # the 784 -> 128 layer: one channel costs 784 + 1 (bias) + 128 (next layer)
    assert first.size == 128
    assert first.macs_per_channel == 784 + 1 + 128
    assert space.full_macs == space.full_params == sum(p.numel() for p in model.parameters())


def test_invalid_candidates_and_exclusions():
    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    name = space.groups[0].name
    with pytest.raises(ValueError, match="at least one"):
        space.cost({name: []})
    with pytest.raises(ValueError, match="distinct"):
        space.cost({name: [0, 0]})
    with pytest.raises(KeyError, match="no channel group"):
        space.cost({"nope": [0]})
    excluded = PruneSpace(model, spec, exclude=[name])
    assert name not in excluded.group_names() and len(excluded) == len(space) - 1
    with pytest.raises(ValueError, match="nothing left to prune"):
        PruneSpace(model, spec, exclude=[g.name for g in space.groups])
    with pytest.raises(ValueError, match="not found"):
        PruneSpace(model, spec, exclude=["no.such.module"])


class DenseBlock(nn.Module):
    """DenseNet's pattern: a BN normalizes the concat of two groups' channels."""

    def __init__(self):
        super().__init__()
        self.c0, self.c1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 6, 3, padding=1)
        self.bn, self.c2, self.fc = nn.BatchNorm2d(14), nn.Conv2d(14, 5, 1), nn.Linear(5, 4)

    def forward(self, x):
        a = self.c0(x)
        y = torch.cat([a, self.c1(torch.relu(a))], 1)
        return self.fc(self.c2(torch.relu(self.bn(y))).mean((2, 3)))


def test_a_norm_after_a_concat_is_masked_and_counted_for_every_group_it_carries():
    torch.manual_seed(0)
    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    model = randomize_norms(DenseBlock()).eval()
    assert sum("bn" in g.members for g in PruneSpace(model, spec).groups) == 2
    check_equivalence(model, spec, torch.rand(2, 3, 16, 16))
    # one branch excluded: the norm carries one group and 8 channels from none, counted as well
    assert sum("bn" in g.members for g in PruneSpace(model, spec, exclude=["c0"]).groups) == 1
    check_equivalence(model, spec, torch.rand(2, 3, 16, 16), exclude=("c0",))


def test_a_channel_shuffle_is_refused_in_one_line_naming_it():
    with pytest.raises(UnsupportedModelError, match="channel shuffle") as info:  # torch-pruning's tracer fails
        PruneSpace(torchvision_model("shufflenet_v2_x0_5").eval(), TV_SPEC)
    assert "\n" not in str(info.value)
    assert "(after stage" in str(info.value)  # the modules feeding the reshape, so the user can find it


class MixedKernels(nn.Module):
    """MixNet's pattern: two convs concatenated, then split again by sizes fixed in the code."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)
        self.c, self.d = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        p, q = torch.split(torch.cat([self.a(x), self.b(x)], 1), [4, 4], 1)
        return self.head(torch.cat([self.c(p), self.d(q)], 1).mean((2, 3)))


def test_a_group_whose_export_differs_from_its_mask_is_refused_naming_it():
    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    model = MixedKernels().eval()
    with pytest.raises(UnsupportedModelError, match=r"group 'a' .*torch\.split.*exclude 'a'") as info:
        PruneSpace(model, spec)
    assert "\n" not in str(info.value)
    PruneSpace(model, spec, verify=False)  # the structural checks alone pass: only the export shows it
    space = PruneSpace(model, spec, exclude=["a", "b"])  # the documented way through
    assert "stem" in space.group_names() and "a" not in space.group_names()
    candidate = random_candidate(space, 0.5)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad(), masked(space, candidate):
        y_masked = model(x)
    with torch.no_grad():
        assert torch.allclose(export(space, candidate)(x), y_masked, atol=1e-5)


def test_a_model_whose_copy_differs_unpruned_is_refused_without_blaming_a_group():
    class Noisy(nn.Module):  # noise in eval mode: no candidate can be checked, and no group is at fault
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            y = self.b(torch.relu(self.a(x))).mean((2, 3))
            return self.head(y) + 1e-2 * torch.randn(x.shape[0], 4)

    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    with pytest.raises(UnsupportedModelError, match="nothing pruned.*deterministic") as info:
        PruneSpace(Noisy().eval(), spec)
    assert "group" not in str(info.value) and "\n" not in str(info.value)
    assert sorted(PruneSpace(Noisy().eval(), spec, verify=False).group_names()) == ["a", "b"]


def test_untraceable_and_unsupported_models_name_the_problem():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = self.conv(x)
            if y.sum() > 1e9:  # python control flow on values is fine for tracing, a layer norm on channels is not
                y = y * 2
            return self.fc(y.mean((2, 3)))

    PruneSpace(DataDependent().eval(), zoo.FASHION_MNIST_SPEC)  # supported

    class ThroughPython(nn.Module):  # values leave autograd: torch-pruning cannot see the conv's channels
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            scale = 1.0 + 0.0 * y.sum().item()
            return self.fc(torch.tensor(y.tolist()) * scale)

    with pytest.raises(UnsupportedModelError, match="could not trace the model: layer 'conv'") as info:
        PruneSpace(ThroughPython().eval(), zoo.FASHION_MNIST_SPEC)
    assert "\n" not in str(info.value)

    class ConcatAdded(nn.Module):  # each concat branch carries half of the residual group's channels
        def __init__(self):
            super().__init__()
            self.a, self.b, self.mix = nn.Conv2d(1, 4, 3), nn.Conv2d(1, 4, 3), nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], dim=1)
            return self.fc((y + self.mix(y)).mean((2, 3)))

    with pytest.raises(UnsupportedModelError, match="'[ab]' carries 4 of the 8 channels.*exclude 'mix'"):
        PruneSpace(ConcatAdded().eval(), zoo.FASHION_MNIST_SPEC)

    class WithTransposed(nn.Module):  # reads conv's channels: torch-pruning slices it, the cost cannot count it
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, stride=2)
            self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)  # torch-pruning slices its inputs; no cost term counts it
            self.mid = nn.Conv2d(8, 8, 1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(self.mid(self.up(self.conv(x))).mean((2, 3)))

    class WithLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.rnn = nn.Conv2d(1, 8, 3, stride=4), nn.LSTM(8, 8, batch_first=True)
            self.mid, self.fc = nn.Conv2d(1, 8, 3), nn.Linear(16, 10)

        def forward(self, x):
            sequence = self.rnn(self.conv(x).flatten(2).transpose(1, 2))[0][:, -1]
            return self.fc(torch.cat([sequence, self.mid(x).mean((2, 3))], 1))

    for model, reader in ((WithTransposed(), "up' \\(ConvTranspose2d\\)"), (WithLSTM(), "rnn' \\(LSTM\\)")):
        with pytest.raises(
            UnsupportedModelError, match=f"'{reader} reads the channels of group 'conv'.*exclude 'conv'"
        ):
            PruneSpace(model.eval(), zoo.FASHION_MNIST_SPEC)
        space = PruneSpace(model.eval(), zoo.FASHION_MNIST_SPEC, exclude=["conv"])  # as the message says
        assert space.group_names() == ["mid"]


class FlattensLastThreeAxes(nn.Module):
    """Runs on unbatched (C, H, W) inputs too: ``flatten(-3)`` merges the channel axis with the spatial ones."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc1, self.fc2 = nn.Linear(16 * 4 * 4, 32), nn.Linear(32, 10)
        self.seen: list[int] = []  # the number of axes of every input the model was called on

    def forward(self, x):
        self.seen.append(x.dim())
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(-3))))


def test_the_model_is_traced_on_a_batch_only_and_a_flatten_that_runs_unbatched_is_pruned_exactly():
    # torch-pruning calls model(*example_inputs): a bare tensor would be unpacked into one unbatched sample
    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=10)
    model = FlattensLastThreeAxes().eval()
    space = PruneSpace(model, spec)
    export(space, random_candidate(space, 0.5))
    assert model.seen and set(model.seen) == {4}, "the model was called on an unbatched input"
    assert "conv2" in space.group_names()  # its channels reach fc1 through the flatten, 16 inputs each
    check_equivalence(model, spec, torch.rand(3, 3, 16, 16))


class ResidualIntoFlatten(nn.Module):
    """A residual add whose sum is flattened into the head: torch-pruning lists the stem's indices of the
    shared group in another order than the block's."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + torch.relu(self.block(x))
        return self.head(torch.flatten(x, 1))


def test_a_residual_sum_flattened_into_the_head_is_one_group_pruned_exactly():
    spec = InputSpec(shape=(3, 8, 8), mean=(0.5,), std=(0.25,), num_classes=10)
    torch.manual_seed(0)
    model = ResidualIntoFlatten().eval()
    space = PruneSpace(model, spec)  # verified: refused before, masks put on permuted channels of the stem
    (group,) = space.groups
    assert set(group.members) == {"stem", "block"}
    assert all(cmap == tuple(range(8)) for cmap in group.channel_maps)
    check_equivalence(model, spec, torch.rand(3, 3, 8, 8))


def test_a_layer_called_twice_is_refused_in_one_line_naming_it():
    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.body = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            return self.head(torch.relu(self.body(torch.relu(self.body(x)))).mean((2, 3)))

    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    with pytest.raises(UnsupportedModelError, match=r"layer 'body' \(Conv2d\) is called more than once") as info:
        PruneSpace(Reused().eval(), spec)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["convnext", "resnet20"])
def test_a_frozen_model_is_pruned_exactly_and_keeps_its_flags(name):
    # a pretrained model handed over for inference often has requires_grad=False; torch-pruning traces autograd
    model, spec = zoo.load(name)
    model.requires_grad_(False)
    check_equivalence(model, spec, torch.rand(4, 1, 28, 28))  # convnext: its layer scales are found and sliced
    space = PruneSpace(model, spec)
    pruned = export(space, random_candidate(space, 0.5))
    assert not any(p.requires_grad for p in model.parameters()), "the caller's flags must come back"
    assert not any(p.requires_grad for p in pruned.parameters()), "the exported copy keeps the caller's flags"


@pytest.mark.parametrize(
    "wrap",
    [
        nn.utils.parametrizations.weight_norm,
        nn.utils.parametrizations.spectral_norm,
        nn.utils.weight_norm,  # the older forward-pre-hook form
    ],
    ids=["weight_norm", "spectral_norm", "weight_norm_hook"],
)
def test_a_layer_with_a_computed_weight_is_refused_saying_how_to_bake_it_in(wrap):
    import warnings

    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the older form is deprecated
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), wrap(nn.Conv2d(8, 8, 3)), nn.Flatten(), nn.LazyLinear(4))
        model(torch.zeros(1, 3, 16, 16))
    with pytest.raises(
        UnsupportedModelError, match=r"layer '2' .*computes its weight.*remove_parametrizations"
    ) as info:
        PruneSpace(model.eval(), spec)
    assert "\n" not in str(info.value)


def test_a_trace_failure_shows_the_models_own_error_and_leaves_no_hooks():
    class Frozen(nn.Module):  # updates a frozen parameter in place: fails once the trace makes it require grad
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)
            self.scale = nn.Parameter(torch.ones(8, 1, 1))

        def forward(self, x):
            self.scale.clamp_(0, 2)
            return self.head((self.scale * torch.relu(self.conv(x))).mean((2, 3)))

    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    model = Frozen().eval().requires_grad_(False)
    with pytest.raises(UnsupportedModelError, match="could not trace the model: RuntimeError: a leaf Variable"):
        PruneSpace(model, spec)  # the model's own error (torch-pruning's fallback call used to hide it)
    assert not any(m._forward_hooks for m in model.modules()), "tracing hooks left on the caller's model"
    assert not any(p.requires_grad for p in model.parameters())

    class ToNumpy(nn.Module):  # leaves autograd through numpy: the error names it
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)

        def forward(self, x):
            h = torch.relu(self.conv(x))
            h = torch.as_tensor(h.numpy()) if torch.is_grad_enabled() else h
            return self.head(h.mean((2, 3)))

    with pytest.raises(UnsupportedModelError, match="could not trace the model: RuntimeError: Can't call numpy"):
        PruneSpace(ToNumpy().eval(), spec)


def test_integer_parameters_are_left_alone_by_the_trace():
    class Reorders(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4)
            self.order = nn.Parameter(torch.tensor([3, 2, 1, 0]), requires_grad=False)  # cannot require grad

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean((2, 3)))[:, self.order]

    spec = InputSpec(shape=(3, 16, 16), mean=(0.5,), std=(0.25,), num_classes=4)
    model = Reorders().eval()
    model.conv.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    check_equivalence(model, spec, torch.rand(2, 3, 16, 16))
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
