"""Inference cost of a model: operation/parameter counts and measured latency.

Counts are what a pruning result is judged by across machines (they do not
depend on hardware); latency is what a user feels but is only comparable
between runs on the same machine with the same thread settings.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch_pruning as tp
from torch import nn

from robustprune._modes import eval_mode, model_device
from robustprune.spec import InputSpec
from robustprune.structure.layers import LAYER_TYPES

__all__ = ["count_macs_params", "latency_ms"]


def count_macs_params(model: nn.Module, spec: InputSpec) -> tuple[int, int]:
    """(MACs, parameters) of one forward pass on a single input, per ``torch_pruning``'s op counter.

    Uses ``torch_pruning.utils.count_ops_and_params`` on a zero input of shape
    ``(1, *spec.shape)`` on the model's device, so the numbers match what
    torch-pruning reports for the same model. Its conventions (torch-pruning 1.6):
    a Linear/Conv counts one MAC per weight use *plus one op per output element
    for the bias*; BatchNorm, ReLU and pooling modules also count per-element ops;
    functional calls (``torch.add`` residuals, ``F.relu``) are not counted.
    Parameters are all ``nn.Parameter`` elements (frozen ones included, buffers
    such as BN running statistics excluded). The counter works on a deep copy, so
    ``model`` (its mode and hooks) is left untouched.
    """
    model = getattr(model, "cost_reference", model)  # an int8 model counts as the float model it quantizes
    device = model_device(model, None)
    example = torch.zeros(1, *spec.shape, device=device)
    counter = tp.utils.op_counter
    counter.CUSTOM_MODULES_MAPPING = _subclass_hooks(model, counter.MODULES_MAPPING)  # reset by the counter
    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(round(macs)), int(params)


def _subclass_hooks(model: nn.Module, known: dict) -> dict:
    """Counter hooks for subclasses of conv and linear layers (torchvision's video ``Conv3DSimple`` is an
    ``nn.Conv3d``): the counter looks layers up by exact type, so their MACs would otherwise go uncounted."""
    hooks = {}
    for module in model.modules():
        kind = type(module)
        if kind not in known:
            # only conv and linear subclasses: norms and activations stay counted by exact type, as always
            base = next((b for b in kind.__mro__[1:] if b in known and b in LAYER_TYPES), None)
            if base is not None:
                hooks[kind] = known[base]
    return hooks


def latency_ms(
    model: nn.Module,
    spec: InputSpec,
    batch_size: int,
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> float:
    """Median wall-clock milliseconds of one ``no_grad`` eval-mode forward pass on a batch of ``batch_size``.

    The median of ``repeats`` timed runs (after ``warmup`` untimed ones, which
    absorb allocator and kernel-selection start-up) resists outliers from other
    processes. The number depends on the machine and, on CPU, strongly on
    torch's intra-op thread count (``torch.get_num_threads()``, set by
    ``OMP_NUM_THREADS`` / ``torch.set_num_threads``): compare latencies only
    when measured under the same setting. On CUDA the device is synchronized
    around each run so that asynchronous kernel launches are timed in full.
    The model's train/eval flags are restored afterwards; it is not moved.
    """
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size >= 1, repeats >= 1, warmup >= 0; got {batch_size}, {repeats}, {warmup}")
    run_on = model_device(model, device)
    inputs = torch.zeros(batch_size, *spec.shape, device=run_on)

    def sync() -> None:
        if run_on.type == "cuda":
            torch.cuda.synchronize(run_on)

    times = []
    with eval_mode(model), torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(inputs)
            sync()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times.append(elapsed * 1000.0)
    return float(statistics.median(times))
