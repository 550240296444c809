"""Synthetic inputs drawn from a trained model itself, with no real data (The Knowledge Within, DeepInversion).

Three kinds, weakest to strongest:

``gaussian``
    Pixels whose *normalized* value is standard normal, i.e. pixel mean and std equal
    ``spec.mean`` / ``spec.std``, clamped to ``spec.value_range``. The weak baseline.
``bn_stats``
    A batch optimized with Adam, starting from that noise, so that at every BatchNorm
    layer the per-channel batch mean and std of the layer's *input* match the stored
    running statistics: ``sum_l ||mu_l(x) - mu_l||_2 + ||sigma_l(x) - sigma_l||_2``.
    Needs a model with BatchNorm (``ValueError`` otherwise).
``inversion``
    DeepInversion: cross-entropy toward assigned, class-balanced target labels
    + ``bn_weight`` * the BN loss above (skipped for models without BN, e.g. an MLP)
    + ``tv_weight`` * total variation + ``l2_weight`` * L2 prior, with a random jitter
    (roll) and horizontal flip of the batch at every step.

Common rules: images are parametrized in normalized space and clamped to the value
range (in pixel space) after every step; generation runs ``batch_size`` images at a
time (BN statistics are matched per batch; ``n`` is split into near-equal batches so
the last one is never tiny); a private ``torch.Generator`` seeded with ``config.seed``
drives every random choice, so the global RNG is untouched and a seed gives the same
images (bit-identical on the CPU; on a GPU up to cuDNN's own nondeterminism); the model
runs in eval mode and its weights, buffers, ``requires_grad`` flags, ``.grad`` fields and
per-module train/eval flags are left exactly as they were.
The learning rate follows a cosine schedule from ``lr`` down to ``lr / 100`` over
``steps`` (a constant rate leaves the images jittering around the optimum).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustprune._modes import eval_mode, model_device, requiring_grad
from robustprune._progress import progress_bar
from robustprune.probes.bn_statistics import (  # bn_layers, bn_statistics_loss: public here too
    batch_bn_loss_terms,
    bn_layers,
    bn_statistics_loss,
    model_dtype,
    pre_hooks,
)
from robustprune.spec import InputSpec

SynthesisKind = Literal["gaussian", "bn_stats", "inversion"]
KINDS: tuple[str, ...] = get_args(SynthesisKind)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """How to synthesize ``n`` inputs (the defaults and what they were chosen against: docs/defaults.md).

    * ``lr``: Adam step in normalized units (data stds), cosine-decayed to ``lr / 100``; the clamp
      to the pixel range bounds every excursion.
    * ``bn_weight``: the paper's un-normalized per-layer sum of L2 distances to the BN statistics.
    * ``tv_weight``: L2 total variation per image (squared neighbour differences in pixel units).
    * ``l2_weight``: per-image sum of squared *normalized* inputs (pulls toward the data mean).
    * ``ce_weight``: cross-entropy, batch mean, toward balanced assigned labels.
    * ``jitter`` pixels and random horizontal ``flip``: DeepInversion's augmentations scaled to 28x28.
    * ``batch_size``: BN statistics are matched per batch, so it must be large enough for stable ones.
    """

    kind: SynthesisKind = "inversion"
    n: int = 512
    steps: int = 200
    lr: float = 1.0
    batch_size: int = 128
    bn_weight: float = 1.0
    tv_weight: float = 3e-3
    l2_weight: float = 1e-4
    ce_weight: float = 1.0
    jitter: int = 2
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SyntheticConfig.kind must be one of {KINDS}, got {self.kind!r}")
        for name in ("n", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SyntheticConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("steps", "jitter", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"SyntheticConfig.{name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"SyntheticConfig.lr must be a finite number > 0, got {self.lr!r}")
        for name in ("bn_weight", "tv_weight", "l2_weight", "ce_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"SyntheticConfig.{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"SyntheticConfig.flip must be a bool, got {self.flip!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SyntheticSet:
    """Generated inputs: ``pixels`` (n, *spec.shape), float32 on the CPU, inside ``spec.value_range``.

    ``targets`` are the assigned labels (int64, shape (n,)) for ``inversion``, else None.
    ``final_bn_loss`` is :func:`bn_statistics_loss` of the whole set (None for a model without BN).
    """

    pixels: torch.Tensor
    targets: torch.Tensor | None
    config: SyntheticConfig
    seconds: float
    final_bn_loss: float | None


# ---------------------------------------------------------------------------------------------------------------
# model handling


# ---------------------------------------------------------------------------------------------------------------
# generation


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    """Split n into ceil(n / batch_size) near-equal batches (so no batch is tiny)."""
    count = math.ceil(n / batch_size)
    base, extra = divmod(n, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _normalized_bounds(spec: InputSpec, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = spec.value_range
    shape = (1, *spec.shape)
    lo = spec.normalize(torch.full(shape, low, dtype=dtype, device=device))
    hi = spec.normalize(torch.full(shape, high, dtype=dtype, device=device))
    return lo, hi


def _total_variation(pixels: torch.Tensor) -> torch.Tensor:
    """L2 total variation per image: sum of squared neighbour differences along each spatial axis, batch mean."""
    tv = pixels.new_zeros(())
    for dim in range(2, pixels.dim()):
        if pixels.shape[dim] > 1:
            tv = tv + torch.diff(pixels, dim=dim).pow(2).flatten(1).sum(1).mean()
    return tv


def _balanced_targets(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    labels = torch.arange(n, dtype=torch.int64) % num_classes
    return labels[torch.randperm(n, generator=gen)]


def _augment(x: torch.Tensor, config: SyntheticConfig, gen: torch.Generator) -> torch.Tensor:
    """DeepInversion's per-step random roll (jitter) and horizontal flip of the whole batch."""
    spatial = list(range(2, x.dim()))[-2:]
    if not spatial:
        return x
    if config.jitter > 0:
        shifts = torch.randint(-config.jitter, config.jitter + 1, (len(spatial),), generator=gen).tolist()
        if any(shifts):
            x = torch.roll(x, shifts=shifts, dims=spatial)
    if config.flip and bool(torch.rand((), generator=gen) < 0.5):
        x = torch.flip(x, dims=(spatial[-1],))
    return x


def _optimize_batch(
    model: nn.Module,
    spec: InputSpec,
    config: SyntheticConfig,
    z0: torch.Tensor,
    targets: torch.Tensor | None,
    layers: list[_BatchNorm],
    gen: torch.Generator,
    report: Callable[[int, float, dict[str, float]], None],
    tick: Callable[[], None] = lambda: None,
) -> torch.Tensor:
    """Adam on normalized inputs z, clamped to the value range after every step; returns the final z."""
    dtype = model_dtype(model)
    lo, hi = _normalized_bounds(spec, z0.dtype, z0.device)
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=config.lr, betas=(0.9, 0.999))
    inversion = config.kind == "inversion"
    use_bn = bool(layers) and (not inversion or config.bn_weight > 0)
    terms, hook = batch_bn_loss_terms(model, layers)
    every = max(1, math.ceil(config.steps / 4))
    with pre_hooks(layers if use_bn else [], hook):
        for step in range(1, config.steps + 1):
            lr = config.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - 1) / config.steps)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            terms.clear()
            x = _augment(z, config, gen) if inversion else z
            logits = model(x.to(dtype))
            parts: dict[str, torch.Tensor] = {}
            bn = torch.stack(terms).sum() if terms else None
            if not inversion:
                if bn is None:
                    raise ValueError("no BatchNorm layer was reached by the model's forward pass")
                loss = bn
                parts["bn"] = bn
            else:
                ce = F.cross_entropy(logits.float(), targets)
                loss = config.ce_weight * ce
                parts["ce"] = ce
                if bn is not None:
                    loss = loss + config.bn_weight * bn
                    parts["bn"] = bn
                if config.tv_weight > 0:
                    tv = _total_variation(spec.denormalize(z))
                    loss = loss + config.tv_weight * tv
                    parts["tv"] = tv
                if config.l2_weight > 0:
                    l2 = z.pow(2).flatten(1).sum(1).mean()
                    loss = loss + config.l2_weight * l2
                    parts["l2"] = l2
            (grad,) = torch.autograd.grad(loss, [z])
            z.grad = grad
            optimizer.step()
            z.grad = None
            with torch.no_grad():
                z.copy_(torch.maximum(torch.minimum(z, hi), lo))
            tick()
            if step % every == 0 or step == config.steps:
                report(step, float(loss.detach()), {k: float(v.detach()) for k, v in parts.items()})
    return z.detach()


def generate(
    model: nn.Module,
    spec: InputSpec,
    config: SyntheticConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    device: str | torch.device | None = None,
) -> SyntheticSet:
    """Synthesize ``config.n`` inputs of ``config.kind`` from ``model`` (see the module docstring).

    ``device``: where to run (default: the model's device). If it differs from the model's
    device, a copy of the model is moved there; the model passed in is never modified.
    ``progress`` receives a line about every 25% of the steps of each batch.
    Returns pixels in ``spec.value_range`` (float32, CPU). Raises ValueError for
    ``bn_stats`` on a model without BatchNorm.
    """
    config = config or SyntheticConfig()
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig, got {type(config).__name__}")
    start_time = time.perf_counter()
    target_device = torch.device(device) if device is not None else model_device(model)
    if target_device != model_device(model):
        model = copy.deepcopy(model).to(target_device)
    layers = [m for _, m in bn_layers(model)]
    if config.kind == "bn_stats" and not layers:
        raise ValueError(
            "kind 'bn_stats' needs a model with BatchNorm layers holding running statistics; "
            f"{type(model).__name__} has none (use kind 'inversion' or 'gaussian')"
        )
    say = progress or (lambda _line: None)
    gen = torch.Generator().manual_seed(config.seed)
    sizes = _batch_sizes(config.n, config.batch_size)
    # all starting noise is drawn first, on the CPU, so it is the same on every device
    z_all = torch.randn((config.n, *spec.shape), generator=gen, dtype=torch.float32)
    targets = _balanced_targets(config.n, spec.num_classes, gen) if config.kind == "inversion" else None
    lo, hi = _normalized_bounds(spec, torch.float32, torch.device("cpu"))

    if config.kind == "gaussian" or config.steps == 0:
        z_final = torch.maximum(torch.minimum(z_all, hi), lo)
        say(f"{config.kind}: {config.n} samples, no optimization")
    else:
        outputs = []
        offset = 0
        # with a bar drawn, the bar replaces the per-25% lines
        bar = progress_bar(len(sizes) * config.steps, f"{config.kind} images", quiet=progress is None, unit="step")
        if not bar.disable:
            say = lambda _line: None  # noqa: E731
        with eval_mode(model), requiring_grad(model, False), bar:  # no graph through the weights
            for b, size in enumerate(sizes, start=1):
                z0 = torch.maximum(torch.minimum(z_all[offset : offset + size], hi), lo).to(target_device)
                t = targets[offset : offset + size].to(target_device) if targets is not None else None

                def report(step, loss, parts, b=b):
                    detail = ", ".join(f"{k} {v:.4g}" for k, v in parts.items())
                    say(f"batch {b}/{len(sizes)}, step {step}/{config.steps}, loss {loss:.4g} ({detail})")

                outputs.append(
                    _optimize_batch(model, spec, config, z0, t, layers, gen, report, tick=lambda: bar.update(1)).cpu()
                )
                offset += size
        z_final = torch.cat(outputs)

    pixels = spec.denormalize(z_final).clamp(*spec.value_range).float().contiguous()
    final_bn = bn_statistics_loss(model, spec.normalize(pixels), batch_size=config.batch_size) if layers else None
    return SyntheticSet(
        pixels=pixels,
        targets=targets,
        config=config,
        seconds=time.perf_counter() - start_time,
        final_bn_loss=final_bn,
    )
