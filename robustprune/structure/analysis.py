"""Graph analysis of a channel group: which members end it, their BN-folded incoming weights, its consumers.

Shared by the criteria (merge saliency, Taylor) and by compensation (neuron merging).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch_pruning import ops as tp_ops

from robustprune.structure.layers import CHANNELWISE_TYPES, CONV_TYPES, LAYER_TYPES
from robustprune.structure.space import ChannelGroup, PruneSpace, UnsupportedModelError

#: The BatchNorms whose affine map is folded into the layer before them.
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: Norms with a per-channel affine map (layer, group and instance norms may have no running statistics).
AFFINE_NORMS = BATCH_NORMS + (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
#: Layers with a weight matrix whose rows (producers) or input slices (consumers) carry a group's channels.
WEIGHTED_LAYERS = LAYER_TYPES
#: Members without a weight matrix or an affine map to fold (a PReLU): the group's channels pass through
#: them, so the member before one is not terminal, but they form no unit of incoming weights.
_MASKABLE = WEIGHTED_LAYERS + AFFINE_NORMS + CHANNELWISE_TYPES


def pruning_group(space: PruneSpace, index: int):
    """torch-pruning's full pruning group (every channel) of ``space.groups[index]``."""
    root, handler = space.roots[index]
    return space.graph.get_pruning_group(root, handler, list(range(space.groups[index].size)))


@dataclasses.dataclass(frozen=True)
class _Unit:
    """One producer of a group's channels: a conv/linear member and the BatchNorm it feeds, or a lone BN."""

    layer: nn.Module | None
    layer_map: tuple[int, ...] | None
    norm: nn.Module | None
    norm_map: tuple[int, ...] | None
    terminal: bool  # its output reaches no other member of the group (it is what consumers read)


def terminal_members(space: PruneSpace, group: ChannelGroup) -> set[str]:
    """Members whose output does not flow (through element-wise ops only) into another member of the group.

    conv -> BN: the BN is terminal, the conv not. A residual add: every summed BN.
    An inverted residual (1x1 conv -> BN -> ReLU6 -> depthwise -> BN): only the last BN.
    """
    modules = dict(space.model.named_modules())
    names = {m: n for n, m in modules.items()}
    member_set = set(group.members)
    terminal = set()
    for name in group.members:
        node = space.graph.module2node.get(modules[name])
        if node is None:
            terminal.add(name)
            continue
        stack, seen, reaches = list(node.outputs), set(), False
        while stack:
            nd = stack.pop()
            if id(nd) in seen:
                continue
            seen.add(id(nd))
            mod = nd.module
            if isinstance(mod, _MASKABLE):
                if names.get(mod) in member_set:
                    reaches = True
                    break
                continue  # a consumer: the channel stops here
            stack.extend(nd.outputs)
        if not reaches:
            terminal.add(name)
    return terminal


def _units(space: PruneSpace, index: int) -> list[_Unit]:
    group = space.groups[index]
    modules = dict(space.model.named_modules())
    maps = dict(zip(group.members, group.channel_maps, strict=True))
    terminal = terminal_members(space, group)
    paired: dict[str, str] = {}  # layer member -> the BN member that reads its output directly
    for name in group.members:
        module = modules[name]
        if not isinstance(module, AFFINE_NORMS):
            continue
        node = space.graph.module2node.get(module)
        inputs = _norm_inputs(node, module) if node is not None else []
        if len(inputs) == 1 and isinstance(inputs[0].module, WEIGHTED_LAYERS):
            source = next((n for n in group.members if modules[n] is inputs[0].module), None)
            if source is not None and source not in paired:
                paired[source] = name
    bn_of_layer = set(paired.values())
    units = []
    for name in group.members:
        module = modules[name]
        if isinstance(module, WEIGHTED_LAYERS):
            norm = paired.get(name)
            last = norm or name
            norm_module, norm_map = (modules[norm], maps[norm]) if norm else (None, None)
            units.append(_Unit(module, maps[name], norm_module, norm_map, last in terminal))
        elif isinstance(module, AFFINE_NORMS) and name not in bn_of_layer:
            units.append(_Unit(None, None, module, maps[name], name in terminal))
    return units


def _norm_inputs(node, norm: nn.Module) -> list:
    """The graph nodes a norm reads. An instance norm runs as view -> batch_norm -> view, and the trace
    records its own view and batch_norm as ops between it and the layer before it: those are skipped."""
    inputs = node.inputs
    if isinstance(norm, nn.InstanceNorm1d | nn.InstanceNorm2d | nn.InstanceNorm3d):
        for _ in range(2):  # batch_norm (its input first, then the repeated weight and bias), then the view
            if inputs and isinstance(inputs[0].module, tp_ops._ElementWiseOp | tp_ops._ReshapeOp):
                inputs = inputs[0].inputs[:1]
    return inputs


def _bn_affine(norm: nn.Module, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm: y = scale * x + shift."""
    n = len(idx)
    running_mean, running_var = getattr(norm, "running_mean", None), getattr(norm, "running_var", None)
    mean = running_mean[idx] if running_mean is not None else torch.zeros(n)  # layer/group norm: affine only
    var = running_var[idx] if running_var is not None else torch.ones(n)
    mean, var = mean.detach().to("cpu", torch.float64), var.detach().to("cpu", torch.float64)
    gamma = norm.weight.detach()[idx].to("cpu", torch.float64) if norm.weight is not None else torch.ones(n)
    beta = norm.bias.detach()[idx].to("cpu", torch.float64) if norm.bias is not None else torch.zeros(n)
    scale = gamma.to(torch.float64) / torch.sqrt(var + norm.eps)
    return scale, beta.to(torch.float64) - mean * scale


def _unit_effective(unit: _Unit, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective incoming (rows (size, fan_in), bias (size,)) of one unit, in float64 on the CPU.

    conv/linear followed by BN: w * gamma / sqrt(var + eps) and beta + (b - mean) * gamma / sqrt(var + eps).
    A lone BN (its input is not a member layer): rows are its scale (one column), bias its shift.
    """
    if unit.layer is not None:
        idx = list(unit.layer_map)
        w = unit.layer.weight.detach()[idx].flatten(1).to("cpu", torch.float64)
        b = (
            unit.layer.bias.detach()[idx].to("cpu", torch.float64)
            if unit.layer.bias is not None
            else torch.zeros(size, dtype=torch.float64)
        )
        if unit.norm is not None:
            scale, shift = _bn_affine(unit.norm, list(unit.norm_map))
            w = w * scale[:, None]
            b = b * scale + shift
        return w, b
    scale, shift = _bn_affine(unit.norm, list(unit.norm_map))
    return scale[:, None], shift


def effective_incoming(space: PruneSpace, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (size, D), b (size,)): effective incoming weights of every unit concatenated, and the bias.

    b is the sum of the effective biases of the *terminal* units (exact for residual adds,
    where those outputs are summed); if no unit is terminal, of all units.
    """
    size = space.groups[index].size
    units = _units(space, index)
    parts, bias_terminal, bias_all = [], torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    for unit in units:
        w, b = _unit_effective(unit, size)
        parts.append(w)
        bias_all += b
        if unit.terminal:
            bias_terminal += b
    w = torch.cat(parts, dim=1) if parts else torch.zeros(size, 0, dtype=torch.float64)
    return w, bias_terminal if any(u.terminal for u in units) else bias_all


def activation_slopes(space: PruneSpace, index: int) -> torch.Tensor | None:
    """(size, k) float64: per channel of group ``index``, its negative-side slope in each of the k per-channel
    PReLUs among the group's members; None when the group passes through none."""
    group = space.groups[index]
    modules = dict(space.model.named_modules())
    columns = [
        modules[name].weight.detach().to("cpu", torch.float64)[list(channel_map)]
        for name, channel_map in zip(group.members, group.channel_maps, strict=True)
        if isinstance(modules[name], nn.PReLU)
    ]
    return torch.stack(columns, dim=1) if columns else None


def different_activations(space: PruneSpace, index: int) -> torch.Tensor | None:
    """(size, size) bool: channels i and j of group ``index`` pass through per-channel PReLUs of different slopes
    (beyond 1e-6 of the largest), so merging one into the other is not exact; None without such PReLUs."""
    slopes = activation_slopes(space, index)
    if slopes is None:
        return None
    gap = (slopes[:, None, :] - slopes[None, :, :]).abs().amax(dim=2)
    return gap > 1e-6 * slopes.abs().amax().clamp_min(1.0)


def incoming_vectors(space: PruneSpace, index: int) -> torch.Tensor:
    """(size, D + units) float64: per unit [effective rows, effective bias], concatenated over units."""
    size = space.groups[index].size
    parts = []
    for unit in _units(space, index):
        w, b = _unit_effective(unit, size)
        parts += [w, b[:, None]]
    return torch.cat(parts, dim=1) if parts else torch.zeros(size, 0, dtype=torch.float64)


def consumer_columns(space: PruneSpace, index: int) -> list[tuple[str, nn.Module, list[list[int]]]]:
    """Per consumer layer (not a member): (name, module, cols) with cols[j] the input features of channel j.

    The mapping comes from torch-pruning's root indices, so a Linear after a flatten
    gets the whole block of features of each channel.
    """
    group = space.groups[index]
    modules = dict(space.model.named_modules())
    names = {m: n for n, m in modules.items()}
    tp_group = pruning_group(space, index)
    members = set(group.members)
    out: dict[str, tuple[nn.Module, list[list[int]]]] = {}
    for i, (dep, idxs) in enumerate(tp_group):
        module = dep.target.module
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is None or name in members or "out_channels" in dep.handler.__name__:
            continue
        if not isinstance(module, WEIGHTED_LAYERS):
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) reads group {group.name!r} but is not a conv or linear"
            )
        if isinstance(module, CONV_TYPES) and module.groups != 1:
            raise UnsupportedModelError(
                f"grouped conv '{name}' reads group {group.name!r}: merge compensation, merge saliency and bias "
                "correction move weights between input channels, which a grouped conv does not share; "
                "use BN re-estimation or no compensation and another criterion"
            )
        cols = out.setdefault(name, (module, [[] for _ in range(group.size)]))[1]
        for idx, root_idx in zip(idxs, tp_group[i].root_idxs, strict=True):
            if root_idx is None:
                continue
            if int(idx) not in cols[int(root_idx)]:
                cols[int(root_idx)].append(int(idx))
    return [(name, module, cols) for name, (module, cols) in out.items()]
