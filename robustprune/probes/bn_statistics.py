"""How close inputs come to the training data by a model's own BatchNorm statistics (The Knowledge Within)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustprune._modes import eval_mode, model_device

__all__ = ["batch_bn_loss_terms", "bn_layers", "bn_statistics_loss", "model_dtype", "pre_hooks"]


def bn_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """BatchNorm layers (1d/2d/3d, SyncBatchNorm) that hold running statistics."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.running_mean is not None and m.running_var is not None
    ]


def _channel_first(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *rest) -> (C, N * prod(rest))."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


@contextlib.contextmanager
def pre_hooks(modules: list[nn.Module], hook: Callable) -> Iterator[None]:
    """``hook`` as a forward pre-hook on every module in ``modules`` for the duration."""
    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def batch_bn_loss_terms(model: nn.Module, layers: list[_BatchNorm]) -> tuple[list[torch.Tensor], Callable]:
    """A list that a forward pass fills with one differentiable per-layer loss per BN layer, and its hook."""
    terms: list[torch.Tensor] = []

    def hook(module: _BatchNorm, args: tuple) -> None:
        x = _channel_first(args[0].float())
        mu = x.mean(dim=1)
        sigma = torch.sqrt(x.var(dim=1, unbiased=False) + module.eps)
        run_mu = module.running_mean.float()
        run_sigma = torch.sqrt(module.running_var.float() + module.eps)
        terms.append(torch.linalg.vector_norm(mu - run_mu) + torch.linalg.vector_norm(sigma - run_sigma))

    return terms, hook


def bn_statistics_loss(model: nn.Module, inputs_normalized: torch.Tensor, *, batch_size: int = 256) -> float:
    """BN-statistics data-similarity score of a set of (normalized) inputs; lower = closer to the training data.

    The Knowledge Within's measure: for each BN layer l with C_l channels, the per-channel
    mean and std of the layer's input over the whole set (exact, accumulated over chunks of
    ``batch_size`` in float64) are compared with the running statistics the layer stored in
    training, and the per-layer loss ``||mu - mu_run||_2 + ||sigma - sigma_run||_2`` is divided
    by ``sqrt(C_l)`` -- i.e. the root-mean-square per-channel deviation of mean plus that of std,
    so layers of any width weigh alike. The score is the mean over BN layers. Input stds are
    taken as ``sqrt(var + eps)`` on both sides, eps being the layer's own.

    The model runs in eval mode under ``torch.no_grad``; its state and mode are restored.
    Raises ValueError if the model has no BatchNorm layer with running statistics.
    """
    layers = [m for _, m in bn_layers(model)]
    if not layers:
        raise ValueError("bn_statistics_loss needs a model with BatchNorm layers holding running statistics")
    if inputs_normalized.shape[0] < 1:
        raise ValueError("bn_statistics_loss needs at least one input")
    sums: dict[int, list] = {}

    def hook(module: _BatchNorm, args: tuple) -> None:
        x = _channel_first(args[0].detach().double())
        acc = sums.setdefault(id(module), [0.0, 0.0, 0])
        acc[0] = acc[0] + x.sum(dim=1)
        acc[1] = acc[1] + (x * x).sum(dim=1)
        acc[2] += x.shape[1]

    device = model_device(model)
    dtype = model_dtype(model)
    with eval_mode(model), pre_hooks(layers, hook), torch.no_grad():
        for start in range(0, inputs_normalized.shape[0], batch_size):
            model(inputs_normalized[start : start + batch_size].to(device=device, dtype=dtype))
    losses = []
    for m in layers:
        if id(m) not in sums:  # layer not reached by this forward pass: nothing to compare
            continue
        s, ss, count = sums[id(m)]
        mu = s / count
        var = (ss / count - mu * mu).clamp_min(0.0)
        sigma = torch.sqrt(var + m.eps)
        run_mu = m.running_mean.double()
        run_sigma = torch.sqrt(m.running_var.double() + m.eps)
        c = math.sqrt(mu.numel())
        losses.append((torch.linalg.vector_norm(mu - run_mu) + torch.linalg.vector_norm(sigma - run_sigma)).item() / c)
    if not losses:
        raise ValueError("no BatchNorm layer was reached by the model's forward pass")
    return float(sum(losses) / len(losses))


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 if none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32
