"""Turn a compression target into channel counts.

A target is the fraction of the original MACs (or parameters) the pruned model
may keep: ``Target(macs=0.5)`` means at most half the original MACs. Every
one-shot method here lands at or just below it: the search over counts is a
bisection on a monotone cost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from robustprune.structure.space import PruneSpace


class UnreachableTargetError(ValueError):
    """The model cannot be pruned that far: even one channel per group costs more than the target."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Fractions of the original MACs and/or parameters to keep, each in (0, 1)."""

    macs: float | None = None
    params: float | None = None

    def __post_init__(self) -> None:
        if self.macs is None and self.params is None:
            raise ValueError("give a target: the fraction of MACs and/or params to keep, e.g. macs=0.5")
        for name in ("macs", "params"):
            value = getattr(self, name)
            if value is not None and not (0.0 < value < 1.0):
                raise ValueError(f"target {name} must be a fraction in (0, 1) of the original to keep, got {value}")

    @property
    def deepest(self) -> float:
        """The smallest kept fraction asked for (the binding one when both are given)."""
        return min(v for v in (self.macs, self.params) if v is not None)

    def met(self, space: PruneSpace, counts: Sequence[int], slack: float = 0.0) -> bool:
        macs, params = space.cost_of_counts(counts)
        ok = True
        if self.macs is not None:
            ok &= macs <= (self.macs + slack) * space.full_macs
        if self.params is not None:
            ok &= params <= (self.params + slack) * space.full_params
        return ok

    def describe(self) -> str:
        parts = [f"{name} <= {100 * v:.1f}%" for name, v in (("MACs", self.macs), ("params", self.params)) if v]
        return " and ".join(parts)


def removed_count(size: int, amount: float) -> int:
    """Channels removed from a group of ``size`` for a removal fraction ``amount``; always keeps one."""
    return min(size - 1, int(math.floor(amount * size + 1e-9)))


def uniform_counts(space: PruneSpace, amount: float) -> list[int]:
    return [g.size - removed_count(g.size, amount) for g in space.groups]


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
    while keeping the allocation as even as possible.
    """
    counts = list(counts)
    sizes = [g.size for g in space.groups]
    progress = True
    while progress:
        progress = False
        order = sorted(range(len(counts)), key=lambda i: (counts[i] / sizes[i], i))
        for i in order:
            if counts[i] < sizes[i]:
                counts[i] += 1
                if target.met(space, counts):
                    progress = True
                    break
                counts[i] -= 1
    return counts


def uniform_amount_for(space: PruneSpace, target: Target, resolution: int = 10_000) -> float:
    """The smallest uniform removal fraction whose pruned model meets ``target``."""
    k = smallest_feasible(0, resolution - 1, lambda k: target.met(space, uniform_counts(space, k / resolution)))
    return k / resolution
