import copy
import dataclasses
import warnings

import pytest
import torch
from torch import nn

from robustprune import InputSpec, zoo
from robustprune.probes import cache as cache_mod
from robustprune.probes.cache import cache_key, cached_generate, default_cache_dir, weights_hash
from robustprune.probes.synthetic import KINDS, SyntheticConfig, SyntheticSet, bn_statistics_loss, generate
from robustprune.zoo.architectures import ARCHITECTURES

SMALL = InputSpec(shape=(1, 12, 12), mean=(0.3,), std=(0.35,), num_classes=4)
SIGNED = InputSpec(shape=(1, 12, 12), mean=(0.0,), std=(0.5,), num_classes=4, value_range=(-1.0, 1.0))
FAST = dict(n=16, steps=6, batch_size=8)


def tiny_bn_net(num_classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, num_classes),
    )
    randomize_bn(model)
    return model.eval()


def tiny_mlp(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(144, 16), nn.ReLU(), nn.Linear(16, num_classes)).eval()


def randomize_bn(model: nn.Module, side: int = 12, seed: int = 1) -> None:
    """Running statistics of a random 'training set' of smooth blobs: reachable, but far from Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(64, 1, 4, 4, generator=gen)
    blobs = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear") ** 3
    flags = [(m, m.training) for m in model.modules()]
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model((blobs - 0.3) / 0.35)
    for m, flag in flags:
        m.training = flag
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1


@pytest.fixture(scope="module")
def trained_cnn():
    try:
        return zoo.load("cnn")
    except FileNotFoundError:
        pytest.skip("trained zoo cnn not available")


# ---------------------------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"kind": "dream"}, "kind"),
        ({"n": 0}, "n"),
        ({"steps": -1}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"tv_weight": -1.0}, "tv_weight"),
        ({"bn_weight": float("inf")}, "bn_weight"),
        ({"jitter": -2}, "jitter"),
        ({"n": 2.5}, "n"),
        ({"flip": "yes"}, "flip"),
    ],
)
def test_config_validation(kwargs, word):
    with pytest.raises(ValueError, match=word):
        SyntheticConfig(**kwargs)


def test_config_defaults_and_kinds():
    cfg = SyntheticConfig()
    assert KINDS == ("gaussian", "bn_stats", "inversion")
    assert (cfg.kind, cfg.n, cfg.steps, cfg.batch_size) == ("inversion", 512, 200, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------------
# generation


@pytest.mark.parametrize("spec", [SMALL, SIGNED], ids=["unit", "signed"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_respects_range_and_shape(kind, spec):
    out = generate(tiny_bn_net(), spec, SyntheticConfig(kind=kind, n=10, steps=5, batch_size=4, lr=0.5))
    assert isinstance(out, SyntheticSet)
    assert out.pixels.shape == (10, *spec.shape) and out.pixels.dtype == torch.float32
    low, high = spec.value_range
    assert out.pixels.min() >= low and out.pixels.max() <= high
    assert torch.isfinite(out.pixels).all()
    assert (out.targets is not None) == (kind == "inversion")
    assert out.final_bn_loss is not None and out.final_bn_loss >= 0
    assert out.seconds >= 0 and out.config.kind == kind


def test_gaussian_matches_spec_statistics():
    spec = InputSpec(shape=(1, 12, 12), mean=(0.0,), std=(1.0,), num_classes=4, value_range=(-50.0, 50.0))
    out = generate(tiny_bn_net(), spec, SyntheticConfig(kind="gaussian", n=64))
    assert abs(out.pixels.mean().item()) < 0.05 and abs(out.pixels.std().item() - 1.0) < 0.05
    clamped = generate(tiny_bn_net(), SMALL, SyntheticConfig(kind="gaussian", n=64)).pixels
    assert clamped.min() >= 0 and clamped.max() <= 1 and (clamped == 0).any()


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_for_seed_and_global_rng_untouched(kind):
    model = tiny_bn_net()
    state = torch.get_rng_state()
    a = generate(model, SMALL, SyntheticConfig(kind=kind, **FAST))
    b = generate(model, SMALL, SyntheticConfig(kind=kind, **FAST))
    assert torch.equal(torch.get_rng_state(), state)
    c = generate(model, SMALL, SyntheticConfig(kind=kind, seed=1, **FAST))
    assert torch.equal(a.pixels, b.pixels)
    assert not torch.equal(a.pixels, c.pixels)
    if kind == "inversion":
        assert torch.equal(a.targets, b.targets)


@pytest.mark.parametrize("kind", ["bn_stats", "inversion"])
def test_model_untouched(kind):
    model = tiny_bn_net()
    model.train()
    model[1].eval()  # mixed per-module flags must come back exactly
    model[0].weight.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    generate(model, SMALL, SyntheticConfig(kind=kind, **FAST))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())


def test_inversion_targets_balanced_and_shuffled():
    out = generate(tiny_bn_net(), SMALL, SyntheticConfig(kind="inversion", n=30, steps=1, batch_size=16))
    assert out.targets.dtype == torch.int64 and out.targets.shape == (30,)
    assert torch.bincount(out.targets, minlength=4).tolist() == [8, 8, 7, 7]
    assert not torch.equal(out.targets, torch.arange(30) % 4)


def test_inversion_fits_targets():
    model = tiny_mlp()
    cfg = SyntheticConfig(kind="inversion", n=16, steps=40, batch_size=16, lr=0.25, jitter=0, flip=False)
    out = generate(model, SMALL, cfg)
    with torch.no_grad():
        pred = model(SMALL.normalize(out.pixels)).argmax(1)
    assert (pred == out.targets).float().mean() >= 0.75


def test_batches_split_evenly_and_progress_lines():
    lines: list[str] = []
    cfg = SyntheticConfig(kind="bn_stats", n=9, steps=8, batch_size=8)
    out = generate(tiny_bn_net(), SMALL, cfg, progress=lines.append)
    assert out.pixels.shape[0] == 9
    # 9 images at batch_size 8 -> two batches (5 + 4); a line every 2 of 8 steps
    assert len(lines) == 8
    assert lines[0].startswith("batch 1/2, step 2/8, loss ")
    assert lines[-1].startswith("batch 2/2, step 8/8, loss ")


def test_bn_stats_reduces_bn_loss_on_untrained_cnn():
    model = ARCHITECTURES["cnn"]().eval()
    randomize_bn(model, side=28)
    spec = InputSpec(shape=(1, 28, 28), mean=(0.286,), std=(0.353,), num_classes=10)
    noise = generate(model, spec, SyntheticConfig(kind="gaussian", n=16, seed=3))
    optimized = generate(model, spec, SyntheticConfig(kind="bn_stats", n=16, batch_size=16, steps=25, lr=0.2, seed=3))
    start = bn_statistics_loss(model, spec.normalize(noise.pixels))
    end = bn_statistics_loss(model, spec.normalize(optimized.pixels))
    assert optimized.final_bn_loss == pytest.approx(end)
    assert end < 0.7 * start


def test_mlp_without_bn():
    model = tiny_mlp()
    out = generate(model, SMALL, SyntheticConfig(kind="inversion", **FAST))
    assert out.final_bn_loss is None and out.targets.shape == (16,)
    assert out.pixels.min() >= 0 and out.pixels.max() <= 1
    with pytest.raises(ValueError, match="BatchNorm"):
        generate(model, SMALL, SyntheticConfig(kind="bn_stats", **FAST))
    with pytest.raises(ValueError, match="BatchNorm"):
        bn_statistics_loss(model, torch.zeros(2, 1, 12, 12))
    assert generate(model, SMALL, SyntheticConfig(kind="gaussian", n=4)).final_bn_loss is None


def test_zoo_mlp_inversion():
    model = ARCHITECTURES["mlp"]().eval()
    spec = InputSpec(shape=(1, 28, 28), mean=(0.286,), std=(0.353,), num_classes=10)
    out = generate(model, spec, SyntheticConfig(kind="inversion", n=20, steps=3, batch_size=10))
    assert out.pixels.shape == (20, 1, 28, 28) and torch.bincount(out.targets).tolist() == [2] * 10


def test_bn_statistics_loss_is_exact_over_chunks():
    model = tiny_bn_net()
    x = torch.randn(20, 1, 12, 12)
    whole = bn_statistics_loss(model, x, batch_size=20)
    assert bn_statistics_loss(model, x, batch_size=3) == pytest.approx(whole, rel=1e-6)
    assert not model.training


def test_real_data_and_bn_stats_closer_than_gaussian(trained_cnn):
    model, spec = trained_cnn
    gaussian = generate(model, spec, SyntheticConfig(kind="gaussian", n=256))
    g_loss = bn_statistics_loss(model, spec.normalize(gaussian.pixels))
    assert gaussian.final_bn_loss == pytest.approx(g_loss)
    bn = generate(model, spec, SyntheticConfig(kind="bn_stats", n=16, batch_size=16, steps=30, lr=0.25))
    assert bn.final_bn_loss < 0.5 * g_loss
    fm = pytest.importorskip("robustprune.data.fashion_mnist")
    try:
        x, _ = fm.load_fashion_mnist("test")
    except fm.DataNotFoundError:
        pytest.skip("Fashion-MNIST not installed")
    real = bn_statistics_loss(model, spec.normalize(x[:256]))
    assert real < 0.5 * g_loss


# ---------------------------------------------------------------------------------------------------------------
# cache


@pytest.fixture
def counting(monkeypatch):
    calls = []
    real = cache_mod.generate

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "generate", spy)
    return calls


def test_cache_hit_skips_generation(tmp_path, counting):
    model = tiny_bn_net()
    cfg = SyntheticConfig(kind="inversion", **FAST)
    first = cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    second = cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    assert len(counting) == 1
    assert torch.equal(first.pixels, second.pixels) and torch.equal(first.targets, second.targets)
    assert second.final_bn_loss == pytest.approx(first.final_bn_loss) and second.config == cfg
    assert [p.name for p in tmp_path.iterdir()] == [f"synthetic-inversion-{cache_key(model, SMALL, cfg)}.pt"]
    assert next(tmp_path.iterdir()).stat().st_mode & 0o777 == 0o600  # inverted inputs stay the owner's


def test_cache_key_tracks_weights_config_and_spec(tmp_path, counting):
    model = tiny_bn_net()
    cfg = SyntheticConfig(kind="gaussian", n=8)
    key = cache_key(model, SMALL, cfg)
    assert cache_key(tiny_bn_net(), SMALL, cfg) == key  # same weights, same key
    assert cache_key(model, SMALL, dataclasses.replace(cfg, seed=1)) != key
    assert cache_key(model, SIGNED, cfg) != key
    cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    h = weights_hash(model)
    with torch.no_grad():
        model[1].running_var.add_(0.1)  # a buffer counts as a weight
    assert weights_hash(model) != h and cache_key(model, SMALL, cfg) != key
    cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    cached_generate(model, SMALL, dataclasses.replace(cfg, n=9), cache_dir=tmp_path)
    assert len(counting) == 3 and len(list(tmp_path.iterdir())) == 3


def test_cache_key_tracks_architecture():
    a = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    b = nn.Sequential(nn.Conv2d(1, 2, 3, padding=0), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    b.load_state_dict(a.state_dict())
    cfg = SyntheticConfig(kind="gaussian", n=2)
    assert weights_hash(a) == weights_hash(b) and cache_key(a, SMALL, cfg) != cache_key(b, SMALL, cfg)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip_pixel"])
def test_corrupt_cache_is_regenerated(tmp_path, counting, damage):
    model = tiny_bn_net()
    cfg = SyntheticConfig(kind="inversion", **FAST)
    first = cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    (path,) = tmp_path.iterdir()
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a torch file" * 50)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a well-formed file whose pixels no longer match the checksum
        blob = torch.load(path, weights_only=True)
        blob["pixels"][0, 0, 0, 0] = 0.5 if blob["pixels"][0, 0, 0, 0] != 0.5 else 0.25
        torch.save(blob, path)
    with pytest.warns(UserWarning, match="regenerating"):
        again = cached_generate(model, SMALL, cfg, cache_dir=tmp_path)
    assert len(counting) == 2 and torch.equal(again.pixels, first.pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cached_generate(model, SMALL, cfg, cache_dir=tmp_path)  # rewritten: a clean hit now
    assert len(counting) == 2
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


def test_default_cache_dir(monkeypatch, tmp_path, counting):
    monkeypatch.setenv("ROBUSTPRUNE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    cached_generate(tiny_bn_net(), SMALL, SyntheticConfig(kind="gaussian", n=4))
    assert len(list((tmp_path / "c").iterdir())) == 1
    monkeypatch.delenv("ROBUSTPRUNE_CACHE_DIR")
    assert default_cache_dir().parts[-2:] == (".cache", "robustprune")


def test_explicit_cpu_device_matches_default():
    model = tiny_bn_net()
    cfg = SyntheticConfig(kind="inversion", **FAST)
    assert torch.equal(generate(model, SMALL, cfg).pixels, generate(model, SMALL, cfg, device="cpu").pixels)
