"""White-box L-inf robustness (FGSM, PGD, APGD-CE) in pixel space, via torchattacks.

Attacks live in pixel space ([0, 1], where ``eps`` means something to a human);
models consume normalized inputs. torchattacks bridges the two with
``Attack.set_normalization_used``: after it, the attack *expects normalized
inputs and returns normalized outputs*, un-normalizing internally so that its
eps-ball and [0, 1] clamp are in pixel space. This module hides that round trip
behind a pixel-in, pixel-out API. Inputs that are not (C, H, W) images in [0, 1] (another pixel range,
signals, features) are attacked through a wrapper that sees them as flat [0, 1] images instead.
"""

from __future__ import annotations

import contextlib
import math
from typing import Literal, get_args

import torch
import torchattacks
from torch import nn

from robustprune._batching import grad_batch_size
from robustprune._modes import eval_mode, model_device
from robustprune.evaluate.metrics import accuracy, predict_logits
from robustprune.spec import InputSpec

__all__ = ["ATTACKS", "adversarial_examples", "robust_accuracy", "robust_correct"]

#: apgd-ce is APGD on cross-entropy, the first component of AutoAttack (Croce & Hein, 2020).
Attack = Literal["fgsm", "pgd", "apgd-ce"]
ATTACKS: tuple[str, ...] = get_args(Attack)
#: Inputs per forward pass of an attack (and of the accuracy on its result); fewer where one
#: image's activations are large (``robustprune._batching.grad_batch_size``).
BATCH_SIZE = 250


def _validate(
    spec: InputSpec,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    eps: float,
    steps: int,
    alpha: float | None,
    batch_size: int | None,
) -> float:
    """Check arguments up front (clear errors instead of torchattacks failing mid-run); return the PGD step size."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid attacks are {', '.join(ATTACKS)}")
    try:
        eps_ok = math.isfinite(eps) and 0.0 <= eps <= 1.0
    except TypeError:
        eps_ok = False
    if not eps_ok:
        raise ValueError(f"eps must be a number in [0, 1] (a fraction of the pixel range), got {eps!r}")
    if attack in ("pgd", "apgd-ce") and steps < 1:
        raise ValueError(f"{attack} needs steps >= 1, got {steps}")
    if alpha is not None and not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec.check_batch(pixels)
    if labels.dim() != 1 or labels.shape[0] != pixels.shape[0]:
        raise ValueError(f"labels must have shape ({pixels.shape[0]},), got {tuple(labels.shape)}")
    low, high = spec.value_range
    if pixels.numel() and (pixels.min() < low or pixels.max() > high):
        raise ValueError(
            f"pixels must lie in the spec's value range [{low:g}, {high:g}]; "
            "pass pixel-space inputs, not normalized ones"
        )
    # Madry et al.'s convention: the steps together can travel 2.5 * eps, enough to reach the boundary of the
    # ball from any random start whatever the step count. With the default steps=10 this is eps / 4.
    return 2.5 * eps / steps if alpha is None else float(alpha)


def _is_unit_image(spec: InputSpec) -> bool:
    """Whether torchattacks can take the spec's pixels as they are: (C, H, W) images in [0, 1]."""
    return spec.value_range == (0.0, 1.0) and len(spec.shape) == 3


class _UnitFlatInput(nn.Module):
    """``model`` on inputs of any shape and pixel range, seen as (N, 1, 1, D) pixels in [0, 1]: torchattacks
    clamps to [0, 1] and its normalization (and APGD's step) broadcast over (N, C, H, W) only."""

    def __init__(self, model: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.model, self.unit = model, spec.unit_range()[0]  # normalizes [0, 1] pixels as spec does its own

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.model(self.unit.normalize(flat.reshape(flat.shape[0], *self.unit.shape)))


def _build_attack(
    model: nn.Module, spec: InputSpec | None, attack: str, eps: float, steps: int, alpha: float
) -> torchattacks.attack.Attack:
    """The torchattacks attack; with ``spec``, it takes and returns inputs normalized as ``spec`` says."""
    if attack == "fgsm":
        atk = torchattacks.FGSM(model, eps=eps)
    elif attack == "apgd-ce":
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce")
    else:
        atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    if spec is None:
        return atk
    channels = spec.shape[0]
    mean = list(spec.mean) * channels if len(spec.mean) == 1 else list(spec.mean)
    std = list(spec.std) * channels if len(spec.std) == 1 else list(spec.std)
    atk.set_normalization_used(mean=mean, std=std)
    return atk


def _fork_all_rngs() -> contextlib.AbstractContextManager:
    """Fork the CPU RNG and that of every accelerator device, since ``torch.manual_seed`` reseeds all of them."""
    acc = torch.accelerator.current_accelerator()
    if acc is None:
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=range(torch.accelerator.device_count()), device_type=acc.type)


def adversarial_examples(
    model: nn.Module,
    spec: InputSpec,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "fgsm",
    eps: float = 0.1,
    steps: int = 10,
    alpha: float | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Untargeted L-inf adversarial versions of ``pixels`` (CPU float, pixel space).

    ``attack`` is ``"fgsm"`` (one signed-gradient step of size ``eps``) or
    ``"pgd"`` (``steps`` steps of size ``alpha`` from a uniform random start
    in the eps-ball; ``alpha`` defaults to ``2.5 * eps / steps``). Both maximize
    cross-entropy against ``labels`` and keep ``|x_adv - x| <= eps`` and
    ``x_adv`` in [0, 1]. Inputs of another pixel range are attacked in it mapped onto [0, 1] (``eps`` and
    ``alpha`` are then fractions of the range), and inputs of any shape (signals, features) flattened.

    Reproducible and side-effect free: the global RNG is seeded with ``seed``
    inside ``torch.random.fork_rng`` (so PGD's random start is the same on every
    call and the caller's RNG stream is untouched), the model is attacked in eval
    mode and every submodule's train/eval flag is restored afterwards.
    ``device`` defaults to the model's device; the model is not moved. ``batch_size`` (inputs per
    gradient pass) defaults to ``BATCH_SIZE``, or fewer for a model whose activations would not fit.
    """
    labels = torch.as_tensor(labels)
    alpha = _validate(spec, pixels, labels, attack, eps, steps, alpha, batch_size)
    run_on = model_device(model, device)
    if batch_size is None:
        batch_size = grad_batch_size(model, spec.shape, BATCH_SIZE, run_on)
    image = _is_unit_image(spec)
    chunks = []
    # enable_grad: the attacks differentiate w.r.t. the input, which fails if the caller is inside no_grad.
    with eval_mode(model), _fork_all_rngs(), torch.enable_grad():
        if image:
            atk = _build_attack(model, spec, attack, eps, steps, alpha)
        else:
            wrapped = _UnitFlatInput(model, spec)
            wrapped.training = False  # so torchattacks does not put the model back into training mode
            atk = _build_attack(wrapped, None, attack, eps, steps, alpha)
        atk.set_device(run_on)
        torch.manual_seed(seed)
        for start in range(0, pixels.shape[0], batch_size):
            x = pixels[start : start + batch_size].to(run_on, dtype=torch.float32)
            y = labels[start : start + batch_size].to(run_on, dtype=torch.long)
            if image:
                # With normalization set, torchattacks takes and returns *normalized* tensors.
                x_adv = spec.denormalize(atk(spec.normalize(x), y).detach())
                # The normalize/denormalize round trip costs ~1e-7 of float error; project it away so the
                # eps-ball and [0, 1] hold exactly (this is a no-op beyond rounding: the attack already projects).
                x_adv = torch.clamp(torch.clamp(x_adv, x - eps, x + eps), 0.0, 1.0)
            else:
                x_adv = _attack_flat(atk, spec, x, y, eps)
            chunks.append(x_adv.cpu())
    if not chunks:
        return torch.empty(0, *spec.shape)
    return torch.cat(chunks)


def _attack_flat(atk: torchattacks.attack.Attack, spec: InputSpec, x: torch.Tensor, y: torch.Tensor, eps: float):
    """One batch attacked through :class:`_UnitFlatInput`, back in the spec's shape and pixel range."""
    low, high = spec.value_range
    scale = high - low
    flat = spec.unit_range(x)[1].reshape(x.shape[0], 1, 1, -1).clamp(0.0, 1.0)
    adv = torch.clamp(torch.clamp(atk(flat, y).detach(), flat - eps, flat + eps), 0.0, 1.0)
    # mapping back costs float error of the range's size; project onto the ball and range in pixel space
    x_adv = adv.reshape(x.shape) * scale + low
    return torch.clamp(torch.clamp(x_adv, x - eps * scale, x + eps * scale), low, high)


def robust_accuracy(
    model: nn.Module, spec: InputSpec, pixels: torch.Tensor, labels: torch.Tensor, attack: str = "fgsm", **options
) -> float:
    """Accuracy of ``model`` on :func:`adversarial_examples` of ``pixels`` (``options``: its ``eps``, ``steps``,
    ``alpha``, ``batch_size``, ``seed`` and ``device``).

    This is plain accuracy on the attacked inputs (the torchattacks / RobustBench
    convention); an example the model already got wrong counts as robust only if
    the attack happens to make it right, which FGSM occasionally does.
    """
    x_adv = adversarial_examples(model, spec, pixels, labels, attack, **options)
    return accuracy(_logits(model, spec, x_adv, options), labels)


def robust_correct(
    model: nn.Module, spec: InputSpec, pixels: torch.Tensor, labels: torch.Tensor, attack: str | None = "pgd", **options
) -> torch.Tensor:
    """Per-image correctness (bool) under ``attack`` (``None``: clean), for paired comparisons on shared images;
    ``options`` as in :func:`robust_accuracy`."""
    labels = torch.as_tensor(labels)
    if attack is not None:
        pixels = adversarial_examples(model, spec, pixels, labels, attack, **options)
    return _logits(model, spec, pixels, options).argmax(dim=1).cpu() == labels.cpu()


def _logits(model: nn.Module, spec: InputSpec, pixels: torch.Tensor, options: dict) -> torch.Tensor:
    """The model's logits on ``pixels``, batched and placed as the attack ``options`` say."""
    batch_size = options.get("batch_size") or BATCH_SIZE  # a forward pass only: no gradient memory
    return predict_logits(model, spec, pixels, batch_size=batch_size, device=options.get("device"))
