"""Linear over-parameterization (Qian et al. 2022): expand compact layers into linear chains, merge them back.

A conv ``W`` (c_out, c_in / g, *k) becomes a conv with the same kernel, stride, padding,
dilation and groups to ``E = e * c_out`` channels (no bias) followed by a grouped 1x1 conv
back to ``c_out`` (holding the bias); a Linear becomes Linear(in, E, no bias) -> Linear(E, out).
There is no nonlinearity between the two, so the chain is one linear map and merges back
exactly: per group, ``W = B @ A`` with the kernel flattened. Depthwise convs are the
grouped case with ``groups == c_in``: a depthwise k x k conv with channel multiplier ``e``
followed by a grouped 1x1.

Init (exact, and every part of the chain trainable): ``B`` per group has orthonormal random
rows (Q^T, Q from a QR of a Gaussian matrix, Q^T Q = I), and ``A = Q W + (I - Q Q^T) R``
with R random at the scale of W; the null-space term is invisible to ``B`` (B (I - Q Q^T) = 0),
so ``B @ A == W`` up to float rounding, yet A is not a padded copy of W.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from robustprune.structure.layers import CONV_TYPES, LAYER_TYPES


def _blank(cls: type[nn.Module], *args, device: torch.device, dtype: torch.dtype, **kwargs) -> nn.Module:
    """A layer with uninitialized weights: built on the meta device, so no caller's RNG (CPU or CUDA) is drawn
    from for an init that is overwritten anyway."""
    return cls(*args, device="meta", dtype=dtype, **kwargs).to_empty(device=device)


def _chain_factors(weight: torch.Tensor, groups: int, expand: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Per-group factors (A, B) with B @ A == W: A (g, E_g, D), B (g, out_g, E_g); W is (out, D) per group."""
    out = weight.shape[0]
    out_g = out // groups
    w = weight.detach().double().reshape(groups, out_g, -1)  # (g, out_g, D)
    e_g = expand * out_g
    gauss = torch.randn(groups, e_g, out_g, generator=gen, dtype=torch.float64)
    q, _ = torch.linalg.qr(gauss)  # (g, E_g, out_g), orthonormal columns
    scale = w.std() if w.numel() > 1 and float(w.std()) > 0 else torch.tensor(1.0, dtype=torch.float64)
    r = torch.randn(groups, e_g, w.shape[-1], generator=gen, dtype=torch.float64) * scale
    null = torch.eye(e_g, dtype=torch.float64) - q @ q.transpose(1, 2)
    a = q @ w + null @ r
    b = q.transpose(1, 2)
    return a, b


class ExpandedConv(nn.Module):
    """A conv written as a k x k conv to ``expand * c_out`` channels and a grouped 1x1 conv back."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, expand: int, gen: torch.Generator) -> None:
        super().__init__()
        cls = next(base for base in CONV_TYPES if isinstance(conv, base))  # a subclass's __init__ may differ
        g, c_out = conv.groups, conv.out_channels
        hidden = expand * c_out
        factory = {"device": conv.weight.device, "dtype": conv.weight.dtype}
        self.first = _blank(
            cls,
            conv.in_channels,
            hidden,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=g,
            bias=False,
            padding_mode=conv.padding_mode,
            **factory,
        )
        self.second = _blank(cls, hidden, c_out, 1, groups=g, bias=conv.bias is not None, **factory)
        a, b = _chain_factors(conv.weight, g, expand, gen)
        with torch.no_grad():
            self.first.weight.copy_(a.reshape(self.first.weight.shape))
            self.second.weight.copy_(b.reshape(self.second.weight.shape))
            if conv.bias is not None:
                self.second.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def merge(self) -> nn.Conv1d | nn.Conv2d | nn.Conv3d:
        """The single conv this chain computes (float64 product, cast back)."""
        f, s = self.first, self.second
        g = f.groups
        a = f.weight.detach().double().reshape(g, f.out_channels // g, -1)
        b = s.weight.detach().double().reshape(g, s.out_channels // g, s.in_channels // g)
        w = (b @ a).reshape(s.out_channels, f.in_channels // g, *f.kernel_size)
        conv = _blank(
            type(f),
            f.in_channels,
            s.out_channels,
            f.kernel_size,
            stride=f.stride,
            padding=f.padding,
            dilation=f.dilation,
            groups=g,
            bias=s.bias is not None,
            padding_mode=f.padding_mode,
            device=f.weight.device,
            dtype=f.weight.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(w)
            if s.bias is not None:
                conv.bias.copy_(s.bias)
        return conv


class ExpandedLinear(nn.Module):
    """A Linear written as Linear(in, expand * out, no bias) -> Linear(expand * out, out)."""

    def __init__(self, linear: nn.Linear, expand: int, gen: torch.Generator) -> None:
        super().__init__()
        factory = {"device": linear.weight.device, "dtype": linear.weight.dtype}
        hidden = expand * linear.out_features
        self.first = _blank(nn.Linear, linear.in_features, hidden, bias=False, **factory)
        self.second = _blank(nn.Linear, hidden, linear.out_features, bias=linear.bias is not None, **factory)
        a, b = _chain_factors(linear.weight, 1, expand, gen)
        with torch.no_grad():
            self.first.weight.copy_(a[0])
            self.second.weight.copy_(b[0])
            if linear.bias is not None:
                self.second.bias.copy_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def merge(self) -> nn.Linear:
        w = self.second.weight.detach().double() @ self.first.weight.detach().double()
        f, s = self.first, self.second
        linear = _blank(
            nn.Linear,
            f.in_features,
            s.out_features,
            bias=s.bias is not None,
            device=f.weight.device,
            dtype=f.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(w)
            if s.bias is not None:
                linear.bias.copy_(s.bias)
        return linear


_EXPANDED = (ExpandedConv, ExpandedLinear)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _reads_child_weights(module: nn.Module) -> bool:
    """A module whose forward reads its children's ``.weight`` directly (attention's output projection)."""
    return isinstance(module, nn.MultiheadAttention)


def _plain(module: nn.Module) -> bool:
    """A conv or linear layer computing as its torch base class does (a subclass that only changes __init__, as
    torchvision's video Conv3DSimple, counts; one with its own forward may do more than its weights)."""
    base = next((b for b in LAYER_TYPES if isinstance(module, b)), None)
    if base is None:
        return False
    own = ("forward", "_conv_forward") if base is not nn.Linear else ("forward",)
    return all(getattr(type(module), name) is getattr(base, name) for name in own)


def expand_model(model: nn.Module, expand: int, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every Conv1d/2d/3d and Linear replaced by its expanded chain (same function).
    Layers of a subclass with a forward of its own, and those a parent reads by ``.weight``
    (``nn.MultiheadAttention``'s output projection), stay as they are: a chain has no ``.weight``.

    ``expand`` >= 1 is the width multiplier of the hidden channels. Modules are visited in
    ``named_modules`` order with one seeded generator, so a seed gives the same chain.
    """
    if isinstance(expand, bool) or not isinstance(expand, int) or expand < 1:
        raise ValueError(f"expand must be an integer >= 1, got {expand!r}")
    expanded = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    modules = list(expanded.named_modules())
    inside = {f"{n}.{c}" if n else c for n, m in modules if _reads_child_weights(m) for c, _ in m.named_children()}
    targets = [(n, m) for n, m in modules if _plain(m) and n and n not in inside]
    for name, module in targets:
        chain = (
            ExpandedConv(module, expand, gen) if isinstance(module, CONV_TYPES) else ExpandedLinear(module, expand, gen)
        )
        chain.train(module.training)
        _replace(expanded, name, chain)
    return expanded


def merge_model(model: nn.Module) -> nn.Module:
    """A copy of an expanded model with every chain multiplied back into one layer of the compact shape."""
    merged = copy.deepcopy(model)
    chains = [(n, m) for n, m in merged.named_modules() if isinstance(m, _EXPANDED)]
    for name, chain in chains:
        layer = chain.merge()
        layer.train(chain.training)
        _replace(merged, name, layer)
    return merged


def is_expanded(model: nn.Module) -> bool:
    return any(isinstance(m, _EXPANDED) for m in model.modules())
