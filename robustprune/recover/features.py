"""Where intermediate supervision looks: feature layers, the original channels each one kept, and capture hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from robustprune.structure.layers import LAYER_TYPES
from robustprune.structure.space import PruneSpace


class FeatureLayerError(ValueError):
    """Feature layers that cannot supervise the pruned model: not in both models, or outputs that do not meet."""


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def auto_feature_layers(model: nn.Module) -> list[str]:
    """Block outputs (DFBF): non-leaf modules with weights held in an ``nn.Sequential`` (residual / inverted blocks).

    A model without such blocks falls back to its BatchNorm layers, and one without BN to
    every conv / linear layer except the last (the logits are the KD term's job).
    """
    modules = dict(model.named_modules())
    blocks = []
    for name, module in modules.items():
        parent = modules.get(name.rpartition(".")[0]) if name else None
        if isinstance(parent, nn.Sequential) and list(module.children()) and _has_params(module):
            blocks.append(name)
    if blocks:
        return blocks
    norms = [n for n, m in modules.items() if isinstance(m, _BatchNorm)]
    if norms:
        return norms
    return [n for n, m in modules.items() if isinstance(m, LAYER_TYPES)][:-1]


def resolve_feature_layers(features: str | tuple[str, ...], student: nn.Module, teacher: nn.Module) -> list[str]:
    """The layer names to supervise; each must exist in both models (pruning keeps module names)."""
    if features == "none":
        return []
    names = auto_feature_layers(teacher) if features == "auto" else list(features)
    student_names = {n for n, _ in student.named_modules()}
    teacher_names = {n for n, _ in teacher.named_modules()}
    missing = [n for n in names if n not in student_names or n not in teacher_names]
    if missing:
        where = "the pruned and the original model"
        raise FeatureLayerError(f"feature layers not found in both {where}: {', '.join(missing)}")
    return names


def kept_channels(
    space: PruneSpace, candidate: Mapping[str, Sequence[int]], layers: Iterable[str]
) -> dict[str, list[int]]:
    """Per feature layer, the original output channels the pruned model kept (from the search's candidate).

    ``space`` is the original's prune space. A layer's output channels are those of the last
    conv / linear / BN inside it that carries a prunable channel group (for a residual block,
    its last BN, tied to the shortcut by the add).
    Layers whose channels no group carries keep them all and are left out of the result.
    """
    space.kept_counts(candidate)  # validates the candidate against this architecture
    carrier: dict[str, list[int]] = {}
    for group in space.groups:
        keep = list(candidate.get(group.name, range(group.size)))
        for member, channel_map in zip(group.members, group.channel_maps, strict=True):
            carrier[member] = sorted(channel_map[j] for j in keep)
    order = [n for n, _ in space.model.named_modules()]
    result = {}
    for layer in layers:
        inside = [n for n in order if n in carrier and (n == layer or n.startswith(layer + "."))]
        if inside:
            result[layer] = carrier[inside[-1]]
    return result


@contextlib.contextmanager
def captured(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that store each named layer's output (the last call's) in the yielded dict."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for name in layers:

        def hook(_module, _args, output, name=name):
            store[name] = output

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
