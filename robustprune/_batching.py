"""How many inputs a pass may take at once, so a 224x224 model does not need tens of GiB.

A backward pass holds every layer's activations for the whole chunk. The chunk is sized from one
image's activations (a forward pass at batch 1, remembered per model structure), never from the
free memory of the moment, so the same model and input shape are always cut the same way and a
seed still gives the same decisions (docs/defaults.md, "memory chunks").
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from robustprune._modes import eval_mode, model_device

#: Activation memory (bytes) one gradient chunk is sized to stay under.
GRAD_MEMORY_BYTES = 4 * 2**30
#: A backward pass keeps each layer's output and its gradient: about twice the forward activations.
_BACKWARD_FACTOR = 2
#: model -> {(shape, device, dtype, parameter shapes): bytes}: the search asks once per candidate, for the same model
_MEASURED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def activation_bytes(model: nn.Module, shape: tuple[int, ...], device: torch.device | str | None = None) -> int | None:
    """Bytes of every leaf module's output for one input of ``shape`` (normalized inputs of zeros); None where
    that cannot be measured: a module that takes no hooks (TorchScript) or one that cannot run a single input."""
    total = 0

    def count(_module: nn.Module, _inputs, output) -> None:
        nonlocal total
        for tensor in output if isinstance(output, tuple | list) else (output,):
            if torch.is_tensor(tensor):
                total += tensor.numel() * tensor.element_size()

    if isinstance(model, torch.jit.ScriptModule):
        return None
    run_on = model_device(model, device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    # the parameter shapes change when a model is pruned in place, and so does what it holds per image
    key = (tuple(shape), run_on, dtype, tuple(p.shape for p in model.parameters()))
    known = _MEASURED.setdefault(model, {})
    if key in known:
        return known[key]
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(1, *shape, device=run_on, dtype=dtype))
    except Exception:  # a fixed batch size, say: the chunk is then not cut; the real pass reports real errors
        total = None
    finally:
        for handle in handles:
            handle.remove()
    known[key] = total
    return total


def _batch_size(per_input: int | None, factor: int, largest: int) -> int:
    if per_input is None:  # not measurable: the caller's own chunk
        return largest
    return max(1, min(largest, GRAD_MEMORY_BYTES // (factor * max(per_input, 1))))


def grad_batch_size(
    model: nn.Module, shape: tuple[int, ...], largest: int, device: torch.device | str | None = None
) -> int:
    """The number of inputs per gradient pass: ``largest``, or fewer where one image's activations times
    the backward factor would exceed :data:`GRAD_MEMORY_BYTES` (at least 1)."""
    return _batch_size(activation_bytes(model, shape, device), _BACKWARD_FACTOR, largest)


def forward_batch_size(
    model: nn.Module, shape: tuple[int, ...], largest: int, device: torch.device | str | None = None
) -> int:
    """The number of inputs per forward pass without gradients: ``largest``, or fewer where one image's
    activations (all of them, an upper bound on what is alive at once) would exceed :data:`GRAD_MEMORY_BYTES`."""
    return _batch_size(activation_bytes(model, shape, device), 1, largest)
