"""CIFAR-10-C-style common corruptions (Hendrycks & Dietterich, 2019) in pure torch, for 28x28 grey images.

Pruning can keep clean accuracy while losing robustness to everyday image degradation; these corruptions
measure that without extra dependencies or downloads. Parameters follow CIFAR-10-C, adapted to small grey
images (see ``SEVERITY_PARAMS``). Everything is deterministic for a given ``seed``: randomness comes only from a
private CPU ``torch.Generator`` seeded by ``generator_seed`` (not Python's salted ``hash()``), so results are the
same across processes and devices and the global RNG is left untouched.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "gaussian_blur",
    "contrast",
    "brightness",
    "pixelate",
    "affine",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# One entry per severity 1..5. Higher severity always means a stronger corruption.
SEVERITY_PARAMS: dict[str, tuple] = {
    # std of additive N(0, std^2) noise: 2x CIFAR-10-C's (.04, .06, .08, .09, .10); the CIFAR values barely
    # touch a model on high-contrast 28x28 silhouettes, 2x is harmful but leaves the garment recognisable.
    "gaussian_noise": (0.08, 0.12, 0.16, 0.18, 0.20),
    # photon count c of Poisson noise, x' = Poisson(c * x) / c: CIFAR-10-C's values.
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    # fraction of pixels replaced by salt (1) or pepper (0), half each: CIFAR-10-C's values.
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    # sigma (pixels) of a separable gaussian blur with reflect padding: 1.5x CIFAR-10-C's (.4, .6, .7, .8, 1.0),
    # because CIFAR's sigma 0.4 hardly changes a 28x28 image.
    "gaussian_blur": (0.6, 0.9, 1.05, 1.2, 1.5),
    # factor c in x' = (x - mean) * c + mean, mean taken per image: CIFAR-10-C's values.
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    # offset added to every pixel, then clipped (CIFAR-10-C adds it to V in HSV; for grey that is the same).
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    # downsample factor f: area-average to round(28 * f) blocks a side, then nearest upsample back (CIFAR-10-C's
    # (.6, .5, .4, .3, .25)); 28x28 -> 17, 14, 11, 8, 7 blocks a side.
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    # (max rotation in degrees, max translation as a fraction of the side, max x-shear in degrees). Each image
    # draws each magnitude uniformly in [max/2, max] with a random sign (a floor so that severity really orders the
    # damage); pixels moved in from outside are 0 (the Fashion-MNIST background).
    "affine": ((5.0, 0.02, 3.0), (10.0, 0.04, 6.0), (15.0, 0.06, 9.0), (20.0, 0.08, 12.0), (25.0, 0.10, 15.0)),
}


def generator_seed(seed: int, name: str, severity: int) -> int:
    """Stable seed for one (seed, corruption, severity): ``seed * 1000 + index(name) * 10 + severity``."""
    return seed * 1000 + CORRUPTIONS.index(name) * 10 + severity


def _check(name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r} (corruptions: {', '.join(CORRUPTIONS)})")


def _rand(gen: torch.Generator, shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=gen).to(like.device)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    _, c, h, w = x.shape
    radius = min(math.ceil(3.0 * sigma), h - 1, w - 1)
    if radius < 1:
        return x.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    horizontal = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=c)


def _block_matrix(n: int, blocks: int, like: torch.Tensor) -> torch.Tensor:
    """(blocks, n) 0/1 matrix putting pixel p in block floor(p * blocks / n): contiguous, non-overlapping blocks."""
    index = torch.arange(n, device=like.device) * blocks // n
    return F.one_hot(index, blocks).to(like.dtype).T


def _pixelate(x: torch.Tensor, factor: float) -> torch.Tensor:
    # Area-average over non-overlapping blocks, then paint each block with its mean (nearest upsampling). When the
    # block count does not divide the side, blocks are floor/ceil(side / count) pixels wide; torch's "area" +
    # "nearest" interpolate pair would instead use overlapping windows and misaligned blocks there, which makes the
    # damage non-monotone in severity (28 -> 17 pixels came out worse than 28 -> 14). Identical when it divides.
    h, w = x.shape[-2:]
    rows = _block_matrix(h, max(1, round(h * factor)), x)
    cols = _block_matrix(w, max(1, round(w * factor)), x)
    small = (rows / rows.sum(1, keepdim=True)) @ x @ (cols / cols.sum(1, keepdim=True)).T
    return rows.T @ small @ cols


def _affine(x: torch.Tensor, params: tuple[float, float, float], gen: torch.Generator) -> torch.Tensor:
    max_rot, max_shift, max_shear = params
    n = x.shape[0]
    # magnitude in [max/2, max], sign +-1, for (rotation, shift x, shift y, shear)
    magnitude = 0.5 + 0.5 * torch.rand((n, 4), generator=gen, dtype=torch.float64)
    sign = torch.randint(0, 2, (n, 4), generator=gen).to(torch.float64) * 2 - 1
    u = magnitude * sign
    rot = torch.deg2rad(u[:, 0] * max_rot)
    shear = torch.tan(torch.deg2rad(u[:, 3] * max_shear))
    cos, sin = torch.cos(rot), torch.sin(rot)
    theta = torch.zeros((n, 2, 3), dtype=torch.float64)
    # rotation @ x-shear, in normalised coordinates ([-1, 1]; a shift of f of the side is 2f there)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = cos * shear - sin
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = sin * shear + cos
    theta[:, 0, 2] = 2.0 * max_shift * u[:, 1]
    theta[:, 1, 2] = 2.0 * max_shift * u[:, 2]
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt a batch ``x`` (N, C, H, W) in [0, 1]; returns a new float32 tensor of the same shape in [0, 1].

    Raises ValueError for an unknown ``name`` or a ``severity`` outside 1..5.
    """
    _check(name, severity)
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    x = x.detach().to(torch.float32)
    severity = int(severity)
    param = SEVERITY_PARAMS[name][severity - 1]
    gen = torch.Generator().manual_seed(generator_seed(seed, name, severity))

    if name == "gaussian_noise":
        out = x + torch.randn(x.shape, generator=gen).to(x.device) * param
    elif name == "shot_noise":
        out = (torch.poisson(x.cpu().clamp(0.0, 1.0) * param, generator=gen) / param).to(x.device)
    elif name == "impulse_noise":
        hit = _rand(gen, x.shape, x) < param
        salt = _rand(gen, x.shape, x) < 0.5
        out = torch.where(hit, salt.to(x.dtype), x)
    elif name == "gaussian_blur":
        out = _gaussian_blur(x, param)
    elif name == "contrast":
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = (x - mean) * param + mean
    elif name == "brightness":
        out = x + param
    elif name == "pixelate":
        out = _pixelate(x, param)
    else:  # affine
        out = _affine(x, param, gen)
    return out.clamp_(0.0, 1.0)  # every branch built a new tensor, so the caller's x is untouched


def corruption_suite(
    x: torch.Tensor,
    severities: Iterable[int] = SEVERITIES,
    names: Iterable[str] = CORRUPTIONS,
    seed: int = 0,
) -> Iterator[tuple[str, int, torch.Tensor]]:
    """Yield ``(name, severity, corrupt(x, name, severity, seed))`` lazily, so only one corrupted copy is alive."""
    severities = tuple(severities)
    names = tuple(names)
    for name in names:  # validate everything up front rather than fail half-way through an evaluation
        for severity in severities:
            _check(name, severity)
    for name in names:
        for severity in severities:
            yield name, severity, corrupt(x, name, severity, seed)
