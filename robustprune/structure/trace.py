"""What one forward pass tells the prune space: the output layers, each maskable module's shapes,
and whether torch-pruning's trace saw every layer that runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch_pruning as tp
from torch import nn

from robustprune.structure.layers import LAYER_TYPES, UnsupportedModelError, carries_channels


@contextlib.contextmanager
def no_hooks_left(model: nn.Module) -> Iterator[None]:
    """Remove every forward hook added to ``model`` within the context: torch-pruning leaves its tracing
    hooks on the model when the model raises during the trace."""
    before = {m: set(m._forward_hooks) for m in model.modules()}
    try:
        yield
    finally:
        for m, keys in before.items():
            for key in set(m._forward_hooks) - keys:
                del m._forward_hooks[key]


def check_traced(graph: tp.DependencyGraph, shapes: Mapping, names: Mapping) -> None:
    """Refuse a model whose conv/linear layers run but are missing from the traced graph: their
    channels would be invisible to the prune space (torch-pruning traces through autograd)."""
    for module in shapes:
        if isinstance(module, LAYER_TYPES) and module not in graph.module2node:
            raise UnsupportedModelError(
                f"torch-pruning could not trace the model: layer '{names[module]}' runs but its output does not "
                "reach the model output through autograd (.detach(), .item(), .tolist(), numpy or torch.no_grad() "
                "cut the trace)"
            )


def output_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Layers whose output is the model's output: their channels are the classes and are never pruned."""
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}  # the tensor kept alive: its id stays unique
    handles = [
        m.register_forward_hook(lambda mod, _i, out: produced.__setitem__(id(out), (mod, out)))
        for m in model.modules()
        if isinstance(m, LAYER_TYPES)
    ]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    last = [m for m in model.modules() if isinstance(m, LAYER_TYPES)]
    if id(out) in produced:
        return [produced[id(out)][0]]
    return last[-1:]  # a reshape/pool follows the last layer: protect the last layer in call order


def output_shapes(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of every maskable module, in call order; each may run once."""
    shapes: dict[nn.Module, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(mod, inputs, out):
        if mod in shapes:
            raise UnsupportedModelError(
                f"layer '{names[mod]}' ({type(mod).__name__}) is called more than once per forward pass; its "
                "channels cannot be pruned for one call alone: give each call a module of its own"
            )
        shapes[mod] = (tuple(inputs[0].shape), tuple(out.shape))

    handles = [m.register_forward_hook(hook) for m in model.modules() if carries_channels(m)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes
