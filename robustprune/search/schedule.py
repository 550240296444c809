"""Progressive schedule: the targets of the successive conservative steps."""

from __future__ import annotations

import math

from robustprune.targets import KINDS, Target


def default_steps(target: Target, per_step: float = 0.1) -> int:
    """Enough steps that no step removes more than ``per_step`` of the original cost."""
    return max(1, math.ceil((1.0 - target.deepest) / per_step - 1e-9))


def step_targets(target: Target, steps: int) -> list[Target]:
    """``steps`` targets from just below the original down to ``target``, evenly spaced in kept fraction."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    def at(final: float | None, k: int) -> float | None:
        return None if final is None else 1.0 - (1.0 - final) * k / steps

    return [target.scaled({kind: at(getattr(target, kind), k) for kind in KINDS}) for k in range(1, steps + 1)]
