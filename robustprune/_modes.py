"""Running a caller's model: its train/eval mode and its device, shared by every place that runs one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and give every submodule its own training flag back afterwards.

    ``model.train(was_training)`` is not enough: it forces one flag onto all submodules,
    silently un-freezing (say) BatchNorm layers a caller had put in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def requiring_grad(model: nn.Module, flag: bool) -> Iterator[nn.Module]:
    """Every floating parameter of ``model`` with ``requires_grad`` set to ``flag`` (integer ones cannot require
    grad); each gets its own flag back afterwards."""
    flags = [(p, p.requires_grad) for p in model.parameters() if p.is_floating_point() or p.is_complex()]
    try:
        for p, _ in flags:
            p.requires_grad_(flag)
        yield model
    finally:
        for p, old in flags:
            p.requires_grad_(old)


def model_device(model: nn.Module, device: torch.device | str | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else where the model's tensors live (CPU if it has none)."""
    if device is not None:
        return torch.device(device)
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")
