"""What a pruning method returns: one interface for the search's ``SearchResult`` and a baseline's ``PruneResult``.

Both hold ``model`` (the physically pruned model, a new object) and ``candidate`` (the kept channels per
group), and offer ``kept_fraction`` (of the original MACs and params), ``save(directory)`` (a run folder
that ``load_pruned`` reads) and ``report()`` (a JSON-ready account of how the model was obtained; the
real-data evaluation is ``robustprune.evaluate``'s).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import NamedTuple

from torch import nn


class Cost(NamedTuple):
    """MACs and parameters of the pruned model and of the original."""

    macs: int
    params: int
    original_macs: int
    original_params: int


class PruningResult(abc.ABC):
    """The interface ``SearchResult`` and ``PruneResult`` share (subclasses are dataclasses with
    ``model``, ``candidate`` and ``method``)."""

    model: nn.Module
    candidate: dict[str, tuple[int, ...]]
    method: str

    @abc.abstractmethod
    def cost(self) -> Cost:
        """The pruned model's MACs and params, and the original's."""

    @abc.abstractmethod
    def save(self, directory: str | Path, model_ref: str | None = None) -> list[Path]:
        """Write the run folder (pruned.pt, spec.json and the method's own records); returns the files written."""

    @abc.abstractmethod
    def details(self) -> dict:
        """What only this method records (target, timings, ...), JSON-ready: the rest of ``report()``."""

    @property
    def kept_fraction(self) -> dict[str, float]:
        """Fractions of the original MACs and params the pruned model keeps."""
        cost = self.cost()
        return {"macs": cost.macs / cost.original_macs, "params": cost.params / cost.original_params}

    def report(self) -> dict:
        """How the model was obtained, JSON-ready: method, kept channels per group, cost, kept fractions, details."""
        return {
            "method": self.method,
            "kept_channels": {name: len(keep) for name, keep in self.candidate.items()},
            **self.cost()._asdict(),
            "kept_fraction": self.kept_fraction,
            **self.details(),
        }
