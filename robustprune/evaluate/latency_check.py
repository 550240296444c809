"""Whether a latency table's prediction holds: the pruned model timed directly against the original."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from robustprune.evaluate.lut import build_latency_model
from robustprune.evaluate.speed import compile_for, interleaved_latency, torch_threads
from robustprune.structure.space import PruneSpace

__all__ = ["check_latency_model", "timed_fraction"]


def timed_fraction(
    original: nn.Module, pruned: nn.Module, spec, batch: int, threads: int | None, runs: int = 50
) -> dict:
    """The pruned model's latency over the original's, timed interleaved (eager fp32, medians of ``runs``)."""
    with torch_threads(threads):
        stats = interleaved_latency(
            {"original": compile_for(original, spec, batch), "pruned": compile_for(pruned, spec, batch)}, runs=runs
        )
    return {
        "original_ms": stats["original"].to_dict(),
        "pruned_ms": stats["pruned"].to_dict(),
        "measured_fraction": stats["pruned"].median_ms / stats["original"].median_ms,
    }


def check_latency_model(
    original: nn.Module,
    space: PruneSpace,
    candidate,
    pruned: nn.Module,
    config,
    cache_dir: str | Path | None = None,
    runs: int = 50,
) -> dict:
    """The table's predicted latency fraction for ``candidate`` against the pruned model timed directly,
    interleaved with the original (``config``: the search's ``latency_batch`` and ``latency_threads``)."""
    batch, threads = config.latency_batch, config.latency_threads
    table = build_latency_model(space, batch, threads, cache_dir=cache_dir)
    timed = timed_fraction(original, pruned, space.spec, batch, threads, runs)
    predicted = table.fraction(space.kept_counts(candidate))
    return {
        "batch_size": batch,
        "threads": table.meta.get("threads"),
        "runs": runs,
        **timed,
        "predicted_fraction": predicted,
        "relative_error": predicted / timed["measured_fraction"] - 1.0,
        "target": getattr(config, "target_latency", None),
    }
