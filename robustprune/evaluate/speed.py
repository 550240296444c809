"""Delivered speed: interleaved latency comparisons of models under one deployment setting.

Timing two models one after the other lets a slow phase of the machine (another
process, frequency scaling) land on one of them. Here every round times each model
once, in an order that alternates between rounds (A B, B A, ...), and the median and
interquartile range over rounds are reported, so both models see the same conditions.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from robustprune.spec import InputSpec

__all__ = ["BACKENDS", "LatencyStats", "compile_for", "interleaved_latency", "torch_threads"]

#: How a model is run: plain eager, eager on channels-last memory, TorchScript traced + frozen, torch.compile.
BACKENDS: tuple[str, ...] = ("eager", "channels_last", "torchscript", "compile")


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Median and quartiles, in milliseconds, of ``runs`` timed forward passes."""

    median_ms: float
    q1_ms: float
    q3_ms: float
    runs: int

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "iqr_ms": self.iqr_ms}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave torch's setting) and restore it afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def compile_for(model: nn.Module, spec: InputSpec, batch_size: int, backend: str = "eager") -> Callable[[], object]:
    """A zero-argument callable running one ``no_grad`` forward pass of a private copy of ``model`` on a fixed batch.

    The user's model is not changed: conversions (channels-last, tracing, compiling) work on a deep copy.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    work = _private_eval_copy(model)
    device = next((t.device for t in work.parameters()), torch.device("cpu"))
    inputs = torch.zeros(batch_size, *spec.shape, device=device)
    if backend == "channels_last" and inputs.dim() == 4:
        work = work.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        if backend == "torchscript":
            work = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(work, inputs)))
        elif backend == "compile":
            work = torch.compile(work)

    def run() -> object:
        with torch.no_grad():
            out = work(inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return run


def _private_eval_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval()


def interleaved_latency(
    runners: Mapping[str, Callable[[], object]], runs: int = 50, warmup: int = 5
) -> dict[str, LatencyStats]:
    """Time each runner once per round for ``runs`` rounds, alternating the order, after ``warmup`` untimed rounds."""
    if not runners:
        raise ValueError("give at least one runner")
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got {runs}, {warmup}")
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + runs):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            start = time.perf_counter()
            runners[name]()
            elapsed = (time.perf_counter() - start) * 1000.0
            if round_index >= warmup:
                times[name].append(elapsed)
    return {name: _stats(values) for name, values in times.items()}


def _stats(values: list[float]) -> LatencyStats:
    q1, median, q3 = np.percentile(np.asarray(values), [25, 50, 75])
    return LatencyStats(median_ms=float(median), q1_ms=float(q1), q3_ms=float(q3), runs=len(values))
