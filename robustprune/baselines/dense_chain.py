"""A dense ReLU chain ``[Flatten] Linear (ReLU Linear)*``: finding it in a model, and interval bounds through it.

Used by the Paoding baseline (``baselines.paoding``): the bounds start from the box of normalized
inputs the spec's pixel ``value_range`` allows, so they hold for every input in it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from robustprune._modes import eval_mode
from robustprune.spec import InputSpec
from robustprune.structure.space import UnsupportedModelError

_DTYPE = torch.float64


def input_intervals(spec: InputSpec, n_features: int) -> tuple[Tensor, Tensor]:
    """Box of normalized inputs: per feature ``[(low - mean_c) / std_c, (high - mean_c) / std_c]``.

    ``(low, high)`` is ``spec.value_range``; features are in flatten (channel-major) order and
    ``n_features`` must equal the number of elements of one input of ``spec.shape``.
    """
    per_input = math.prod(spec.shape)
    if n_features != per_input:
        raise ValueError(f"input_intervals: {n_features} features, but spec.shape {spec.shape} has {per_input}")
    channels = spec.shape[0]
    per_channel = per_input // channels
    mean = torch.tensor(spec.mean, dtype=_DTYPE).expand(channels)
    std = torch.tensor(spec.std, dtype=_DTYPE).expand(channels)
    low, high = spec.value_range
    lo = ((low - mean) / std).repeat_interleave(per_channel)
    hi = ((high - mean) / std).repeat_interleave(per_channel)
    return lo, hi


def interval_linear(lo: Tensor, hi: Tensor, weight: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Sound image of the box ``[lo, hi]`` (..., in) under ``x @ W.T + b``: centre ``W c + b``, radius ``|W| r``."""
    weight = weight.to(_DTYPE)
    centre = (lo + hi) / 2 @ weight.T
    radius = (hi - lo) / 2 @ weight.abs().T
    if bias is not None:
        centre = centre + bias.to(_DTYPE)
    return centre - radius, centre + radius


def interval_relu(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Image of ``[lo, hi]`` under ReLU."""
    return lo.clamp_min(0), hi.clamp_min(0)


def _relu_delta(d_lo: Tensor, d_hi: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Bounds of ``relu(x + d) - relu(x)`` for ``d`` in ``[d_lo, d_hi]`` and ``x <= upper``.

    ReLU is monotone and 1-Lipschitz, so the change lies in ``[min(d, 0), max(d, 0)]``; it is also
    at least ``-relu(x)`` and at most ``relu(x + d)``, which tightens it for units that are off.
    """
    up = upper.clamp_min(0)
    lo = torch.minimum(torch.zeros_like(d_lo), torch.maximum(d_lo, -up))
    hi = torch.maximum(torch.zeros_like(d_hi), torch.minimum(d_hi, (upper + d_hi).clamp_min(0)))
    return lo, hi


def chain_intervals(
    weights: list[Tensor], biases: list[Tensor | None], lo: Tensor, hi: Tensor
) -> list[tuple[Tensor, Tensor]]:
    out = []
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if k:
            lo, hi = interval_relu(lo, hi)
        lo, hi = interval_linear(lo, hi, w, b)
        out.append((lo, hi))
    return out


def propagate_intervals(model: nn.Module, spec: InputSpec) -> list[tuple[Tensor, Tensor]]:
    """Pre-activation intervals ``(lo, hi)`` (float64) of every Linear of a supported chain, in order.

    They start from :func:`input_intervals` and so bound the outputs of every input in the spec's
    value range; the last entry bounds the logits.
    """
    layers = [m for _, m in dense_chain(model, spec)]
    lo, hi = input_intervals(spec, layers[0].in_features)
    with torch.no_grad():
        return chain_intervals(
            [m.weight.detach() for m in layers], [None if m.bias is None else m.bias.detach() for m in layers], lo, hi
        )


def merge_impact(
    kept: np.ndarray | Tensor,
    removed: np.ndarray | Tensor,
    post_lo: Tensor,
    post_hi: Tensor,
    w_next: Tensor,
    downstream: list[tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor]:
    """Interval of the logit change caused by merging each ``removed[m]`` into ``kept[m]``.

    ``post_lo``/``post_hi``: post-ReLU intervals of the layer's neurons; ``w_next`` (n_next, n): the
    next layer's weight. The next layer's input term changes from ``a W[:, a] + b W[:, b]`` to
    ``a (W[:, a] + W[:, b])``, i.e. by ``(a - b) W[:, b]``. ``downstream`` lists, for each later
    Linear, ``(upper, W)``: the upper pre-activation bound of the units feeding it through a
    ReLU, and its weight. Returns ``(lo, hi)`` of shape (m, n_outputs).
    """
    kept = torch.as_tensor(kept, dtype=torch.long)
    removed = torch.as_tensor(removed, dtype=torch.long)
    d_lo = post_lo[kept] - post_hi[removed]
    d_hi = post_hi[kept] - post_lo[removed]
    centre, radius = (d_lo + d_hi) / 2, (d_hi - d_lo) / 2
    column = w_next.to(_DTYPE)[:, removed].T  # (m, n_next)
    c, r = centre[:, None] * column, radius[:, None] * column.abs()
    lo, hi = c - r, c + r
    for upper, weight in downstream:
        lo, hi = _relu_delta(lo, hi, upper)
        lo, hi = interval_linear(lo, hi, weight)
    return lo, hi


_PASSIVE = (nn.Identity, nn.Dropout, nn.Flatten, nn.ReLU)  # modules a dense chain may hold besides Linear


def dense_chain(model: nn.Module, spec: InputSpec) -> list[tuple[str, nn.Linear]]:
    """The Linear layers, in call order, of a model that computes ``[Flatten] Linear (ReLU Linear)*``,
    however it is written (a module holding a Flatten and a Sequential, ``F.relu`` in a forward),
    or a ValueError naming what is not supported."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or (next(module.children(), None) is not None and not _owns_tensors(module)):
            continue  # a Linear, or a container without tensors of its own
        if not isinstance(module, _PASSIVE):
            conv = "Conv" in type(module).__name__
            hint = " (conv layers are not supported by this dense-only baseline)" if conv else ""
            raise UnsupportedModelError(
                f"paoding: unsupported module '{name}' ({type(module).__name__}){hint}; expected "
                f"[Flatten] Linear (ReLU Linear)*"
            )
    linears = _linears_in_call_order(model, spec)
    for (prev_name, prev), (name, module) in zip(linears, linears[1:], strict=False):
        if prev.out_features != module.in_features:
            raise UnsupportedModelError(
                f"paoding: Linear '{name}' takes {module.in_features} inputs but the previous Linear "
                f"'{prev_name}' gives {prev.out_features}"
            )
    if len(linears) < 2:
        raise UnsupportedModelError("paoding: the model has no hidden dense layer to prune")
    first_name, first = linears[0]
    if first.in_features != math.prod(spec.shape):
        raise UnsupportedModelError(
            f"paoding: the first Linear '{first_name}' takes {first.in_features} inputs, but one input of shape "
            f"{spec.shape} has {math.prod(spec.shape)} values; expected [Flatten] Linear (ReLU Linear)*"
        )
    _check_computes_chain(model, spec, [m for _, m in linears])
    return linears


def _owns_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False))


def _probe_inputs(spec: InputSpec, like: torch.Tensor, n: int = 32) -> Tensor:
    """Normalized inputs spread over the spec's value range (both corners included), a fixed draw."""
    low, high = spec.value_range
    gen = torch.Generator().manual_seed(0)
    pixels = low + (high - low) * torch.rand(n, *spec.shape, generator=gen, dtype=torch.float64)
    pixels[0], pixels[-1] = low, high
    return spec.normalize(pixels.to(like.dtype)).to(like.device)


def _linears_in_call_order(model: nn.Module, spec: InputSpec) -> list[tuple[str, nn.Linear]]:
    names = {m: n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not names:
        raise UnsupportedModelError("paoding: the model has no Linear layer")
    calls: list[nn.Linear] = []
    handles = [m.register_forward_hook(lambda mod, _i, _o: calls.append(mod)) for m in names]
    x = _probe_inputs(spec, next(iter(names)).weight, n=2)
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    except Exception as exc:
        raise UnsupportedModelError(f"paoding: the model failed on an input of shape {spec.shape}: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()
    unused = [names[m] for m in names if m not in calls]
    if unused or len(calls) != len(set(calls)):
        what = f"Linear '{unused[0]}' is never called" if unused else "a Linear is called more than once"
        raise UnsupportedModelError(f"paoding: {what}; expected [Flatten] Linear (ReLU Linear)*")
    return [(names[m], m) for m in calls]


def _check_computes_chain(model: nn.Module, spec: InputSpec, layers: list[nn.Linear]) -> None:
    """The model's output equals ``Linear (ReLU Linear)*`` of its flattened input, so the interval
    bounds and merges of the paper apply to it (an activation other than ReLU, a skip connection or
    an input transform would break them)."""
    x = _probe_inputs(spec, layers[0].weight)
    with eval_mode(model), torch.no_grad():
        got = model(x)
        expected = x.flatten(1)
        for k, layer in enumerate(layers):
            expected = layer(torch.relu(expected) if k else expected)
    tolerance = 1e-5 * (1 + float(expected.abs().max()))
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=tolerance):
        raise UnsupportedModelError(
            "paoding: the model does not compute [Flatten] Linear (ReLU Linear)* over its Linear layers "
            f"{', '.join(repr(n) for n, m in model.named_modules() if m in layers)}"
        )
