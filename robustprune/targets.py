"""A compression target: the fractions of the original cost a pruned model may keep.

A target is the fraction of the original MACs (or parameters, or predicted latency) the
pruned model may keep: ``Target(macs=0.5)`` means at most half the original MACs. Turning
it into channel counts (removal rounding, the uniform fraction, fill-to-target) is
``robustprune.select``'s job.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Protocol

from robustprune.structure.space import PruneSpace


class UnreachableTargetError(ValueError):
    """The model cannot be pruned that far: even one channel per group costs more than the target."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Fractions of the original MACs and/or parameters to keep, each in (0, 1)."""

    macs: float | None = None
    params: float | None = None
    # fraction of the original's latency, as predicted by ``latency_model`` (robustprune.evaluate.lut)
    latency: float | None = None
    # kept channels per group are a multiple of this (or the whole group): hardware-friendly widths
    round_to: int = 1
    latency_model: LatencyPredictor | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.macs is None and self.params is None and self.latency is None:
            raise ValueError("give a target: the fraction of MACs, params and/or latency to keep, e.g. macs=0.5")
        for name in KINDS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                raise ValueError(f"target {name} must be a number, got {type(value).__name__} {value!r}")
            if value is not None and not (0.0 < value < 1.0):
                raise ValueError(f"target {name} must be a fraction in (0, 1) of the original to keep, got {value}")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise ValueError(f"round_to must be an integer >= 1, got {self.round_to!r}")

    @property
    def deepest(self) -> float:
        """The smallest kept fraction asked for (the binding one when several are given)."""
        return min(getattr(self, name) for name in KINDS if getattr(self, name) is not None)

    def _latency_fraction(self, counts: Sequence[int]) -> float:
        if self.latency_model is None:
            raise ValueError("a latency target needs a latency model (robustprune.evaluate.lut.build_latency_model)")
        return self.latency_model.fraction(counts)

    def excess(self, space: PruneSpace, counts: Sequence[int]) -> float:
        """How far past the target ``counts`` land, as a fraction of the original: <= 0 is met."""
        return max(value - goal for value, goal in self._pairs(space, counts))

    def _pairs(self, space: PruneSpace, counts: Sequence[int]) -> list[tuple[float, float]]:
        pairs = []
        if self.macs is not None or self.params is not None:
            macs, params = space.cost_of_counts(counts)
            if self.macs is not None:
                pairs.append((macs / space.full_macs, self.macs))
            if self.params is not None:
                pairs.append((params / space.full_params, self.params))
        if self.latency is not None:
            pairs.append((self._latency_fraction(counts), self.latency))
        return pairs

    def met(self, space: PruneSpace, counts: Sequence[int], slack: float = 0.0) -> bool:
        return all(value <= goal + slack for value, goal in self._pairs(space, counts))

    def describe(self) -> str:
        names = (("MACs", self.macs), ("params", self.params), ("latency", self.latency))
        parts = [f"{name} <= {100 * v:.1f}%" for name, v in names if v]
        return " and ".join(parts) + (f" (widths in multiples of {self.round_to})" if self.round_to > 1 else "")

    def to_dict(self) -> dict:
        """The fractions (and ``round_to`` when it is set), JSON-ready."""
        out: dict = {"macs": self.macs, "params": self.params}
        if self.latency is not None:
            out["latency"] = self.latency
        if self.round_to > 1:
            out["round_to"] = self.round_to
        return out

    def scaled(self, fractions: Mapping[str, float | None]) -> Target:
        """This target with other fractions (same ``round_to`` and latency model): a step of the schedule."""
        return dataclasses.replace(self, **{k: fractions.get(k) for k in KINDS})


#: The kinds of cost a target can bound.
KINDS = ("macs", "params", "latency")


class LatencyPredictor(Protocol):
    """Predicts a candidate's latency (from kept channel counts per group) as a fraction of the original's."""

    def fraction(self, counts: Sequence[int]) -> float: ...
