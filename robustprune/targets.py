"""Turn a compression target into channel counts.

A target is the fraction of the original MACs (or parameters) the pruned model
may keep: ``Target(macs=0.5)`` means at most half the original MACs. Every
one-shot method here lands at or just below it: the search over counts is a
bisection on a monotone cost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
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


def removed_count(size: int, amount: float, round_to: int = 1) -> int:
    """Channels removed from a group of ``size`` for a removal fraction ``amount``; always keeps one.

    With ``round_to`` > 1 the kept count is rounded up to a multiple of it (at most the whole group),
    as torch-pruning's ``round_to`` does: fewer channels are removed, never more.
    """
    removed = min(size - 1, int(math.floor(amount * size + 1e-9)))
    if round_to > 1:
        removed = size - min(size, -(-(size - removed) // round_to) * round_to)
    return removed


def rounded_amount(size: int, amount: float, round_to: int) -> float:
    """The removal fraction that removes exactly ``removed_count(size, amount, round_to)`` channels."""
    return amount if round_to <= 1 else removed_count(size, amount, round_to) / size


def uniform_counts(space: PruneSpace, amount: float, round_to: int = 1) -> list[int]:
    return [g.size - removed_count(g.size, amount, round_to) for g in space.groups]


def smallest_feasible(lo: int, hi: int, feasible: Callable[[int], bool]) -> int:
    """Smallest k in [lo, hi] with feasible(k) true, for a feasibility that is monotone in k."""
    if not feasible(hi):
        raise UnreachableTargetError(
            "the target cannot be reached even when every group keeps a single channel; ask for a larger fraction"
        )
    while lo < hi:
        mid = (lo + hi) // 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def fill_to_target(space: PruneSpace, target: Target, counts: Sequence[int]) -> list[int]:
    """Give channels back, most-pruned group first, while ``target`` stays met.

    Uniform fractions move every group at once, so the cost falls in steps that can
    overshoot a target by several percent on small models; this lands just under it
    while keeping the allocation as even as possible. With ``target.round_to`` a group
    gets back a whole multiple at a time (or the rest of the group).
    """
    counts = list(counts)
    sizes = [g.size for g in space.groups]
    step = target.round_to
    progress = True
    while progress:
        progress = False
        order = sorted(range(len(counts)), key=lambda i: (counts[i] / sizes[i], i))
        for i in order:
            if counts[i] < sizes[i]:
                before = counts[i]
                counts[i] = min(sizes[i], (before // step + 1) * step)
                if target.met(space, counts):
                    progress = True
                    break
                counts[i] = before
    return counts


def uniform_amount_for(space: PruneSpace, target: Target, resolution: int = 10_000) -> float:
    """The smallest uniform removal fraction whose pruned model meets ``target``."""
    k = smallest_feasible(
        0, resolution - 1, lambda k: target.met(space, uniform_counts(space, k / resolution, target.round_to))
    )
    return k / resolution
