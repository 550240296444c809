"""The prune space: coupled channel groups of a model and an exact cost model over them.

Channels that must be removed together (a conv's filters, its BN, the next layer's
input slices, every tensor joined by a residual add) form one ``ChannelGroup``,
found with torch-pruning's DependencyGraph. A candidate keeps a subset of each
group's channels; ``PruneSpace.cost`` returns its MACs and parameters without
building the pruned model, which is what makes scoring thousands of candidates cheap.

MACs here are the multiply-accumulates of conv and linear layers (bias adds
included), exactly as torch-pruning's counter counts those layers; element-wise
ops (BN, activations, pooling) are left out of the search's cost because they
are a few percent of the total and not multiply-accumulates.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from robustprune._modes import eval_mode
from robustprune.spec import InputSpec, validate_model

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_NORM_TYPES = _BN_TYPES + (nn.LayerNorm, nn.GroupNorm)
_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
_MASKABLE_TYPES = _LAYER_TYPES + _NORM_TYPES


class UnsupportedModelError(ValueError):
    """The model contains something the prune space cannot handle; the message names it."""


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels removed together. ``size`` channels; ``members`` are the modules whose outputs carry them.

    ``channel_maps[i]`` maps the group's channel j to channel ``channel_maps[i][j]`` of ``members[i]``.
    """

    name: str
    size: int
    members: tuple[str, ...]
    channel_maps: tuple[tuple[int, ...], ...]
    consumers: tuple[str, ...]  # modules whose *inputs* carry the group's channels
    macs_per_channel: int = 0  # marginal MACs of one channel at full width
    blocks: int = 1  # a GroupNorm member's groups: a candidate keeps the same number of channels in each


@dataclasses.dataclass(frozen=True)
class _Layer:
    """Cost terms of one conv/linear/BN module, as a function of kept channel counts."""

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


Candidate = Mapping[str, Sequence[int]]
"""Kept channel indices per group name; groups not named keep all channels."""


class PruneSpace:
    """The prunable channel groups of ``model`` for inputs described by ``spec``.

    Holds a reference to ``model`` (no copy); nothing here changes it.
    """

    def __init__(self, model: nn.Module, spec: InputSpec, exclude: Iterable[str] = (), device=None) -> None:
        self.model = model
        self.spec = spec
        self.device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
        validate_model(model, spec)
        names = {m: n for n, m in model.named_modules()}
        by_name = dict(model.named_modules())
        exclude = set(exclude)
        self.excluded = frozenset(exclude)
        unknown = exclude - set(names.values())
        if unknown:
            raise ValueError(f"excluded modules not found in the model: {', '.join(sorted(unknown))}")
        example = torch.zeros(1, *spec.shape, device=self.device)
        with eval_mode(model):
            output_layers = _output_layers(model, example)
            self.output_layer = names[output_layers[0]]
            try:
                with warnings.catch_warnings():  # free parameters (layer scales) are sliced with their group
                    warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
                    self.graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
            except Exception as exc:
                raise UnsupportedModelError(
                    f"torch-pruning could not trace the model: {exc.__class__.__name__}: {exc}"
                ) from exc
            raw_groups = list(self.graph.get_all_groups(ignored_layers=output_layers, root_module_types=_LAYER_TYPES))
            shapes = _output_shapes(model, example)
        _check_traced(self.graph, shapes, names)

        groups: list[ChannelGroup] = []
        self.roots: list[tuple[nn.Module, object]] = []  # per group: torch-pruning's root module and handler
        self._params: list[list[nn.Parameter]] = []  # per group: free parameters sliced along with it
        for raw in raw_groups:
            root = raw[0].dep
            size = len(raw[0].idxs)
            full = self.graph.get_pruning_group(root.target.module, root.handler, list(range(size)))
            members, maps, consumers, unsupported, params = [], [], [], [], []
            for dep, idxs in full:
                module = dep.target.module
                if isinstance(module, nn.Parameter) and "out_channels" in dep.handler.__name__:
                    params.append(module)  # e.g. ConvNeXt's layer scale: torch-pruning slices it with the group
                    continue
                if not isinstance(module, nn.Module) or module not in names:
                    continue  # element-wise ops and reshapes: no parameters, nothing to mask
                name = names[module]
                if "out_channels" in dep.handler.__name__:
                    if not isinstance(module, _MASKABLE_TYPES):
                        unsupported.append(name)
                    elif name not in members:
                        members.append(name)
                        maps.append(tuple(int(i) for i in idxs))
                elif name not in consumers:
                    consumers.append(name)
            if any(m in exclude for m in members + unsupported) or not (members or unsupported):
                continue  # excluded: its channels stay whole; the other groups are unaffected
            if unsupported:
                kind = type(by_name[unsupported[0]]).__name__
                raise UnsupportedModelError(
                    f"module '{unsupported[0]}' ({kind}) carries prunable channels but is not a conv, linear, "
                    f"batch-, layer- or group-norm layer; exclude it (exclude=['{unsupported[0]}']) to keep them whole"
                )
            modules = [by_name[m] for m in members]
            for name, module in zip(members, modules, strict=True):
                _check_member(name, module)
            for member, cmap in zip(members, maps, strict=True):
                if len(cmap) != size:  # e.g. one branch of a concat that is then added to another tensor
                    raise UnsupportedModelError(
                        f"module '{member}' carries {len(cmap)} of the {size} channels of group '{members[0]}' "
                        f"(a concat joined by an add?), which is not supported; exclude '{members[0]}'"
                    )
            blocks = _blocks(members, modules, maps, size)
            groups.append(
                ChannelGroup(
                    name=members[0],
                    size=size,
                    members=tuple(members),
                    channel_maps=tuple(maps),
                    consumers=tuple(consumers),
                    blocks=blocks,
                )
            )
            self._params.append(params)
            self.roots.append((root.target.module, root.handler))
        if not groups:
            raise ValueError("nothing left to prune: every channel group is excluded or feeds the model output")
        self._layers = _layers(model, names, groups, shapes)
        self.channel_axes = {names[m]: _channel_axis(m, shapes[m][1]) for m in shapes}
        self.groups: tuple[ChannelGroup, ...] = tuple(self._with_marginal_costs(groups))
        self._index = {g.name: i for i, g in enumerate(self.groups)}
        self.full_macs, self.full_params = self.cost({})

    # -- lookup -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.groups)

    def index_of(self, name: str) -> int:
        """Position of group ``name`` in ``groups`` (KeyError naming the group if there is none)."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no channel group named {name!r}") from None

    def group(self, name: str) -> ChannelGroup:
        return self.groups[self.index_of(name)]

    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    # -- cost model ---------------------------------------------------------------------------------
    def kept_counts(self, candidate: Candidate) -> list[int]:
        """Channels kept per group (in group order), validating the candidate."""
        counts = [g.size for g in self.groups]
        for name, keep in candidate.items():
            g = self.group(name)
            keep = list(keep)
            if not keep:
                raise ValueError(f"group {name!r} would lose all its channels; keep at least one")
            if len(set(keep)) != len(keep) or min(keep) < 0 or max(keep) >= g.size:
                raise ValueError(f"kept indices of group {name!r} must be distinct and in [0, {g.size})")
            if g.blocks > 1:
                per_block = torch.bincount(torch.tensor(keep) // (g.size // g.blocks), minlength=g.blocks)
                if not bool((per_block == per_block[0]).all()):
                    raise ValueError(
                        f"group {name!r} feeds a GroupNorm of {g.blocks} groups: keep the same number of channels "
                        f"in each of its groups of {g.size // g.blocks}"
                    )
            counts[self.index_of(name)] = len(keep)
        return counts

    def cost(self, candidate: Candidate) -> tuple[int, int]:
        """(MACs, params) of the model pruned to ``candidate``; exact, no model is built."""
        return self.cost_of_counts(self.kept_counts(candidate))

    def cost_of_counts(self, counts: Sequence[int]) -> tuple[int, int]:
        macs = 0
        params = self._fixed_params + sum(c * n for c, n in zip(self._free_per_channel, counts, strict=True))
        for layer in self._layers:
            n_in = counts[layer.in_group] if layer.in_group is not None else layer.in_full
            n_out = counts[layer.out_group] if layer.out_group is not None else layer.out_full
            if layer.kind == "norm":
                params += layer.kernel * n_out  # affine parameters per channel (0, 1 or 2)
                continue
            fan_in = layer.kernel * (1 if layer.depthwise else n_in * layer.in_mult)
            macs += layer.positions * (fan_in * n_out + (n_out if layer.bias else 0))
            params += fan_in * n_out + (n_out if layer.bias else 0)
        return macs, params

    def _with_marginal_costs(self, groups: list[ChannelGroup]) -> list[ChannelGroup]:
        self.groups = tuple(groups)
        own = {layer.name for layer in self._layers}
        free = {id(p) for params in self._params for p in params}
        self._free_per_channel = [
            sum(p.numel() for p in params) // g.size for params, g in zip(self._params, groups, strict=True)
        ]
        self._fixed_params = sum(
            p.numel()
            for n, m in self.model.named_modules()
            if n not in own
            for p in m.parameters(recurse=False)
            if id(p) not in free
        )
        full = [g.size for g in groups]
        base_macs, base_params = self.cost_of_counts(full)
        out = []
        for i, g in enumerate(groups):
            counts = list(full)
            counts[i] -= 1
            macs, params = self.cost_of_counts(counts)
            out.append(dataclasses.replace(g, macs_per_channel=base_macs - macs))
        return out


def _norm_channels(module: nn.Module) -> int:
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[-1]
    return module.num_channels if isinstance(module, nn.GroupNorm) else module.num_features


def _channel_axis(module: nn.Module, out_shape: tuple[int, ...]) -> int:
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


def _check_member(name: str, module: nn.Module) -> None:
    """Refuse members whose channels cannot be sliced exactly."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and 1 < module.groups < module.in_channels:
        raise UnsupportedModelError(f"module '{name}' is a grouped (non-depthwise) conv, which is not supported")
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
        raise UnsupportedModelError(
            f"module '{name}' is a LayerNorm over {tuple(module.normalized_shape)}; only a LayerNorm over the "
            "channels alone is supported"
        )


def _blocks(members: list[str], modules: list[nn.Module], maps: list[tuple[int, ...]], size: int) -> int:
    """The number of GroupNorm groups the group's channels fall into (1 without a GroupNorm member)."""
    blocks = 1
    for name, module, cmap in zip(members, modules, maps, strict=True):
        if not isinstance(module, nn.GroupNorm) or module.num_groups == 1:
            continue
        if list(cmap) != list(range(size)) or (blocks > 1 and module.num_groups != blocks):
            raise UnsupportedModelError(
                f"GroupNorm '{name}' does not cover its group's channels one to one; exclude '{members[0]}'"
            )
        blocks = module.num_groups
    return blocks


def _check_traced(graph: tp.DependencyGraph, shapes: Mapping, names: Mapping) -> None:
    """Refuse a model whose conv/linear layers run but are missing from the traced graph: their
    channels would be invisible to the prune space (torch-pruning traces through autograd)."""
    for module in shapes:
        if isinstance(module, _LAYER_TYPES) and module not in graph.module2node:
            raise UnsupportedModelError(
                f"torch-pruning could not trace the model: layer '{names[module]}' runs but its output does not "
                "reach the model output through autograd (.detach(), .item(), .tolist(), numpy, torch.no_grad() "
                "or requires_grad=False parameters cut the trace)"
            )


def _output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Layers whose output is the model's output: their channels are the classes and are never pruned."""
    produced: dict[int, nn.Module] = {}
    handles = [
        m.register_forward_hook(lambda mod, _i, out: produced.__setitem__(id(out), mod))
        for m in model.modules()
        if isinstance(m, _LAYER_TYPES)
    ]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    last = [m for m in model.modules() if isinstance(m, _LAYER_TYPES)]
    if id(out) in produced:
        return [produced[id(out)]]
    return last[-1:]  # a reshape/pool follows the last layer: protect the last layer in call order


def _output_shapes(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, tuple[int, ...]]:
    shapes: dict[nn.Module, tuple[int, ...]] = {}

    def hook(mod, inputs, out):
        if mod in shapes:
            raise UnsupportedModelError(f"layer {type(mod).__name__} is called more than once per forward pass")
        shapes[mod] = (tuple(inputs[0].shape), tuple(out.shape))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _MASKABLE_TYPES)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


def _layers(model: nn.Module, names: dict, groups: list[ChannelGroup], shapes: dict) -> list[_Layer]:
    out_group = {m: i for i, g in enumerate(groups) for m in g.members}
    in_group = {m: i for i, g in enumerate(groups) for m in g.consumers}
    layers = []
    for module, (_in_shape, out_shape) in shapes.items():
        name = names[module]
        if isinstance(module, _NORM_TYPES):
            channels = _norm_channels(module)
            affine = sum(p.numel() for p in module.parameters(recurse=False)) // channels
            layers.append(
                _Layer(name, "norm", None, out_group.get(name), channels, channels, 1, 1, affine, False, False)
            )
            continue
        if isinstance(module, nn.Linear):
            c_in, c_out, kernel, positions, depthwise = module.in_features, module.out_features, 1, 1, False
            for d in out_shape[1:-1]:
                positions *= d
        else:
            c_in, c_out = module.in_channels, module.out_channels
            kernel = 1
            for k in module.kernel_size:
                kernel *= k
            positions = 1
            for d in out_shape[2:]:
                positions *= d
            depthwise = module.groups > 1
        gi = in_group.get(name)
        if depthwise:
            gi = None  # a depthwise conv's input channels are its output channels
        mult = 1
        in_full = c_in
        if gi is not None:
            size = groups[gi].size
            if c_in % size:
                raise UnsupportedModelError(
                    f"layer '{name}' has {c_in} inputs, not a multiple of its group's {size} channels (e.g. attention "
                    f"heads split from one projection); exclude '{groups[gi].name}'"
                )
            mult, in_full = c_in // size, size
        layers.append(
            _Layer(
                name,
                "linear" if isinstance(module, nn.Linear) else "conv",
                gi,
                out_group.get(name),
                in_full,
                c_out,
                mult,
                positions,
                kernel,
                depthwise,
                module.bias is not None,
            )
        )
    return layers
