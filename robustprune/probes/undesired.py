"""Undesired probes: inputs a deployed model should not be confident on (open-world robustness)."""

from __future__ import annotations

import torch

from robustprune.data.corruptions import corrupt
from robustprune.spec import InputSpec

#: Severity-5 corruptions that destroy an image's content (used on synthetic images).
DESTRUCTIVE = ("impulse_noise", "contrast", "pixelate")


def undesired_probes(spec: InputSpec, n: int, synthetic: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` inputs in the value range: uniform noise, Gaussian noise with the data's statistics,
    and (when ``synthetic`` is given) synthetic inputs destroyed by severity-5 corruptions (signals and features
    seen as one-row images).

    Deterministic for a seed; the global RNG is untouched.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    low, high = spec.value_range
    parts = 3 if synthetic is not None and len(synthetic) else 2
    sizes = [n // parts + (1 if i < n % parts else 0) for i in range(parts)]
    uniform = low + (high - low) * torch.rand(sizes[0], *spec.shape, generator=gen)
    gaussian = spec.denormalize(torch.randn(sizes[1], *spec.shape, generator=gen)).clamp(low, high)
    chunks = [uniform, gaussian]
    if parts == 3:
        idx = torch.randint(0, len(synthetic), (sizes[2],), generator=gen)
        _, source = spec.unit_range(synthetic[idx])  # the corruptions work on [0, 1] images
        source = source.reshape(_as_image(spec.shape, len(source)))
        destroyed = [corrupt(source[i :: len(DESTRUCTIVE)], name, 5, seed=seed) for i, name in enumerate(DESTRUCTIVE)]
        destroyed = torch.cat(destroyed).reshape(-1, *spec.shape)
        chunks.append(destroyed if (low, high) == (0.0, 1.0) else destroyed * (high - low) + low)
    return torch.cat(chunks).float()


def _as_image(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    """A batch shape (N, C, H, W) that the image corruptions accept: signals (C, L) as (C, 1, L), features as
    (1, 1, F)."""
    if len(shape) == 1:
        return (n, 1, 1, shape[0])
    return (n, shape[0], -1, shape[-1])
