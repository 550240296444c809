"""Undesired probes: inputs a deployed model should not be confident on (open-world robustness)."""

from __future__ import annotations

import torch

from robustprune.data.corruptions import corrupt
from robustprune.spec import InputSpec

#: Severity-5 corruptions that destroy an image's content (used on synthetic images).
DESTRUCTIVE = ("impulse_noise", "contrast", "pixelate")


def undesired_probes(spec: InputSpec, n: int, synthetic: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` inputs in the value range: uniform noise, Gaussian noise with the data's statistics,
    and (when ``synthetic`` is given) synthetic images destroyed by severity-5 corruptions.

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
        source = synthetic[idx]
        destroyed = [corrupt(source[i :: len(DESTRUCTIVE)], name, 5, seed=seed) for i, name in enumerate(DESTRUCTIVE)]
        chunks.append(torch.cat(destroyed))
    return torch.cat(chunks).float()
