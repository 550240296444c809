"""How many inputs a pass may take at once, so a 224x224 model does not need tens of GiB.

A backward pass holds every layer's activations for the whole chunk: resnet50 at 224x224 holds
about 150 MB per image, so the 250-image chunks that suit a 28x28 model would need about 37 GiB.
The chunk is sized from one image's activations (a forward pass at batch 1), never from the free
memory of the moment, so the same model and input shape are always cut the same way and a seed
still gives the same decisions (docs/defaults.md, "gradient chunks").
"""

from __future__ import annotations

import torch
from torch import nn

from robustprune._modes import eval_mode, model_device

#: Activation memory (bytes) one gradient chunk is sized to stay under.
GRAD_MEMORY_BYTES = 4 * 2**30
#: A backward pass keeps each layer's output and its gradient: about twice the forward activations.
_BACKWARD_FACTOR = 2


def activation_bytes(model: nn.Module, shape: tuple[int, ...], device: torch.device | str | None = None) -> int:
    """Bytes of every leaf module's output for one input of ``shape`` (normalized inputs of zeros)."""
    total = 0

    def count(_module: nn.Module, _inputs, output) -> None:
        nonlocal total
        for tensor in output if isinstance(output, tuple | list) else (output,):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *shape, device=model_device(model, device), dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    return total


def grad_batch_size(
    model: nn.Module, shape: tuple[int, ...], largest: int, device: torch.device | str | None = None
) -> int:
    """The number of inputs per gradient pass: ``largest``, or fewer where one image's activations times
    the backward factor would exceed :data:`GRAD_MEMORY_BYTES` (at least 1)."""
    per_input = _BACKWARD_FACTOR * max(activation_bytes(model, shape, device), 1)
    return max(1, min(largest, GRAD_MEMORY_BYTES // per_input))


def forward_batch_size(
    model: nn.Module, shape: tuple[int, ...], largest: int, device: torch.device | str | None = None
) -> int:
    """The number of inputs per forward pass without gradients: ``largest``, or fewer where one image's
    activations (all of them, an upper bound on what is alive at once) would exceed :data:`GRAD_MEMORY_BYTES`."""
    per_input = max(activation_bytes(model, shape, device), 1)
    return max(1, min(largest, GRAD_MEMORY_BYTES // per_input))
