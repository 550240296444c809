"""From scores to candidates: which channels each group keeps.

``select_keep`` keeps the best-scoring channels for per-group removal fractions;
``uniform_candidate`` and ``global_candidate`` turn a cost target into a candidate
(the same fraction everywhere, or one ranking over all groups); ``removed_last``
makes the next candidate of a progressive search nested in the last one. The removal
rounding itself is ``targets.removed_count``, shared with the cost model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from robustprune.criteria import group_scores
from robustprune.criteria.base import check_criterion
from robustprune.structure.space import Candidate, PruneSpace
from robustprune.targets import (
    Target,
    fill_to_target,
    removed_count,
    smallest_feasible,
    uniform_amount_for,
    uniform_counts,
)

__all__ = ["global_candidate", "keep_top", "removed_last", "select_keep", "uniform_candidate"]


def select_keep(
    space: PruneSpace,
    amounts: Mapping[str, float],
    criterion: str = "l1",
    *,
    inputs: torch.Tensor | None = None,
    seed: int = 0,
    scores: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Kept channel indices (sorted) per group named in ``amounts``; other groups are omitted (kept whole).

    ``amounts[name]`` in [0, 1) is the fraction of the group's channels REMOVED:
    ``removed_count(size, amount)`` channels (floor, with a 1e-9 slack for float error, so
    0.3 of 10 removes 3; at least one channel is always kept). The highest-scoring channels
    are kept; ties go to the lower index. ``scores`` may hold precomputed scores (e.g.
    from ``all_scores``) for some or all groups; the rest are computed with ``criterion``.
    """
    check_criterion(criterion)
    for name, amount in amounts.items():
        space.group(name)  # KeyError for unknown groups
        try:
            ok = 0.0 <= float(amount) < 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"amount for group {name!r} must be in [0, 1), got {amount!r}")
    scores = dict(scores or {})
    scores.update(group_scores(space, [n for n in amounts if n not in scores], criterion, inputs=inputs, seed=seed))
    keep: dict[str, tuple[int, ...]] = {}
    for name, amount in amounts.items():
        size = space.group(name).size
        s = torch.as_tensor(scores[name]).detach().flatten().to("cpu", torch.float64)
        if s.numel() != size:
            raise ValueError(f"scores for group {name!r} have {s.numel()} entries, the group has {size} channels")
        s = torch.nan_to_num(s, nan=-math.inf)
        keep[name] = keep_top(s, size - removed_count(size, float(amount)), space.group(name).blocks)
    return keep


def keep_top(scores: torch.Tensor, count: int, blocks: int = 1) -> tuple[int, ...]:
    """Indices (sorted) of the ``count`` highest scores; ties go to the lower index. With ``blocks`` > 1
    (GroupNorm or grouped-conv blocks) the same number of best channels from each block, rounded down
    (at least one each)."""
    if blocks == 1:
        order = torch.argsort(scores, descending=True, stable=True)
        return tuple(sorted(int(i) for i in order[:count]))
    width = scores.numel() // blocks
    per_block = max(1, count // blocks)
    keep = []
    for b in range(blocks):
        order = torch.argsort(scores[b * width : (b + 1) * width], descending=True, stable=True)
        keep += [b * width + int(i) for i in order[:per_block]]
    return tuple(sorted(keep))


def removed_last(
    scores: Mapping[str, torch.Tensor], candidate: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """``scores`` with every channel the candidate removed set below all kept ones (-1; the
    criteria are >= 0), so ``select_keep`` with amounts at least as large as the
    candidate's removes those channels first: the next candidate is nested in this one."""
    out = {}
    for name, s in scores.items():
        s = torch.as_tensor(s).detach().flatten().to("cpu", torch.float64).clone()
        kept = candidate.get(name)
        if kept is not None:
            removed = torch.ones(len(s), dtype=torch.bool)
            removed[list(kept)] = False
            s[removed] = -1.0
        out[name] = s
    return out


def uniform_candidate(space: PruneSpace, target: Target, scores: Mapping[str, torch.Tensor]) -> Candidate:
    """The same removal fraction in every group (up to one channel), landing just under ``target``."""
    counts = fill_to_target(space, target, uniform_counts(space, uniform_amount_for(space, target), target.round_to))
    return {g.name: keep_top(scores[g.name], n, g.blocks) for g, n in zip(space.groups, counts, strict=True)}


def global_candidate(space: PruneSpace, target: Target, scores: Mapping[str, torch.Tensor]) -> Candidate:
    """Remove the globally least important channels (scores normalised per group) until ``target`` is met.

    A group split into blocks (``ChannelGroup.blocks``) loses one channel from each block at a time: the
    r-th least important of every block, ranked by their mean score."""
    entries = []
    for gi, grp in enumerate(space.groups):
        s = scores[grp.name].double()
        s = s / s.mean().clamp_min(1e-12)
        entries += [(float(s[list(unit)].mean()), gi, unit) for unit in _removal_units(s, grp.blocks)]
    entries.sort()
    sizes = [g.size for g in space.groups]
    # The removal order is fixed by the ranking: skip a unit only when its group would lose a whole block.
    order: list[tuple[int, tuple[int, ...]]] = []
    left = list(sizes)
    for _, gi, unit in entries:
        if left[gi] > len(unit):
            left[gi] -= len(unit)
            order.append((gi, unit))

    def counts_after(k: int) -> list[int]:
        counts = list(sizes)
        for gi, unit in order[:k]:
            counts[gi] -= len(unit)
        return counts

    k = smallest_feasible(0, len(order), lambda k: target.met(space, counts_after(k)))
    removed = {(gi, c) for gi, unit in order[:k] for c in unit}
    return {
        grp.name: tuple(c for c in range(grp.size) if (gi, c) not in removed) for gi, grp in enumerate(space.groups)
    }


def _removal_units(scores: torch.Tensor, blocks: int) -> list[tuple[int, ...]]:
    """The channels removed together: one each, or with blocks the r-th lowest-scoring channel of every block."""
    if blocks == 1:
        return [(c,) for c in range(scores.numel())]
    width = scores.numel() // blocks
    ranked = [
        [b * width + int(i) for i in torch.argsort(scores[b * width : (b + 1) * width], stable=True)]
        for b in range(blocks)
    ]
    return [tuple(ranked[b][r] for b in range(blocks)) for r in range(width)]
