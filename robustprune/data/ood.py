"""Out-of-distribution sets for open-world evaluation of Fashion-MNIST models.

A pruned model should stay as unsure as its parent on inputs that are not clothing. Three sets of
increasing difficulty for a detector: uniform noise (trivial), handwritten digits (far OOD, other
domain, same format) and upside-down Fashion-MNIST (near OOD, same pixel statistics).
All sets are float tensors (N, 1, 28, 28) in [0, 1], like ``load_fashion_mnist``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SIZE = 28
_SKLEARN_HINT = "pip install scikit-learn  (a core dependency of robustprune: reinstall it)"


def far_ood_digits() -> torch.Tensor:
    """scikit-learn's bundled 8x8 digits (1797 images), upsampled to 28x28.

    Bundled with scikit-learn, so far-OOD evaluation needs no download.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(f"far_ood_digits needs scikit-learn: {_SKLEARN_HINT}") from exc
    images = load_digits().images  # (1797, 8, 8), values 0..16
    x = torch.as_tensor(images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(_SIZE, _SIZE), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def near_ood_flipped(x_test: torch.Tensor) -> torch.Tensor:
    """Vertically flipped images: same pixel statistics, but no longer a plausible garment pose."""
    if x_test.dim() != 4:
        raise ValueError(f"x_test must be (N, C, H, W), got shape {tuple(x_test.shape)}")
    return x_test.flip(2)


def uniform_noise(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images of uniform [0, 1] noise; a private generator keeps it reproducible and global RNG untouched."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, _SIZE, _SIZE), generator=gen)


def ood_sets(x_test: torch.Tensor, n: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """All OOD sets keyed ``"digits"``, ``"flipped"``, ``"noise"``; ``n`` caps each set's size.

    The noise set is as large as the flipped set so the two compare on equal footing.
    """
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0 or None, got {n}")
    digits = far_ood_digits()
    flipped = near_ood_flipped(x_test)
    if n is not None:
        digits = digits[:n]
        flipped = flipped[:n]
    return {"digits": digits, "flipped": flipped, "noise": uniform_noise(len(flipped), seed)}
