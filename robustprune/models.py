"""Resolve a model reference (what a user types after --model) to a model and its InputSpec.

Accepted references:
  zoo:NAME                 a trained reference model shipped with robustprune
  path/to/model.ts         a TorchScript file (torch.jit.save)
  package.module:factory   a callable returning an nn.Module; weights from ``weights``
                           (a state dict, loaded with ``weights_only=True``)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from robustprune import zoo
from robustprune.spec import InputSpec, validate_model


class ModelRefError(ValueError):
    """A model reference that cannot be resolved; the message says why."""


def _load_state_dict(model: nn.Module, weights: str | Path, allow_pickle: bool) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ModelRefError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        raise ModelRefError(
            f"could not load weights from {path} with weights_only=True ({exc.__class__.__name__}); "
            "save a plain state dict with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelRefError(f"{path} does not hold a state dict (found {type(state).__name__})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelRefError(f"weights in {path} do not fit the model: {first}") from exc


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; a ValueError that says why when it cannot be used here."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"not a device: {device!r} (use cpu or cuda)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available on this machine; use cpu")
    return device


def load_model(
    ref: str,
    weights: str | Path | None = None,
    spec: InputSpec | None = None,
    allow_pickle: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, InputSpec]:
    """Resolve ``ref`` to ``(model in eval mode, InputSpec)`` and validate it.

    Non-zoo models default to the Fashion-MNIST spec (1x28x28, 10 classes), the
    data robustprune evaluates on; pass ``spec`` for anything else.
    """
    check_device(device)
    if ref.startswith("zoo:"):
        name = ref[4:]
        if name not in zoo.names():
            raise ModelRefError(f"unknown zoo model {name!r}; choose one of: {', '.join(zoo.names())}")
        model, zoo_spec = zoo.load(name)
        if weights is not None:
            _load_state_dict(model, weights, allow_pickle)
        spec = spec or zoo_spec
    elif Path(ref).is_file():
        try:
            model = torch.jit.load(ref, map_location="cpu")
        except Exception as exc:
            raise ModelRefError(
                f"{ref} is not a TorchScript file ({exc.__class__.__name__}); "
                "give a TorchScript file, zoo:NAME, or package.module:factory"
            ) from exc
        spec = spec or zoo.FASHION_MNIST_SPEC
    elif ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelRefError(f"cannot import {attr!r} from module {module_name!r}: {exc}") from exc
        model = factory()
        if not isinstance(model, nn.Module):
            raise ModelRefError(f"{ref} returned {type(model).__name__}, not a torch.nn.Module")
        if weights is None:
            raise ModelRefError(f"{ref} needs --weights FILE (a state dict); refusing to use random weights")
        _load_state_dict(model, weights, allow_pickle)
        spec = spec or zoo.FASHION_MNIST_SPEC
    else:
        raise ModelRefError(
            f"model reference {ref!r} is neither zoo:NAME, an existing TorchScript file, nor package.module:factory"
        )
    model = model.to(device).eval()
    validate_model(model, spec)
    return model, spec
