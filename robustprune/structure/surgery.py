"""Physical channel removal: turn a candidate into a new, smaller module."""

from __future__ import annotations

import copy
import warnings

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

from robustprune._modes import requiring_grad
from robustprune.structure.layers import element_wise_layers, traced_forward
from robustprune.structure.space import Candidate, PruneSpace


def export(space: PruneSpace, candidate: Candidate, model: nn.Module | None = None) -> nn.Module:
    """A physically pruned copy of ``model`` (default: the space's model); the original is untouched.

    ``model`` may carry different weights than the space's model (e.g. after
    compensation) as long as it has the same architecture.
    """
    source = space.model if model is None else model
    pruned = copy.deepcopy(source).eval()
    example = torch.zeros(1, *space.spec.shape, device=space.device)
    # torch-pruning traces through autograd, even under no_grad and for a frozen model (its flags are kept)
    with warnings.catch_warnings(), torch.enable_grad(), requiring_grad(pruned, True):
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")  # layer scales: sliced too
        graph = tp.DependencyGraph().build_dependency(
            pruned, example_inputs=example, forward_fn=traced_forward, ignored_layers=element_wise_layers(pruned)
        )
    modules = dict(pruned.named_modules())
    original_names = {m: n for n, m in space.model.named_modules()}
    candidate = space.checked(candidate)
    grouped = {name: modules[name].weight.detach().clone() for name in space.grouped_convs}
    dropped: dict[str, set[int]] = {}  # instance norm with running statistics -> its removed channels
    for group, (root_module, handler) in zip(space.groups, space.roots, strict=True):
        keep = set(candidate.get(group.name, range(group.size)))
        removed = [i for i in range(group.size) if i not in keep]
        if not removed:
            continue
        for member, cmap in zip(group.members, group.channel_maps, strict=True):
            if isinstance(modules[member], _InstanceNorm) and modules[member].running_mean is not None:
                dropped.setdefault(member, set()).update(cmap[i] for i in removed)
        root = modules[original_names[root_module]]
        graph.get_pruning_group(root, getattr(graph.get_pruner_of_module(root), handler.__name__), removed).prune()
    for name, weight in grouped.items():  # torch-pruning slices a grouped conv's inputs as if every block were alike
        out_group, in_group = space.grouped_convs[name]
        kept_out = _kept(space, candidate, out_group) if out_group is not None else list(range(weight.shape[0]))
        kept_in = _kept(space, candidate, in_group) if in_group is not None else None
        conv = modules[name]
        new = _grouped_weight(weight, conv.groups, kept_out, kept_in)
        if new.shape != conv.weight.shape:
            raise AssertionError(f"grouped conv '{name}': {tuple(new.shape)} != {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(new)
    for name, channels in dropped.items():  # torch-pruning slices an instance norm's affine map, not its statistics
        norm = modules[name]
        kept = [c for c in range(norm.running_mean.shape[0]) if c not in channels]
        norm.running_mean, norm.running_var = norm.running_mean[kept], norm.running_var[kept]
    flags = {name: p.requires_grad for name, p in source.named_parameters()}
    for name, p in pruned.named_parameters():  # torch-pruning's sliced parameters require grad: the source's flags
        p.requires_grad_(flags.get(name, True))
    return pruned


def _kept(space: PruneSpace, candidate: Candidate, index: int) -> list[int]:
    """Kept channels (sorted) of group ``index``."""
    group = space.groups[index]
    return sorted(int(i) for i in candidate.get(group.name, range(group.size)))


def _grouped_weight(weight: torch.Tensor, groups: int, kept_out: list[int], kept_in: list[int] | None) -> torch.Tensor:
    """A grouped conv's weight (out, in / groups, *k) for the kept output and input channels: output
    channel o (block b = o // (out / groups)) keeps its columns for the kept inputs of block b."""
    per_out, per_in = weight.shape[0] // groups, weight.shape[1]
    rows = weight[kept_out]
    if kept_in is None:
        return rows
    local = torch.tensor(kept_in).view(groups, -1) % per_in  # (groups, kept per block), equal counts per block
    index = local[torch.tensor(kept_out) // per_out]  # (kept out, kept in per block)
    index = index.view(*index.shape, *([1] * (weight.dim() - 2))).expand(-1, -1, *weight.shape[2:])
    return torch.gather(rows, 1, index.to(rows.device))
