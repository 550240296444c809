"""Reversible channel masks: evaluate a candidate on the unpruned model without copying it.

Masking zeroes, at the output of every module that carries a group's channels
(conv, linear, batch, layer, group or instance norm, PReLU), the channels a candidate removes. A layer
or group norm also normalizes over the kept channels only, as its pruned copy does. Because every
producer of a removed channel outputs zero and the activations in between map
zero to zero (ReLU, ReLU6, SiLU, GELU, ...), every consumer reads exactly what
the physically pruned model computes. Leaving the context removes the hooks, so
the model's outputs are bit-for-bit what they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from robustprune.structure.layers import norm_channels
from robustprune.structure.space import Candidate, PruneSpace


def group_mask(space: PruneSpace, candidate: Candidate, device=None) -> dict[str, torch.Tensor]:
    """Per group named in ``candidate`` (and changed by it), a float 0/1 keep-vector of the group's size."""
    masks = {}
    candidate = space.checked(candidate)
    for name, keep in candidate.items():
        group = space.group(name)
        if len(keep) == group.size:
            continue
        m = torch.zeros(group.size, device=device or space.device)
        m[list(keep)] = 1.0
        masks[name] = m
    return masks


def channel_axis(module: nn.Module) -> int:
    """The axis of ``module``'s output that holds its channels: the last one for a Linear (it maps the
    last axis, whatever comes before it, e.g. (N, L, C) tokens), axis 1 for convs and batch norms.
    ``PruneSpace.channel_axes`` holds the measured axis of every maskable module (LayerNorms included)."""
    return -1 if isinstance(module, nn.Linear) else 1


def _module_masks(
    space: PruneSpace, per_group: dict[str, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, int, nn.Module]]:
    """Group keep-vectors -> (keep-vector over the member's channels (last dim of the mask), the
    member's channel axis, the member) per member module."""
    modules = dict(space.model.named_modules())
    out: dict[str, tuple[torch.Tensor, int]] = {}
    for name, mask in per_group.items():
        group = space.group(name)
        for member, cmap in zip(group.members, group.channel_maps, strict=True):
            module = modules[member]
            channels = getattr(module, "out_channels", None) or getattr(module, "out_features", None)
            channels = channels or norm_channels(module)  # norms and PReLU
            if list(cmap) == list(range(channels)):
                full = mask
            else:
                full = torch.ones(*mask.shape[:-1], channels, device=mask.device)
                full[..., list(cmap)] = mask
            if member in out:  # a norm after a concat carries several groups' channels: every mask applies
                full = out[member][0] * full
            out[member] = (full, space.channel_axes.get(member, channel_axis(module)), module)
    return out


def _broadcast(mask: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """``mask`` (C,) shaped to multiply ``like`` along its channel ``axis``."""
    shape = [1] * like.dim()
    shape[axis % like.dim()] = -1
    return mask.view(shape)


def _renormalized(module: nn.Module, x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """A layer or group norm of ``x`` computed over the kept channels (``m`` == 1) only."""
    channel = axis % x.dim()
    x, m = x.movedim(channel, 1), m.movedim(channel, 1)
    groups = module.num_groups if isinstance(module, nn.GroupNorm) else 1
    n, c = x.shape[0], x.shape[1]
    xs = x.reshape(n, groups, c // groups, -1)
    ms = m.expand_as(x).reshape(n, groups, c // groups, -1)
    dims = (2, 3) if isinstance(module, nn.GroupNorm) else (2,)  # layer norm: each position on its own
    count = ms.sum(dims, keepdim=True).clamp_min(1)
    mean = (xs * ms).sum(dims, keepdim=True) / count
    var = ((xs - mean) ** 2 * ms).sum(dims, keepdim=True) / count
    y = ((xs - mean) / torch.sqrt(var + module.eps)).reshape(x.shape)
    affine = [1] * x.dim()
    affine[1] = -1
    if module.weight is not None:
        y = y * module.weight.view(affine)
    if module.bias is not None:
        y = y + module.bias.view(affine)
    return y.movedim(1, channel)


def _hook(mask: torch.Tensor, axis: int, module: nn.Module):
    renormalize = isinstance(module, (nn.LayerNorm, nn.GroupNorm))

    def apply(_module, inputs, output):
        m = _broadcast(mask, output, axis)
        if renormalize:
            output = _renormalized(module, inputs[0], m, axis)
        return output * m

    return apply


@contextmanager
def _hooked(space: PruneSpace, module_masks: dict[str, tuple[torch.Tensor, int, nn.Module]]) -> Iterator[None]:
    modules = dict(space.model.named_modules())
    handles = [modules[name].register_forward_hook(_hook(*masks)) for name, masks in module_masks.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def masked(space: PruneSpace, candidate: Candidate) -> Iterator[None]:
    """Within the context, ``space.model`` computes what the model pruned to ``candidate`` computes."""
    with _hooked(space, _module_masks(space, group_mask(space, candidate))):
        yield
