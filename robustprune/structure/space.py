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
import operator
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from robustprune._modes import eval_mode, requiring_grad
from robustprune.spec import InputSpec, validate_model
from robustprune.structure.layers import (
    LAYER_TYPES,
    MASKABLE_TYPES,
    UnsupportedModelError,
    blocks,
    channel_axis,
    check_member,
    check_plain_weights,
    conv_kind,
    element_wise_layers,
    layers,
    traced_forward,
)
from robustprune.structure.trace import check_traced, no_hooks_left, output_layers, output_shapes
from robustprune.structure.verify import check_exact

__all__ = ["Candidate", "ChannelGroup", "PruneSpace", "UnsupportedModelError"]


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
    blocks: int = 1  # GroupNorm / grouped-conv blocks: a candidate keeps the same number of channels in each


Candidate = Mapping[str, Sequence[int]]
"""Kept channel indices per group name; groups not named keep all channels."""


def _in_root_order(item) -> tuple[int, ...]:
    """A torch-pruning group item's indices ordered by the group channel each one belongs to (its root index):
    torch-pruning may list them in another order (after a flatten that a residual add also feeds)."""
    idxs = [int(i) for i in item.idxs]
    roots = item.root_idxs
    if roots is None or any(r is None for r in roots):
        return tuple(idxs)
    return tuple(i for _, i in sorted(zip((int(r) for r in roots), idxs, strict=True), key=lambda pair: pair[0]))


def _trace_failure(exc: Exception) -> str:
    """What went wrong in torch-pruning's tracer, in a line; a reshape that splits the channel axis
    (ShuffleNet's channel shuffle) is named, since the error alone does not say so."""
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    if "update_reshape_index_mapping" in frames:
        site = _reshape_site(exc)
        return (
            f"a reshape{site} splits or regroups the channel axis (a channel shuffle, as in ShuffleNet), which its "
            f"index mapping does not support (Torch-Pruning issue #14); --exclude cannot skip a reshape "
            f"[{exc.__class__.__name__}: {exc}]"
        )
    return f"{exc.__class__.__name__}: {exc}"


def _reshape_site(exc: Exception) -> str:
    """' in BLOCK (after A, B)': the modules whose outputs feed the reshape torch-pruning failed on, read
    off its frame, and the block holding them all; '' where the frame does not say."""
    tb, graph, node = exc.__traceback__, None, None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "update_reshape_index_mapping":
            graph, node = tb.tb_frame.f_locals.get("graph"), tb.tb_frame.f_locals.get("reshape_node")
        tb = tb.tb_next
    names = getattr(graph, "_module2name", None)
    if not names or node is None:
        return ""
    merging = (tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT)
    feeding, seen, stack = [], set(), [(n, False) for n in getattr(node, "inputs", [])]
    while stack and len(seen) < 1000:  # back through unnamed ops (view, transpose, cat) to the nearest modules
        prev, merged = stack.pop()
        if id(prev) in seen:
            continue
        seen.add(id(prev))
        name = names.get(getattr(prev, "module", None))
        kind = getattr(prev, "type", None)
        if name:
            feeding.append(name)
        elif not (merged and kind == tp.ops.OPTYPE.RESHAPE):  # a reshape beyond a cat or split is another site
            stack.extend((n, merged or kind in merging) for n in getattr(prev, "inputs", []))
    if not feeding:
        return ""
    feeding = sorted(set(feeding))
    parts = [n.split(".") for n in feeding]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    block = ".".join(common) if len(feeding) > 1 else ""
    return (f" in {block}" if block else "") + f" (after {', '.join(feeding)})"


class PruneSpace:
    """The prunable channel groups of ``model`` for inputs described by ``spec``.

    Holds a reference to ``model`` (no copy); nothing here changes it. With ``verify`` (the default)
    the space checks that a random candidate's exported model computes what its masked model
    computes, and refuses the model naming the group that breaks it (``structure.verify``).
    """

    def __init__(
        self, model: nn.Module, spec: InputSpec, exclude: Iterable[str] = (), device=None, verify: bool = True
    ) -> None:
        self.model = model
        self.spec = spec
        self.device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
        validate_model(model, spec)
        check_plain_weights(model)
        names = {m: n for n, m in model.named_modules()}
        by_name = dict(model.named_modules())
        exclude = {exclude} if isinstance(exclude, str) else set(exclude)  # one name, not its letters
        self.excluded = frozenset(exclude)
        unknown = exclude - set(names.values())
        if unknown:
            raise ValueError(f"excluded modules not found in the model: {', '.join(sorted(unknown))}")
        example = torch.zeros(1, *spec.shape, device=self.device)
        with eval_mode(model):
            out_layers = output_layers(model, example)
            self.output_layer = names[out_layers[0]]
            try:
                # torch-pruning traces through autograd: a frozen model's parameters require grad while it does
                with warnings.catch_warnings(), torch.enable_grad(), requiring_grad(model, True), no_hooks_left(model):
                    warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
                    self.graph = tp.DependencyGraph().build_dependency(
                        model,
                        example_inputs=example,
                        forward_fn=traced_forward,
                        ignored_layers=element_wise_layers(model),
                    )
            except Exception as exc:
                raise UnsupportedModelError(f"torch-pruning could not trace the model: {_trace_failure(exc)}") from exc
            raw_groups = list(self.graph.get_all_groups(ignored_layers=out_layers, root_module_types=LAYER_TYPES))
            shapes = output_shapes(model, example)
        check_traced(self.graph, shapes, names)

        groups: list[ChannelGroup] = []
        self.roots: list[tuple[nn.Module, object]] = []  # per group: torch-pruning's root module and handler
        self._params: list[list[nn.Parameter]] = []  # per group: free parameters sliced along with it
        writes: dict[str, list[int]] = {}  # member -> the indices of the groups it carries
        reads: dict[str, list[tuple[int, int]]] = {}  # consumer -> (group index, input features it covers)
        for raw in raw_groups:
            root = raw[0].dep
            size = len(raw[0].idxs)
            full = self.graph.get_pruning_group(root.target.module, root.handler, list(range(size)))
            members, maps, consumers, unsupported, params = [], [], {}, [], []
            for item in full.items:
                dep, idxs = item.dep, _in_root_order(item)
                module = dep.target.module
                if isinstance(module, nn.Parameter) and "out_channels" in dep.handler.__name__:
                    params.append(module)  # e.g. ConvNeXt's layer scale: torch-pruning slices it with the group
                    continue
                if not isinstance(module, nn.Module) or module not in names:
                    continue  # element-wise ops and reshapes: no parameters, nothing to mask
                name = names[module]
                if "out_channels" in dep.handler.__name__:
                    if not isinstance(module, MASKABLE_TYPES):
                        unsupported.append(name)
                    elif name not in members:
                        members.append(name)
                        maps.append(idxs)
                elif name not in consumers:
                    consumers[name] = idxs  # its input channel of each group channel
            if any(m in exclude for m in members + unsupported) or not (members or unsupported):
                continue  # excluded: its channels stay whole; the other groups are unaffected
            if unsupported:
                kind = type(by_name[unsupported[0]]).__name__
                raise UnsupportedModelError(
                    f"module '{unsupported[0]}' ({kind}) carries prunable channels but is not a conv, linear, "
                    "batch-, layer-, group- or instance-norm or PReLU layer; "
                    f"exclude it (exclude=['{unsupported[0]}']) to keep them whole"
                )
            readers = [c for c in consumers if not isinstance(by_name[c], LAYER_TYPES)]
            if readers:  # torch-pruning would slice its inputs, but no cost term counts its MACs and parameters
                raise UnsupportedModelError(
                    f"module '{readers[0]}' ({type(by_name[readers[0]]).__name__}) reads the channels of group "
                    f"'{members[0]}' but is not a Conv1d, Conv2d, Conv3d or Linear layer, so the cost of pruning them "
                    f"cannot be counted; exclude '{members[0]}' to keep them whole"
                )
            modules = [by_name[m] for m in members]
            for name, module in zip(members, modules, strict=True):
                check_member(name, module)
            for member, cmap in zip(members, maps, strict=True):
                if len(cmap) != size:  # e.g. one branch of a concat that is then added to another tensor
                    raise UnsupportedModelError(
                        f"module '{member}' carries {len(cmap)} of the {size} channels of group '{members[0]}' "
                        f"(a concat joined by an add?), which is not supported; exclude '{members[0]}'"
                    )
            n_blocks = blocks(
                members[0],
                size,
                list(zip(members, modules, maps, strict=True)),
                [(c, by_name[c], cmap) for c, cmap in consumers.items()],
            )
            for member in members:
                writes.setdefault(member, []).append(len(groups))
            for consumer, cmap in consumers.items():  # the input features it covers in each consumer
                reads.setdefault(consumer, []).append((len(groups), len(cmap)))
            groups.append(
                ChannelGroup(
                    name=members[0],
                    size=size,
                    members=tuple(members),
                    channel_maps=tuple(maps),
                    consumers=tuple(consumers),
                    blocks=n_blocks,
                )
            )
            self._params.append(params)
            self.roots.append((root.target.module, root.handler))
        if not groups:
            raise UnsupportedModelError(
                "nothing left to prune: every channel group is excluded or feeds the model output"
            )
        self._layers = layers(
            names,
            shapes,
            writes,
            reads,
            [g.size for g in groups],
            [g.name for g in groups],
        )
        # grouped convs: name -> (index of the group it writes, of the group it reads), None where whole
        self.grouped_convs: dict[str, tuple[int | None, int | None]] = {
            layer.name: (layer.out_group, layer.in_group)
            for layer in self._layers
            if conv_kind(by_name[layer.name]) == "grouped"
        }
        self.channel_axes = {names[m]: channel_axis(m, shapes[m][1]) for m in shapes}
        self.groups: tuple[ChannelGroup, ...] = tuple(self._with_marginal_costs(groups))
        self._index = {g.name: i for i, g in enumerate(self.groups)}
        self.full_macs, self.full_params = self.cost({})
        if verify:
            with eval_mode(model):
                check_exact(self)

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
    def checked(self, candidate: Candidate) -> dict[str, list[int]]:
        """``candidate`` validated, its kept indices as Python ints (numpy or 0-d tensor indices hash by
        identity, so a set of them would match nothing)."""
        checked = {}
        for name, keep in candidate.items():
            g = self.group(name)
            try:
                keep = [operator.index(i) for i in keep]
            except TypeError:
                raise ValueError(f"kept indices of group {name!r} must be integers") from None
            if not keep:
                raise ValueError(f"group {name!r} would lose all its channels; keep at least one")
            if len(set(keep)) != len(keep) or min(keep) < 0 or max(keep) >= g.size:
                raise ValueError(f"kept indices of group {name!r} must be distinct and in [0, {g.size})")
            if g.blocks > 1:
                per_block = torch.bincount(torch.tensor(keep) // (g.size // g.blocks), minlength=g.blocks)
                if not bool((per_block == per_block[0]).all()):
                    raise ValueError(
                        f"group {name!r} is split into {g.blocks} blocks of {g.size // g.blocks} channels (by a "
                        "GroupNorm's or a grouped conv's groups): keep the same number of channels in each block"
                    )
            checked[name] = keep
        return checked

    def kept_counts(self, candidate: Candidate) -> list[int]:
        """Channels kept per group (in group order), validating the candidate."""
        counts = [g.size for g in self.groups]
        for name, keep in self.checked(candidate).items():
            counts[self.index_of(name)] = len(keep)
        return counts

    def cost(self, candidate: Candidate) -> tuple[int, int]:
        """(MACs, params) of the model pruned to ``candidate``; exact, no model is built."""
        return self.cost_of_counts(self.kept_counts(candidate))

    def cost_of_counts(self, counts: Sequence[int]) -> tuple[int, int]:
        """(MACs, params) for kept channel counts per group. A group split into blocks keeps what
        ``select.keep_top`` keeps: the count rounded down to a multiple of its blocks (at least one each)."""
        counts = [c if b == 1 else b * max(1, c // b) for c, b in zip(counts, self._blocks, strict=True)]
        macs = 0
        params = self._fixed_params + sum(c * n for c, n in zip(self._free_per_channel, counts, strict=True))
        for layer in self._layers:
            n_out = layer.out_count(counts)
            if layer.kind == "norm":
                params += layer.kernel * n_out  # affine parameters per channel (0, 1 or 2)
                continue
            fan_in = layer.kernel * (1 if layer.depthwise else layer.in_features(counts) // layer.groups)
            macs += layer.positions * (fan_in * n_out + (n_out if layer.bias else 0))
            params += fan_in * n_out + (n_out if layer.bias else 0)
        return macs, params

    def _with_marginal_costs(self, groups: list[ChannelGroup]) -> list[ChannelGroup]:
        self.groups = tuple(groups)
        self._blocks = [g.blocks for g in groups]
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
        base_macs = self.cost_of_counts(full)[0]
        out = []
        for i, g in enumerate(groups):
            counts = list(full)
            counts[i] -= g.blocks  # one channel from each block: the smallest step a blocked group can take
            per_channel = (base_macs - self.cost_of_counts(counts)[0]) // g.blocks
            out.append(dataclasses.replace(g, macs_per_channel=per_channel))
        return out
