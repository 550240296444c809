"""Applying overrides: checked against the model's own tensors, in place for a moment or on a copy."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import torch
from torch import nn


def _override_targets(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model``'s parameters and buffers by name, after checking that ``overrides`` names only
    those, with their shapes (KeyError naming every unknown key, ValueError on a shape mismatch)."""
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    unknown = sorted(set(overrides) - set(targets))
    if unknown:
        raise KeyError(f"overrides name tensors the model does not have: {', '.join(unknown)}")
    for key, value in overrides.items():
        if tuple(value.shape) != tuple(targets[key].shape):
            raise ValueError(f"override {key!r} has shape {tuple(value.shape)}, expected {tuple(targets[key].shape)}")
    return targets


@contextlib.contextmanager
def overrides_applied(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Within the context, ``model``'s own tensors hold ``overrides``; the old values come back after.

    In place, unlike ``apply_overrides``: for a short computation on a private model where a deep
    copy per call would cost more than the computation (e.g. rescoring channels each search step).
    """
    targets = _override_targets(model, overrides)
    saved = {key: targets[key].detach().clone() for key in overrides}
    try:
        with torch.no_grad():
            for key, value in overrides.items():
                targets[key].copy_(value)
        yield
    finally:
        with torch.no_grad():
            for key, value in saved.items():
                targets[key].copy_(value)


def apply_overrides(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with the override tensors copied in; ``model`` is untouched.

    Raises KeyError naming every key that is not a parameter or buffer of ``model``,
    and ValueError on a shape mismatch.
    """
    _override_targets(model, overrides)  # validates before the copy
    out = copy.deepcopy(model)
    targets = _override_targets(out, overrides)
    with torch.no_grad():
        for key, value in overrides.items():
            targets[key].copy_(value)
    return out
