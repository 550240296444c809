"""The layers a prune space can slice: which kinds, how their channels split into blocks, their cost terms.

A grouped conv (``1 < groups``, not depthwise) keeps its number of groups when pruned: each of its
``groups`` input blocks only feeds the output block of the same index, so a candidate must keep the
same number of channels in every block of both the group it reads and the group it writes
(``ChannelGroup.blocks``), and the pruned conv's weight is gathered per output block
(``surgery.export``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
NORM_TYPES = BN_TYPES + (nn.LayerNorm, nn.GroupNorm)
#: Per-channel layers that mix no channels: sliced with their group and masked at their output, like a norm.
CHANNELWISE_TYPES = (nn.PReLU, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
LAYER_TYPES = CONV_TYPES + (nn.Linear,)
MASKABLE_TYPES = LAYER_TYPES + NORM_TYPES + CHANNELWISE_TYPES


def traced_forward(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """How torch-pruning runs the model while tracing: on the batch as given. Without it, it tries
    ``model(*example)`` first (one unbatched sample) and falls back to ``model(example)``, hiding the error.

    A PReLU with one shared slope runs as the leaky ReLU of that slope (the same graph, element-wise):
    torch's prelu kernel reshapes the slope, which torch-pruning takes for a reshape of the channels, so a
    flatten after it was mapped to no channel of the dense layer it feeds."""
    layers = element_wise_layers(model)
    own = [m.__dict__.get("forward") for m in layers]  # a forward set on the instance itself is put back
    for module in layers:
        module.forward = functools.partial(F.leaky_relu, negative_slope=float(module.weight.detach()))
    try:
        return model(example)
    finally:
        for module, forward in zip(layers, own, strict=True):
            del module.forward
            if forward is not None:
                module.forward = forward


def element_wise_layers(model: nn.Module) -> list[nn.Module]:
    """Registered layers that act element-wise (a PReLU with one shared slope): traced as plain ops, so one
    module called after several layers does not tie their channels into one group."""
    return [m for m in model.modules() if isinstance(m, nn.PReLU) and m.num_parameters == 1]


def carries_channels(module: nn.Module) -> bool:
    """Whether ``module`` holds per-channel state that a group slices (a PReLU with one shared slope does
    not: it is element-wise)."""
    if isinstance(module, nn.PReLU):
        return module.num_parameters > 1
    return isinstance(module, MASKABLE_TYPES)


class UnsupportedModelError(ValueError):
    """The model contains something the prune space cannot handle; the message names it."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """Cost terms of one conv/linear/norm module, as a function of kept channel counts."""

    name: str
    kind: str  # "conv", "linear", "norm"
    in_group: int | None
    out_group: int | None
    in_full: int  # channels in, at full width (group channels, before multiplicity)
    out_full: int
    in_mult: int  # input features per group channel (flatten before a linear)
    positions: int  # output spatial positions (1 for linear)
    kernel: int  # kernel elements (1 for linear); for a norm, its affine parameters per channel
    depthwise: bool
    bias: bool
    groups: int = 1  # a grouped conv's groups: each output reads in_channels / groups inputs
    # input features per kept channel of each group the layer reads, and inputs from no group: a layer
    # reading a concat of several groups (an inception block's projection) has one term per branch
    in_terms: tuple[tuple[int, int], ...] = ()
    in_fixed: int = 0
    # a norm after a concat normalizes several groups' channels: the groups it carries (out_group None),
    # and its channels from no group
    out_groups: tuple[int, ...] = ()
    out_fixed: int = 0

    def out_count(self, counts: Sequence[int]) -> int:
        """Output channels at kept channel counts per group."""
        if self.out_groups:
            return sum(counts[g] for g in self.out_groups) + self.out_fixed
        return counts[self.out_group] if self.out_group is not None else self.out_full

    def in_features(self, counts: Sequence[int]) -> int:
        """Input features (channels x flattened positions) at kept channel counts per group."""
        if not self.in_terms:
            return self.in_full * self.in_mult
        return sum(counts[g] * m for g, m in self.in_terms) + self.in_fixed


def conv_kind(module: nn.Module) -> str | None:
    """ "dense", "depthwise" (groups == in == out channels) or "grouped" for a conv; None otherwise.
    "unsupported": groups == out_channels != in_channels, which torch-pruning couples as if depthwise."""
    if not isinstance(module, CONV_TYPES):
        return None
    if module.groups == 1:
        return "dense"
    if module.groups == module.in_channels == module.out_channels:
        return "depthwise"
    return "unsupported" if module.groups == module.out_channels else "grouped"


def norm_channels(module: nn.Module) -> int:
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1]
    if isinstance(module, nn.PReLU):
        return module.num_parameters
    return module.num_channels if isinstance(module, nn.GroupNorm) else module.num_features


def channel_axis(module: nn.Module, out_shape: tuple[int, ...]) -> int:
    """The axis of ``module``'s output that holds its channels: the last for a Linear (it maps the last
    axis, e.g. (N, L, C) tokens) and for a plain LayerNorm; axis 1 for convs, batch and group norms and a
    channels-first LayerNorm (a subclass that permutes NCHW, as torchvision's and timm's LayerNorm2d)."""
    if isinstance(module, nn.Linear) or len(out_shape) == 2:
        return -1
    if isinstance(module, nn.LayerNorm):
        channels = module.normalized_shape[-1]
        if type(module).forward is nn.LayerNorm.forward or out_shape[1] != channels:
            return -1
        return 1 if out_shape[-1] != channels else -1
    return 1


def check_plain_weights(model: nn.Module) -> None:
    """Refuse a layer whose weight is computed from other parameters (weight_norm, spectral_norm): export
    slices the weight itself, which such a layer does not hold."""
    for name, module in model.named_modules():
        hooks = module._forward_pre_hooks.values()
        if isinstance(module, MASKABLE_TYPES) and (
            parametrize.is_parametrized(module) or any(isinstance(h, WeightNorm | SpectralNorm) for h in hooks)
        ):
            raise UnsupportedModelError(
                f"layer '{name}' ({type(module).__name__}) computes its weight from other parameters (weight_norm, "
                "spectral_norm or another parametrization), which pruning cannot slice; bake it in first with "
                "torch.nn.utils.parametrize.remove_parametrizations(layer, 'weight') (or remove_weight_norm / "
                "remove_spectral_norm for the older hooks)"
            )


def check_member(name: str, module: nn.Module) -> None:
    """Refuse members whose channels cannot be sliced exactly."""
    if conv_kind(module) == "unsupported":
        raise UnsupportedModelError(
            f"module '{name}' is a conv with groups == out_channels ({module.groups}) but {module.in_channels} "
            f"inputs, which is not supported; exclude it (exclude=['{name}'])"
        )
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
        raise UnsupportedModelError(
            f"module '{name}' is a LayerNorm over {tuple(module.normalized_shape)}; only a LayerNorm over the "
            f"channels alone is supported; exclude it (exclude=['{name}']) to keep its channels whole"
        )


def blocks(
    group: str,
    size: int,
    members: Sequence[tuple[str, nn.Module, Sequence[int]]],
    consumers: Sequence[tuple[str, nn.Module, Sequence[int]]],
) -> int:
    """How many equal blocks the group's channels fall into: the least common multiple of its GroupNorms'
    groups and the groups of the grouped convs that write or read it (1 without either).

    ``members``/``consumers``: (name, module, the module's channel of each group channel)."""
    out = 1
    identity = list(range(size))
    for name, module, cmap in members:
        if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
            if list(cmap) != identity:
                raise UnsupportedModelError(
                    f"GroupNorm '{name}' does not cover its group's channels one to one; exclude '{group}'"
                )
            out = math.lcm(out, module.num_groups)
        elif conv_kind(module) == "grouped":
            if list(cmap) != identity or module.out_channels != size:
                raise UnsupportedModelError(
                    f"grouped conv '{name}' does not cover its group's channels one to one; exclude '{group}'"
                )
            out = math.lcm(out, module.groups)
    for name, module, cmap in consumers:
        if conv_kind(module) == "grouped":
            if list(cmap) != identity or module.in_channels != size:
                raise UnsupportedModelError(
                    f"grouped conv '{name}' reads part of group '{group}' or reorders it (a concat or a channel "
                    f"shuffle before it?), which is not supported; exclude '{group}'"
                )
            out = math.lcm(out, module.groups)
    return out


def layers(
    names: Mapping[nn.Module, str],
    shapes: Mapping[nn.Module, tuple],
    writes: Mapping[str, Sequence[int]],
    reads: Mapping[str, Sequence[tuple[int, int]]],
    sizes: Sequence[int],
    group_names: Sequence[str],
) -> list[Layer]:
    """Cost terms of every traced maskable module; ``writes`` maps a module name to the index of every
    group it carries (several only for a norm after a concat), ``reads`` to (index, input features
    covered at full width) of each group it reads."""
    out = []
    for module, (_in_shape, out_shape) in shapes.items():
        name = names[module]
        if isinstance(module, NORM_TYPES + CHANNELWISE_TYPES):
            channels = norm_channels(module)
            affine = sum(p.numel() for p in module.parameters(recurse=False)) // channels
            carried = tuple(writes.get(name, ()))
            # after a concat: one term per group it normalizes, plus its channels from no group
            fixed = channels - sum(sizes[g] for g in carried)
            several = len(carried) > 1 or (len(carried) == 1 and fixed > 0)
            single = carried[0] if carried and not several else None
            terms = {"out_groups": carried, "out_fixed": fixed} if several else {}
            out.append(Layer(name, "norm", None, single, channels, channels, 1, 1, affine, False, False, **terms))
            continue
        groups = 1
        if isinstance(module, nn.Linear):
            c_in, c_out, kernel, positions, depthwise = module.in_features, module.out_features, 1, 1, False
            for d in out_shape[1:-1]:
                positions *= d
        else:
            c_in, c_out = module.in_channels, module.out_channels
            kernel = math.prod(module.kernel_size)
            positions = math.prod(out_shape[2:])
            depthwise = conv_kind(module) == "depthwise"
            groups = 1 if depthwise else module.groups
        terms = [] if depthwise else list(reads.get(name, ()))  # a depthwise conv's inputs are its outputs
        for gi, covered in terms:
            if covered % sizes[gi]:
                raise UnsupportedModelError(
                    f"layer '{name}' reads {covered} inputs from group '{group_names[gi]}', not a multiple of its "
                    f"{sizes[gi]} channels (e.g. attention heads split from one projection); exclude "
                    f"'{group_names[gi]}'"
                )
        fixed = c_in - sum(covered for _, covered in terms)
        if fixed < 0:
            raise UnsupportedModelError(f"layer '{name}' reads more group channels than it has inputs ({c_in})")
        gi, mult, in_full = None, 1, c_in
        if len(terms) == 1 and not fixed:  # one group, maybe flattened: a table over its kept channels
            gi, covered = terms[0]
            mult, in_full = covered // sizes[gi], sizes[gi]
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        bias = module.bias is not None
        in_terms = tuple((g, covered // sizes[g]) for g, covered in terms)
        out.append(
            Layer(
                name,
                kind,
                gi,
                writes.get(name, [None])[-1],
                in_full,
                c_out,
                mult,
                positions,
                kernel,
                depthwise,
                bias,
                groups,
                in_terms,
                fixed if terms else 0,
            )
        )
    return out
