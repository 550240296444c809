"""Data-free recovery: over-parameterization algebra, losses, inputs, determinism, resume, saving."""

import copy
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from robustprune import InputSpec
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.recover import RecoverConfig, RecoverResult, expand_model, merge_model, recover
from robustprune.recover.checkpoint import CheckpointMismatchError
from robustprune.recover.features import FeatureLayerError, auto_feature_layers, kept_channels
from robustprune.recover.inputs import augment
from robustprune.recover.losses import depth_weights, feature_loss, kd_loss, sp_loss
from robustprune.recover.overparam import ExpandedConv, ExpandedLinear
from robustprune.structure import PruneSpace, export, load_pruned


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: thread start-up costs more than it saves, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPEC = InputSpec(shape=(1, 8, 8), mean=(0.3,), std=(0.35,), num_classes=3)


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyRes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, 1, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.layers = nn.Sequential(Block(6, 6, 1), Block(6, 8, 2))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


def tiny_res(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyRes()
    with torch.no_grad():  # non-trivial BN statistics, so pruning and inversion have something to match
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model.head.weight.mul_(10.0)  # confident logits, so pruning visibly changes them
    return model.eval()


def pruned_pair(seed: int = 0):
    """(original, pruned, candidate): every group keeps its first half (rounded up) of channels but one."""
    original = tiny_res(seed)
    space = PruneSpace(original, SPEC)
    candidate = {g.name: tuple(range(1, (g.size + 1) // 2 + 1)) for g in space.groups}
    return original, export(space, candidate), candidate


FAST = RecoverConfig(
    steps=4,
    batch_size=8,
    pool_size=16,
    synthetic=SyntheticConfig(steps=3, batch_size=16),
    adv_fraction=0.25,
    adv_steps=2,
    expand=2,
    checkpoint_every=2,
)


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------------------------------------------------------
# over-parameterization


def layer_zoo() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2, bias=True),  # stride, padding, dilation, bias
        nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),  # depthwise
        nn.Conv2d(6, 4, 1, groups=2, bias=True),  # grouped 1x1
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
    )


def conv1d_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv1d(2, 5, 3, padding=1, padding_mode="circular"), nn.Flatten(), nn.Linear(40, 3))


@pytest.mark.parametrize("factory, shape", [(layer_zoo, (5, 3, 8, 8)), (conv1d_net, (5, 2, 8))])
@pytest.mark.parametrize("expand", [1, 3])
def test_expanded_model_equals_compact_at_init(factory, shape, expand):
    compact = factory()
    before = copy.deepcopy(compact.state_dict())
    expanded = expand_model(compact, expand, seed=1)
    x = torch.randn(shape)
    assert (expanded(x) - compact(x)).abs().max().item() <= 1e-5
    chains = [m for m in expanded.modules() if isinstance(m, ExpandedConv | ExpandedLinear)]
    assert len(chains) == sum(isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear) for m in compact.modules())
    assert params(expanded) > params(compact) or expand == 1
    for k, v in compact.state_dict().items():  # the compact model is untouched
        assert torch.equal(v, before[k])


class Attention(nn.Module):
    """Self-attention over 4 tokens: nn.MultiheadAttention reads its out_proj's .weight directly."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Linear(3, 8), nn.Linear(8, 2)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        h = self.embed(x)
        return self.head(self.attn(h, h, h, need_weights=False)[0].mean(1))


def test_expansion_leaves_the_layers_attention_reads_by_weight():
    torch.manual_seed(0)
    compact = Attention().eval()
    expanded = expand_model(compact, 2, seed=0).eval()
    x = torch.randn(5, 4, 3)
    with torch.no_grad():
        assert (expanded(x) - compact(x)).abs().max().item() <= 1e-5
    assert type(expanded.attn.out_proj) is type(compact.attn.out_proj)  # kept: attention reads its .weight
    assert isinstance(expanded.embed, ExpandedLinear) and isinstance(expanded.head, ExpandedLinear)
    assert isinstance(merge_model(expanded).embed, nn.Linear)


def test_expansion_trains_the_whole_chain_not_a_padded_copy():
    conv = nn.Conv2d(4, 3, 3, bias=False)
    chain = expand_model(nn.Sequential(conv), 4, seed=0)[0]
    first = chain.first.weight.detach().reshape(12, -1)
    assert first.abs().min() > 0  # no zero rows: the extra channels carry signal
    assert torch.linalg.matrix_rank(chain.second.weight.detach().reshape(3, 12)) == 3


@pytest.mark.parametrize(
    "factory, shape", [(layer_zoo, (6, 3, 8, 8)), (conv1d_net, (6, 2, 8)), (tiny_res, (6, 1, 8, 8))]
)
def test_merged_model_equals_trained_expanded_one(factory, shape):
    compact = factory().train()
    expanded = expand_model(compact, 4, seed=0)
    opt = torch.optim.SGD(expanded.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = torch.randn(shape, generator=gen)
        loss = expanded(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    expanded.eval()
    merged = merge_model(expanded).eval()
    x = torch.randn(shape, generator=gen)
    with torch.no_grad():
        assert (merged(x) - expanded(x)).abs().max().item() <= 1e-4
        assert (merged(x) - compact.eval()(x)).abs().max().item() > 1e-3  # training did change the function
    assert params(merged) == params(compact)
    shapes = {k: v.shape for k, v in compact.state_dict().items()}
    assert {k: v.shape for k, v in merged.state_dict().items()} == shapes
    for (na, a), (nb, b) in zip(compact.named_modules(), merged.named_modules(), strict=True):
        assert na == nb and type(a) is type(b)
        if isinstance(a, nn.Conv1d | nn.Conv2d):
            for attr in ("stride", "padding", "dilation", "groups", "padding_mode"):
                assert getattr(a, attr) == getattr(b, attr)


def test_expand_and_merge_leave_the_global_rng_alone():
    compact = layer_zoo()  # seeds the global RNG itself: built first
    expanded = expand_model(compact, 2, seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        plain = torch.rand(3)
        torch.manual_seed(0)
        expand_model(compact, 2, seed=1)
        merge_model(expanded)
        assert torch.equal(torch.rand(3), plain)  # the caller's draws after these are what they would be


def test_expand_rejects_bad_multiplier():
    with pytest.raises(ValueError, match="expand"):
        expand_model(layer_zoo(), 0)


# ---------------------------------------------------------------------------------------------------------------
# losses and features


def test_kd_loss_is_zero_only_for_matching_logits():
    t = torch.randn(4, 3)
    assert kd_loss(t, t, 4.0).abs().item() < 1e-6
    assert kd_loss(torch.randn(4, 3), t, 4.0).item() > 1e-3


def test_sp_loss_compares_batch_similarities_across_widths():
    a = torch.randn(6, 4, 3, 3)
    assert sp_loss([a], [a]).item() < 1e-10
    assert sp_loss([a * 3.0], [a]).item() < 1e-10  # scale-free: rows are normalized
    assert sp_loss([torch.randn(6, 2, 3, 3)], [a]).item() > 1e-4  # widths may differ


def test_depth_weights_grow_and_sum_to_one():
    w = depth_weights(4)
    assert w == sorted(w) and abs(sum(w) - 1) < 1e-12


def test_auto_feature_layers_are_block_outputs():
    assert auto_feature_layers(tiny_res()) == ["layers.0", "layers.1"]
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    assert auto_feature_layers(mlp) == ["1"]  # no blocks, no BN: hidden layers, not the logits


@pytest.mark.parametrize(
    "name, count, first",
    [("resnet20", 9, "layer1.0"), ("mobilenetv2", 8, "features.3"), ("cnn", 3, "1"), ("mlp", 3, "1")],
)
def test_auto_feature_layers_of_the_zoo(name, count, first):
    from robustprune.zoo import build

    layers = auto_feature_layers(build(name))
    assert len(layers) == count and layers[0] == first


def test_kept_channels_follow_the_candidate():
    original, pruned, candidate = pruned_pair()
    kept = kept_channels(PruneSpace(original, SPEC), candidate, ["layers.0", "layers.1"])
    assert set(kept) == {"layers.0", "layers.1"}
    with torch.no_grad():
        out = pruned.layers(pruned.stem(torch.zeros(1, *SPEC.shape)))
    assert len(kept["layers.1"]) == out.shape[1]
    assert kept["layers.0"] == [1, 2, 3]  # the stem group (6 channels) keeps 1..3


# ---------------------------------------------------------------------------------------------------------------
# inputs


def test_augment_shifts_flips_and_stays_in_range():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 3] = 1.0
    cfg = RecoverConfig(shift=2, flip=True, noise=0.0)
    out = augment(x, SPEC, cfg, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # a shift by <= 2 keeps this pixel inside
    positions = {tuple(torch.nonzero(o[0]).tolist()[0]) for o in out}
    assert len(positions) > 5  # per-sample shifts and flips, not one for the whole batch
    noisy = augment(x, SPEC, RecoverConfig(shift=0, flip=False, noise=0.1), torch.Generator().manual_seed(0))
    assert not torch.equal(noisy, x) and noisy.min() >= 0


# ---------------------------------------------------------------------------------------------------------------
# recover()


def test_config_validation():
    with pytest.raises(ValueError, match="inputs"):
        RecoverConfig(inputs="real")
    with pytest.raises(ValueError, match="bn"):
        RecoverConfig(bn="sometimes")
    with pytest.raises(ValueError, match="adv_fraction"):
        RecoverConfig(adv_fraction=1.5)
    with pytest.raises(ValueError, match="nothing to train"):
        RecoverConfig(kd_weight=0, feature_weight=0, sp_weight=0)
    assert RecoverConfig.from_dict(FAST.to_dict()) == FAST


def test_recover_returns_a_new_compact_model_and_leaves_inputs_alone():
    original, pruned, candidate = pruned_pair()
    before_p = copy.deepcopy(pruned.state_dict())
    before_o = copy.deepcopy(original.state_dict())
    result = recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True)
    assert isinstance(result, RecoverResult) and result.model is not pruned
    for k, v in pruned.state_dict().items():
        assert torch.equal(v, before_p[k])
    for k, v in original.state_dict().items():
        assert torch.equal(v, before_o[k])
    assert {k: v.shape for k, v in result.model.state_dict().items()} == {k: v.shape for k, v in before_p.items()}
    assert params(result.model) == params(pruned)
    assert len(result.losses) == FAST.steps and set(result.parts) == {"kd", "feature", "sp"}
    assert result.adapted_layers == []  # kept channels known: no adapter
    assert not result.model.training


def test_recover_reduces_the_distillation_loss():
    original, pruned, candidate = pruned_pair()
    cfg = dataclasses.replace(FAST, steps=30, adv_fraction=0.0, lr=0.05, feature_weight=0.0, sp_weight=0.0)
    result = recover(pruned, original, SPEC, cfg, candidate=candidate, quiet=True)
    assert sum(result.parts["kd"][-5:]) < 0.5 * sum(result.parts["kd"][:5])


def test_unknown_kept_channels_use_adapters():
    original, pruned, _ = pruned_pair()
    result = recover(pruned, original, SPEC, dataclasses.replace(FAST, expand=1), quiet=True)
    assert result.adapted_layers == ["layers.0", "layers.1"]
    assert params(result.model) == params(pruned)  # adapters are dropped


class ChannelsLast(nn.Module):
    """A ConvNeXt-style net: Linear layers on (N, H, W, C) features, no BatchNorm and no nn.Sequential blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.norm = nn.LayerNorm(6)
        self.pw1, self.pw2 = nn.Linear(6, 12), nn.Linear(12, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.norm(self.stem(x).permute(0, 2, 3, 1))
        x = x + self.pw2(torch.relu(self.pw1(x)))
        return self.head(x.mean((1, 2)))


def channels_last_pair():
    torch.manual_seed(0)
    original = ChannelsLast().eval()
    space = PruneSpace(original, SPEC)
    candidate = {g.name: tuple(range(0, g.size, 2)) for g in space.groups}
    return original, export(space, candidate), candidate


@pytest.mark.parametrize("known", [True, False])
def test_channels_last_features_are_compared_on_their_channel_axis(known):
    original, pruned, candidate = channels_last_pair()
    config = dataclasses.replace(FAST, expand=1, steps=2)
    result = recover(pruned, original, SPEC, config, candidate=candidate if known else None, quiet=True)
    assert result.feature_layers == ["stem", "pw1", "pw2"]  # no BN, no blocks: the convs and linears
    assert result.adapted_layers == ([] if known else ["stem", "pw1", "pw2"])  # each narrowed: an adapter
    assert all(math.isfinite(v) for v in result.parts["feature"])


def test_feature_loss_takes_the_kept_channels_on_the_given_axis():
    teacher = {"a": torch.randn(2, 3, 3, 6)}
    kept = {"a": [0, 2, 5]}
    student = {"a": teacher["a"][..., kept["a"]] + 1.0}
    loss = feature_loss(student, teacher, ["a"], kept, nn.ModuleDict(), {"a": -1})
    assert loss.item() == pytest.approx(1.0)


class GramBlock(nn.Module):
    """Outputs (N, C, C): pruned, it narrows on two axes, so no channel axis can compare it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)

    def forward(self, x):
        f = self.conv(x).flatten(2)
        return f @ f.transpose(1, 2) / f.shape[-1]


class GramHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, 3)

    def forward(self, g):
        return self.fc(g.mean(2))


def gram_pair():
    torch.manual_seed(0)
    original = nn.Sequential(GramBlock(6), GramHead(6)).eval()
    pruned = nn.Sequential(GramBlock(3), GramHead(3)).eval()
    with torch.no_grad():
        pruned[0].conv.weight.copy_(original[0].conv.weight[:3])
        pruned[0].conv.bias.copy_(original[0].conv.bias[:3])
        pruned[1].fc.weight.copy_(original[1].fc.weight[:, :3])
        pruned[1].fc.bias.copy_(original[1].fc.bias)
    return original, pruned


def test_a_feature_layer_that_narrows_on_two_axes_is_refused_if_named_and_left_out_if_automatic():
    original, pruned = gram_pair()
    config = dataclasses.replace(FAST, expand=1, steps=1)
    assert auto_feature_layers(original) == ["0", "1"]
    assert recover(pruned, original, SPEC, config, quiet=True).feature_layers == ["1"]
    with pytest.raises(FeatureLayerError, match="'0' gives outputs of shape"):
        recover(pruned, original, SPEC, dataclasses.replace(config, features=("0",)), quiet=True)


def test_same_seed_same_weights_other_seed_other_weights():
    original, pruned, candidate = pruned_pair()
    a = recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True)
    b = recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True)
    assert_same_weights(a.model, b.model)
    assert a.losses == b.losses
    c = recover(pruned, original, SPEC, dataclasses.replace(FAST, seed=1), candidate=candidate, quiet=True)
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in a.model.state_dict().items())


class Crash(Exception):
    pass


def test_resume_after_a_crash_equals_a_straight_run(tmp_path):
    original, pruned, candidate = pruned_pair()
    straight = recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True)

    def crash_at_half(line: str) -> None:
        if line.startswith(f"step {FAST.checkpoint_every}/"):
            raise Crash

    with pytest.raises(Crash):
        recover(
            pruned, original, SPEC, FAST, candidate=candidate, quiet=True, checkpoint_dir=tmp_path, log=crash_at_half
        )
    lines = []
    resumed = recover(
        pruned, original, SPEC, FAST, candidate=candidate, quiet=True, checkpoint_dir=tmp_path, log=lines.append
    )
    assert resumed.resumed_from == FAST.checkpoint_every
    assert any(line.startswith("resuming from step 2/4") for line in lines)
    assert_same_weights(straight.model, resumed.model)
    assert resumed.losses == straight.losses


def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path):
    original, pruned, candidate = pruned_pair()
    recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="lr"):
        recover(pruned, original, SPEC, dataclasses.replace(FAST, lr=0.1), quiet=True, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="original_sha256"):
        recover(pruned, tiny_res(seed=1), SPEC, FAST, quiet=True, checkpoint_dir=tmp_path)


def test_a_checkpoint_folder_in_use_by_another_recovery_is_refused(tmp_path):
    from robustprune._io import claim
    from robustprune.recover.checkpoint import LOCK_FILE, CheckpointInUseError

    original, pruned, candidate = pruned_pair()
    with claim(tmp_path / LOCK_FILE) as mine:  # as a live process recovering into it holds it
        assert mine
        with pytest.raises(CheckpointInUseError, match="another process is recovering into"):
            recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True, checkpoint_dir=tmp_path)
    assert not (tmp_path / "recover.ckpt").exists()
    recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True, checkpoint_dir=tmp_path)  # free again
    assert (tmp_path / "recover.ckpt").is_file() and not (tmp_path / LOCK_FILE).exists()


def test_bn_modes():
    original, pruned, candidate = pruned_pair()
    cfg = dataclasses.replace(FAST, adv_fraction=0.0, expand=1)
    frozen = recover(pruned, original, SPEC, dataclasses.replace(cfg, bn="frozen"), candidate=candidate, quiet=True)
    trained = recover(pruned, original, SPEC, cfg, candidate=candidate, quiet=True)
    key = "layers.0.bn1.running_mean"
    assert torch.equal(frozen.model.state_dict()[key], pruned.state_dict()[key])
    assert not torch.equal(trained.model.state_dict()[key], pruned.state_dict()[key])


def test_fresh_inputs_and_logit_only_distillation():
    original, pruned, _ = pruned_pair()
    cfg = dataclasses.replace(FAST, inputs="fresh", feature_weight=0.0, sp_weight=0.0, adv_fraction=0.0, expand=1)
    result = recover(pruned, original, SPEC, cfg, quiet=True)
    assert set(result.parts) == {"kd"} and result.feature_layers == []
    assert result.pool_seconds == 0.0


def test_a_given_pool_replaces_the_synthetic_one():
    original, pruned, candidate = pruned_pair()
    cfg = dataclasses.replace(FAST, adv_fraction=0.0)
    pool = torch.rand(6, *SPEC.shape, generator=torch.Generator().manual_seed(3))
    a = recover(pruned, original, SPEC, cfg, candidate=candidate, pool=pool, quiet=True)
    assert a.pool_seconds == 0.0  # nothing synthesized
    b = recover(pruned, original, SPEC, cfg, candidate=candidate, pool=pool.clone(), quiet=True)
    assert a.losses == b.losses
    c = recover(pruned, original, SPEC, cfg, candidate=candidate, pool=1 - pool, quiet=True)
    assert c.losses != a.losses  # the batches came from the given pool
    with pytest.raises(ValueError, match="pool must be"):
        recover(pruned, original, SPEC, cfg, pool=torch.rand(4, 8, 8), quiet=True)
    with pytest.raises(ValueError, match="inputs='pool'"):
        recover(pruned, original, SPEC, dataclasses.replace(cfg, inputs="fresh"), pool=pool, quiet=True)


def test_save_writes_a_loadable_run_folder(tmp_path):
    original, pruned, candidate = pruned_pair()
    result = recover(pruned, original, SPEC, FAST, candidate=candidate, quiet=True)
    result.save(tmp_path)
    for name in ("pruned.pt", "spec.json", "recover.json", "recover_loss.png"):
        assert (tmp_path / name).is_file(), name
    loaded, spec, _ = load_pruned(tmp_path, build=tiny_res)
    assert spec == SPEC
    assert_same_weights(loaded, result.model)
    summary = json.loads((tmp_path / "recover.json").read_text())
    assert summary["steps"] == FAST.steps and len(summary["losses"]) == FAST.steps
    assert RecoverConfig.from_dict(summary["config"]) == FAST


def test_save_without_kept_channels_writes_the_weights(tmp_path):
    original, pruned, _ = pruned_pair()
    result = recover(pruned, original, SPEC, dataclasses.replace(FAST, steps=1), quiet=True)
    result.save(tmp_path)
    assert (tmp_path / "pruned.pt").is_file() and not (tmp_path / "spec.json").exists()
    pruned.load_state_dict(torch.load(tmp_path / "pruned.pt", weights_only=True))


def test_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    original, pruned, _ = pruned_pair()
    with pytest.raises(ValueError, match="cuda"):
        recover(pruned, original, SPEC, FAST, device="cuda", quiet=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recover_on_cuda():
    original, pruned, candidate = pruned_pair()
    result = recover(pruned, original, SPEC, FAST, candidate=candidate, device="cuda", quiet=True)
    assert result.device.startswith("cuda") and next(result.model.parameters()).device.type == "cpu"
