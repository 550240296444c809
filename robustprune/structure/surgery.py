"""Physical channel removal: turn a candidate into a new, smaller module."""

from __future__ import annotations

import copy
import warnings

import torch
import torch_pruning as tp
from torch import nn

from robustprune.structure.space import Candidate, PruneSpace


def export(space: PruneSpace, candidate: Candidate, model: nn.Module | None = None) -> nn.Module:
    """A physically pruned copy of ``model`` (default: the space's model); the original is untouched.

    ``model`` may carry different weights than the space's model (e.g. after
    compensation) as long as it has the same architecture.
    """
    source = space.model if model is None else model
    pruned = copy.deepcopy(source).eval()
    example = torch.zeros(1, *space.spec.shape, device=space.device)
    with warnings.catch_warnings():  # free parameters (layer scales) are sliced with their group
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example)
    modules = dict(pruned.named_modules())
    original_names = {m: n for n, m in space.model.named_modules()}
    space.kept_counts(candidate)  # validates
    for group, (root_module, handler) in zip(space.groups, space.roots, strict=True):
        keep = set(candidate.get(group.name, range(group.size)))
        removed = [i for i in range(group.size) if i not in keep]
        if not removed:
            continue
        root = modules[original_names[root_module]]
        graph.get_pruning_group(root, getattr(graph.get_pruner_of_module(root), handler.__name__), removed).prune()
    return pruned
