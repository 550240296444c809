"""Data layer: Fashion-MNIST loader errors and parsing, corruptions, OOD sets. Fast; real data only when installed."""

from __future__ import annotations

import gzip
import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustprune.data import fashion_mnist as fm
from robustprune.data.corruptions import (
    CORRUPTIONS,
    SEVERITY_PARAMS,
    corrupt,
    corruption_suite,
    generator_seed,
)
from robustprune.data.ood import far_ood_digits, near_ood_flipped, ood_sets, uniform_noise

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
NOISY = ("gaussian_noise", "shot_noise", "impulse_noise", "affine")


# --------------------------------------------------------------------------------------------------------- helpers
def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)


def _write_test_pair(directory: Path, images: np.ndarray, labels: np.ndarray) -> None:
    image_name, label_name, _ = fm._FILES["test"]
    _write_gz(directory / image_name, _idx_bytes(images))
    _write_gz(directory / label_name, _idx_bytes(labels))


@pytest.fixture
def tiny_test_split(monkeypatch, tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Three 28x28 images written as IDX files, with the loader told to expect three."""
    image_name, label_name, _ = fm._FILES["test"]
    monkeypatch.setitem(fm._FILES, "test", (image_name, label_name, 3))
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    images[0] = 255
    images[1, 5, 7] = 128
    images[2] = np.arange(28 * 28).reshape(28, 28) % 256
    labels = np.array([9, 0, 4], dtype=np.uint8)
    _write_test_pair(tmp_path, images, labels)
    return tmp_path, images, labels


def _smooth_images(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random images (bilinear upsampling of 10x10 noise), not aligned with any pixelation grid."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand((n, 1, 10, 10), generator=gen)
    return F.interpolate(low, size=(28, 28), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return _smooth_images()


# ---------------------------------------------------------------------------------------------------------- loader
def test_missing_files_name_the_debian_package(tmp_path):
    with pytest.raises(fm.DataNotFoundError) as info:
        fm.load_fashion_mnist(root=tmp_path)
    message = str(info.value)
    assert "dataset-fashion-mnist" in message
    assert "apt-get install" in message
    assert str(tmp_path) in message
    assert isinstance(info.value, FileNotFoundError)


def test_env_var_overrides_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv(fm.ROOT_ENV_VAR, str(tmp_path))
    assert fm.ROOT_ENV_VAR == "ROBUSTPRUNE_FASHION_MNIST"
    assert fm.resolve_root() == tmp_path
    with pytest.raises(fm.DataNotFoundError, match="dataset-fashion-mnist") as info:
        fm.load_fashion_mnist()
    assert str(tmp_path) in str(info.value)


def test_env_var_dir_is_loaded(monkeypatch, tiny_test_split):
    directory, _, labels = tiny_test_split
    monkeypatch.setenv(fm.ROOT_ENV_VAR, str(directory))
    _, y = fm.load_fashion_mnist("test")
    assert y.tolist() == labels.tolist()


def test_explicit_root_beats_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(fm.ROOT_ENV_VAR, "/nonexistent/elsewhere")
    assert fm.resolve_root(tmp_path) == tmp_path


def test_bad_split_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="split"):
        fm.load_fashion_mnist(split="validation", root=tmp_path)


def test_truncated_idx_raises_value_error(tmp_path):
    image_name, label_name, count = fm._FILES["test"]
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", count, 28, 28)
    _write_gz(tmp_path / image_name, header + bytes(100))
    _write_gz(tmp_path / label_name, _idx_bytes(np.zeros(count, dtype=np.uint8)))
    with pytest.raises(ValueError, match="truncated"):
        fm.load_fashion_mnist(root=tmp_path)
    _write_gz(tmp_path / image_name, bytes([0, 0, 0x08, 3, 0, 0]))  # cut inside the header
    with pytest.raises(ValueError, match="truncated inside its header"):
        fm.load_fashion_mnist(root=tmp_path)


def test_garbage_idx_raises_value_error(tmp_path):
    image_name, label_name, _ = fm._FILES["test"]
    _write_gz(tmp_path / image_name, b"this is not an IDX file at all")
    _write_gz(tmp_path / label_name, b"\x00")
    with pytest.raises(ValueError, match="IDX"):
        fm.load_fashion_mnist(root=tmp_path)


def test_wrong_dimensions_raise_value_error(tmp_path):
    # images and labels swapped: a 1-d file where a 3-d one is expected
    image_name, label_name, count = fm._FILES["test"]
    _write_gz(tmp_path / image_name, _idx_bytes(np.zeros(count, dtype=np.uint8)))
    _write_gz(tmp_path / label_name, _idx_bytes(np.zeros(count, dtype=np.uint8)))
    with pytest.raises(ValueError, match="dimensions"):
        fm.load_fashion_mnist(root=tmp_path)


def test_count_mismatch_raises_value_error(monkeypatch, tmp_path):
    image_name, label_name, _ = fm._FILES["test"]
    monkeypatch.setitem(fm._FILES, "test", (image_name, label_name, 3))
    _write_test_pair(tmp_path, np.zeros((3, 28, 28), dtype=np.uint8), np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 3"):
        fm.load_fashion_mnist(root=tmp_path)


def test_tiny_valid_files_load(tiny_test_split):
    directory, images, labels = tiny_test_split
    x, y = fm.load_fashion_mnist("test", root=directory)
    assert x.shape == (3, 1, 28, 28)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert y.tolist() == [9, 0, 4]
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    assert torch.all(x[0] == 1.0)
    assert x[1, 0, 5, 7].item() == pytest.approx(128 / 255)
    assert x[1].sum().item() == pytest.approx(128 / 255)
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255.0)


@pytest.mark.skipif(
    not fm.fashion_mnist_available(),
    reason=f"real Fashion-MNIST not installed (install with: {fm.INSTALL_HINT})",
)
def test_real_test_split():
    x, y = fm.load_fashion_mnist("test")
    assert x.shape == (10_000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert torch.bincount(y, minlength=10).tolist() == [1000] * 10


# ----------------------------------------------------------------------------------------------------- corruptions
def test_corruption_names_and_table():
    expected = {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "gaussian_blur",
        "contrast",
        "brightness",
        "pixelate",
        "affine",
    }
    assert expected <= set(CORRUPTIONS)
    assert set(SEVERITY_PARAMS) == set(CORRUPTIONS)
    assert all(len(params) == 5 for params in SEVERITY_PARAMS.values())


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_shape_dtype_range(images, name):
    before = images.clone()
    for severity in range(1, 6):
        out = corrupt(images, name, severity)
        assert out.shape == images.shape
        assert out.dtype == torch.float32
        assert out.min().item() >= 0.0 and out.max().item() <= 1.0
        assert not torch.equal(out, images)
    torch.testing.assert_close(images, before, rtol=0, atol=0)  # input untouched


def test_corruption_accepts_float64_and_multichannel():
    x = _smooth_images(4).double().repeat(1, 3, 1, 1)
    for name in CORRUPTIONS:
        out = corrupt(x, name, 3)
        assert out.shape == x.shape and out.dtype == torch.float32


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_same_output(images, name):
    assert torch.equal(corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=7))


def test_global_rng_untouched(images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    for name in NOISY:
        corrupt(images, name, 2)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", NOISY)
def test_different_seed_different_output(images, name):
    assert not torch.equal(corrupt(images, name, 3, seed=0), corrupt(images, name, 3, seed=1))


def test_generator_seed_is_stable_formula():
    # documented formula, independent of PYTHONHASHSEED
    assert generator_seed(0, "gaussian_noise", 1) == 1
    assert generator_seed(2, "affine", 5) == 2000 + 10 * CORRUPTIONS.index("affine") + 5
    seeds = {generator_seed(s, n, v) for s in range(3) for n in CORRUPTIONS for v in range(1, 6)}
    assert len(seeds) == 3 * len(CORRUPTIONS) * 5


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_severity_is_monotone(images, name, seed):
    change = [(corrupt(images, name, s, seed=seed) - images).abs().mean().item() for s in range(1, 6)]
    assert all(b >= a for a, b in zip(change, change[1:], strict=False)), change
    assert change[4] > change[0], change


@pytest.mark.parametrize("severity", [0, 6, -1])
def test_bad_severity_raises(images, severity):
    with pytest.raises(ValueError, match="severity"):
        corrupt(images, "contrast", severity)


def test_unknown_name_lists_valid_names(images):
    with pytest.raises(ValueError, match="unknown corruption") as info:
        corrupt(images, "fog", 1)
    for name in CORRUPTIONS:
        assert name in str(info.value)


def test_corrupt_rejects_non_batch(images):
    with pytest.raises(ValueError, match="N, C, H, W"):
        corrupt(images[0], "contrast", 1)


def test_corruption_suite(images):
    items = list(corruption_suite(images[:2], severities=(1, 5), names=("contrast", "gaussian_noise"), seed=3))
    assert [(n, s) for n, s, _ in items] == [
        ("contrast", 1),
        ("contrast", 5),
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
    ]
    for name, severity, out in items:
        assert torch.equal(out, corrupt(images[:2], name, severity, seed=3))
    assert len(list(corruption_suite(images[:1]))) == len(CORRUPTIONS) * 5
    with pytest.raises(ValueError):
        next(corruption_suite(images, names=("contrast", "fog")))


# ------------------------------------------------------------------------------------------------------------- OOD
@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn not installed (pip install robustprune[eval])")
def test_far_ood_digits():
    x = far_ood_digits()
    assert x.shape == (1797, 1, 28, 28)
    assert x.dtype == torch.float32
    assert x.min().item() >= 0.0 and x.max().item() <= 1.0
    assert x.max().item() > 0.9  # scaled by 16, not by 255


def test_far_ood_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        far_ood_digits()


def test_near_ood_flipped(images):
    flipped = near_ood_flipped(images)
    assert torch.equal(flipped, images.flip(2))
    assert torch.equal(flipped[:, :, 0], images[:, :, -1])


def test_uniform_noise_deterministic():
    a = uniform_noise(5, seed=1)
    assert a.shape == (5, 1, 28, 28) and a.dtype == torch.float32
    assert a.min().item() >= 0.0 and a.max().item() <= 1.0
    assert torch.equal(a, uniform_noise(5, seed=1))
    assert not torch.equal(a, uniform_noise(5, seed=2))


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn not installed (pip install robustprune[eval])")
def test_ood_sets(images):
    sets = ood_sets(images)
    assert list(sets) == ["digits", "flipped", "noise"]
    assert len(sets["digits"]) == 1797
    assert len(sets["flipped"]) == len(sets["noise"]) == len(images)

    capped = ood_sets(images, n=5, seed=4)
    assert {k: len(v) for k, v in capped.items()} == {"digits": 5, "flipped": 5, "noise": 5}
    assert torch.equal(capped["flipped"], images[:5].flip(2))
    assert torch.equal(capped["noise"], uniform_noise(5, seed=4))
    for value in capped.values():
        assert value.shape[1:] == (1, 28, 28)
        assert value.min().item() >= 0.0 and value.max().item() <= 1.0

    big = ood_sets(images, n=100)
    assert len(big["flipped"]) == len(big["noise"]) == len(images)
    assert len(big["digits"]) == 100
