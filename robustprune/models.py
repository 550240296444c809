"""Resolve a model reference (what a user types after --model) to a model and its InputSpec.

Accepted references:
  zoo:NAME                 a trained reference model shipped with robustprune
  path/to/model.ts         a TorchScript file (torch.jit.save)
  package.module:factory   a callable returning an nn.Module; weights from ``weights``
                           (a state dict, loaded with ``weights_only=True``)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustprune import zoo
from robustprune.spec import InputSpec, SpecError, validate_model


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
    load_checked(model, state, path)


def _shape(tensor: object) -> str:
    return str(tuple(tensor.shape)) if isinstance(tensor, torch.Tensor) else type(tensor).__name__


def load_checked(model: nn.Module, state: dict, source: str | Path) -> None:
    """``model.load_state_dict(state)``; a ModelRefError naming the first tensor that does not fit, and both shapes."""
    own = model.state_dict()
    problems = [
        f"{name} has shape {_shape(state[name])} in {source}, {_shape(tensor)} in the model"
        for name, tensor in own.items()
        if name in state and (not isinstance(state[name], torch.Tensor) or state[name].shape != tensor.shape)
    ]
    problems += [f"{name} is missing from {source}" for name in own if name not in state]
    problems += [f"{source} has {name}, which the model does not" for name in state if name not in own]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelRefError(f"weights do not fit the model: {problems[0]}{more}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # what the checks above do not cover: one line of torch's reason
        raise ModelRefError(f"weights in {source} do not fit the model: {one_line(exc)}") from exc


def one_line(exc: BaseException) -> str:
    """The line of ``exc``'s message that says what went wrong (TorchScript puts it last, after its traceback)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    if len(lines) > 1 and lines[0].startswith("The following operation failed in the TorchScript interpreter"):
        return lines[-1]
    return lines[0]


def resolve_factory(ref: str) -> Callable[[], nn.Module]:
    """The callable ``package.module:factory`` names (importing the module runs its code)."""
    module_name, _, attr = ref.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelRefError(f"cannot import {attr!r} from module {module_name!r}: {one_line(exc)}") from exc
    if not callable(factory):
        raise ModelRefError(f"{ref} is not callable ({type(factory).__name__}); name a function returning a model")
    return factory


def build_from(factory: Callable[[], nn.Module], name: str) -> nn.Module:
    """Call ``factory()`` (named ``name`` in messages); a ModelRefError if it needs arguments, raises, or
    returns something other than an nn.Module."""
    try:
        inspect.signature(factory).bind()
    except TypeError:
        needed = [
            p.name
            for p in inspect.signature(factory).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        raise ModelRefError(
            f"{name} needs arguments ({', '.join(needed)}); name a factory that takes none (wrap it in a function)"
        ) from None
    except ValueError:  # no signature (some builtins): calling it is the only check
        pass
    try:
        model = factory()
    except Exception as exc:
        raise ModelRefError(f"{name} raised {exc.__class__.__name__}: {one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelRefError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


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
        model = build_from(resolve_factory(ref), ref)
        if weights is None:
            raise ModelRefError(f"{ref} needs --weights FILE (a state dict); refusing to use random weights")
        _load_state_dict(model, weights, allow_pickle)
        spec = spec or zoo.FASHION_MNIST_SPEC
    else:
        raise ModelRefError(
            f"model reference {ref!r} is neither zoo:NAME, an existing TorchScript file, nor package.module:factory"
        )
    model = model.to(device).eval()
    try:
        validate_model(model, spec)
    except SpecError as exc:  # TorchScript errors carry their own multi-line traceback: keep the line that says why
        message, cause = str(exc), exc.__cause__
        if "\n" not in message:
            raise
        prefix = message.partition(str(cause))[0] if cause is not None and str(cause) in message else ""
        raise SpecError(prefix + one_line(cause if prefix else exc)) from exc
    return model, spec
