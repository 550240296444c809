"""Synthetic training inputs for recovery: an inverted pool with cheap augmentation, fresh inversions, PGD mixing.

Everything random is drawn from a private ``torch.Generator`` (or seeded per step), never
from the global RNG, so a seed gives the same batches and a resumed run the same stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robustprune._io import save_torch
from robustprune.evaluate.attacks import adversarial_examples
from robustprune.probes.cache import weights_hash
from robustprune.probes.synthetic import generate
from robustprune.recover.config import RecoverConfig
from robustprune.spec import InputSpec

POOL_FILE = "pool.pt"


def synthetic_pool(
    original: nn.Module,
    spec: InputSpec,
    config: RecoverConfig,
    *,
    device: torch.device,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """``config.pool_size`` inverted images (pixel space, CPU) and the seconds it took (0 when read from the cache).

    With ``cache_dir``, the pool is stored there (``pool.pt``, read back with weights_only=True)
    together with the synthetic settings and a hash of the original's weights, and reused by a
    run with the same settings and original (a resumed one).
    """
    synth = dataclasses.replace(config.synthetic, n=config.pool_size, seed=config.seed)
    path = cache_dir / POOL_FILE if cache_dir is not None else None
    key = {"synthetic": synth.to_dict(), "spec": spec.to_dict(), "original": weights_hash(original) if path else None}
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("key") == repr(key) and tuple(saved["pixels"].shape) == (config.pool_size, *spec.shape):
                return saved["pixels"], 0.0
        except Exception:  # a damaged or foreign cache file: a miss, made again below
            pass
    result = generate(original, spec, synth, device=device, progress=progress)
    if path is not None:
        save_torch({"key": repr(key), "pixels": result.pixels}, path)
    return result.pixels, result.seconds


def augment(pixels: torch.Tensor, spec: InputSpec, config: RecoverConfig, gen: torch.Generator) -> torch.Tensor:
    """Per-sample random shift (zero padding) and horizontal flip of images, then Gaussian noise; clamped to range."""
    x = pixels
    if x.dim() == 4 and config.shift > 0:
        n, _, h, w = x.shape
        s = config.shift
        padded = F.pad(x, (s, s, s, s)).permute(0, 2, 3, 1)  # (n, h + 2s, w + 2s, c)
        dy = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * s + 1, (n,), generator=gen)
        rows = dy.view(n, 1, 1) + torch.arange(h).view(1, h, 1)
        cols = dx.view(n, 1, 1) + torch.arange(w).view(1, 1, w)
        x = padded[torch.arange(n).view(n, 1, 1), rows, cols].permute(0, 3, 1, 2).contiguous()
    if x.dim() == 4 and config.flip:
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    if config.noise > 0:
        x = x + config.noise * torch.randn(x.shape, generator=gen)
    return x.clamp(*spec.value_range)


def step_seed(seed: int, step: int) -> int:
    """A per-step seed for work seeded from outside our generator (fresh inversion, PGD's random start)."""
    return (seed * 1_000_003 + step) % (2**63)


def pool_batch(pool: torch.Tensor, spec: InputSpec, config: RecoverConfig, gen: torch.Generator) -> torch.Tensor:
    """``batch_size`` pool images drawn with replacement, augmented."""
    index = torch.randint(0, pool.shape[0], (config.batch_size,), generator=gen)
    return augment(pool[index], spec, config, gen)


def fresh_batch(
    original: nn.Module, spec: InputSpec, config: RecoverConfig, step: int, device: torch.device
) -> torch.Tensor:
    """A new batch inverted from the original, seeded by the step."""
    synth = dataclasses.replace(config.synthetic, n=config.batch_size, seed=step_seed(config.seed, step))
    return generate(original, spec, synth, device=device).pixels


def mix_adversarial(
    original: nn.Module, spec: InputSpec, pixels: torch.Tensor, config: RecoverConfig, step: int, device: torch.device
) -> torch.Tensor:
    """Replace the first ``adv_fraction`` of the batch by PGD versions against the original's own predictions."""
    k = round(config.adv_fraction * pixels.shape[0])
    if k == 0:
        return pixels
    head = pixels[:k].to(device)
    with torch.no_grad():
        labels = original(spec.normalize(head)).argmax(1)
    adv = adversarial_examples(
        original,
        spec,
        head.cpu(),
        labels.cpu(),
        attack="pgd",
        eps=config.adv_eps,
        steps=config.adv_steps,
        seed=step_seed(config.seed, step),
        device=device,
    )
    return torch.cat([adv, pixels[k:].cpu()])
