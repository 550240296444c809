"""From scores to candidates: which channels each group keeps.

``select_keep`` keeps the best-scoring channels for per-group removal fractions;
``uniform_candidate`` and ``global_candidate`` turn a cost target into a candidate
(the same fraction everywhere, or one ranking over all groups); ``removed_last``
makes the next candidate of a progressive search nested in the last one.

The removal rounding (``removed_count``: floor, at least one channel kept, ``round_to``
multiples) is the one rule the search steps, the objective, the uniform and global
candidates and the cost checks share; ``uniform_amount_for`` and ``fill_to_target``
land a uniform candidate just under a ``Target``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from robustprune.criteria import group_scores
from robustprune.criteria.base import check_criterion
from robustprune.structure.space import Candidate, PruneSpace
from robustprune.targets import Target, UnreachableTargetError

__all__ = [
    "fill_to_target",
    "global_candidate",
    "keep_top",
    "removed_count",
    "removed_last",
    "rounded_amount",
    "select_keep",
    "smallest_feasible",
    "uniform_amount_for",
    "uniform_candidate",
    "uniform_counts",
]


# -- removal rounding: one rule for the search, the baselines and the cost model --------------------------
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


# -- candidates --------------------------------------------------------------------------------------------
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
