"""Channel importance inside a coupled group: which channels a candidate should drop.

Every criterion gives one score per group channel, HIGHER = MORE important (kept
first). Scores are comparable within a group only; a search decides how many
channels each group loses and ``robustprune.select.select_keep`` picks which.

Criteria (``CRITERIA``):

``l1``, ``l2``
    torch-pruning's ``MagnitudeImportance(p=1 | 2)`` with its defaults: the p-th
    power of the weight magnitudes of the channel in every coupled layer (producer
    rows, consumer input slices, BatchNorm scales), averaged over the layers
    (``group_reduction="mean"``) and divided by the group mean (``normalizer="mean"``).
``bn_scale``
    torch-pruning's ``BNScaleImportance``: mean |gamma| over the group's BatchNorms
    (network slimming). Groups without a BatchNorm fall back to ``l1``.
``fpgm``
    torch-pruning's ``FPGMImportance`` (geometric median): channels close to all
    others are redundant. Note that torch-pruning measures the distances between
    the element-wise *magnitudes* |w|^2 of the rows, not the signed rows.
``random``
    Uniform scores from a ``torch.Generator`` seeded by ``(seed, group index)``:
    reproducible across runs and processes, different for different seeds.
``merge_saliency``
    Data-free pairwise saliency of Srinivas & Babu (2015), as used by Paoding
    (``criteria.saliency``). Lower = cheaper to remove given its best partner.
``taylor_synthetic``
    First-order Taylor estimate of the loss change when the channel is zeroed,
    on caller-supplied NORMALIZED model inputs with the model's own predictions as
    labels (``criteria.taylor``).
``taylor_l1``
    The sum of each channel's within-group rank under ``taylor_synthetic`` and under
    ``l1`` (ranks scaled to [0, 1]): a channel goes first when both call it
    unimportant (why it is the default: docs/defaults.md). Needs ``inputs``.

If a torch-pruning importance returns None or raises for a group (e.g. ``bn_scale``
on a group without BatchNorm), the group falls back to ``l1`` with a warning that names
the criterion, the group and the reason; if ``l1`` fails too, a RuntimeError says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from robustprune.criteria.base import CRITERIA, NEEDS_INPUTS, check_criterion, random_scores, rank_sum
from robustprune.criteria.magnitude import tp_scores
from robustprune.criteria.saliency import merge_saliency
from robustprune.criteria.taylor import taylor_for_groups, taylor_scores
from robustprune.structure.space import PruneSpace

__all__ = ["CRITERIA", "NEEDS_INPUTS", "all_scores", "channel_scores", "group_scores", "rank_sum", "taylor_scores"]


def channel_scores(
    space: PruneSpace, group_name: str, criterion: str, *, inputs: torch.Tensor | None = None, seed: int = 0
) -> torch.Tensor:
    """Importance of each channel of group ``group_name``: float tensor of shape (group.size,), on the CPU.

    HIGHER = MORE important. ``inputs`` (NORMALIZED model inputs, shape (N, *spec.shape))
    is required by ``taylor_synthetic`` and ignored by the data-free criteria. The
    model is never changed (weights, buffers, ``.grad`` and train/eval mode).
    """
    check_criterion(criterion)
    index = space.index_of(group_name)
    if criterion in NEEDS_INPUTS:
        return _input_scores(space, inputs, [index], criterion)[group_name]
    return _data_free_scores(space, index, criterion, seed)


def all_scores(
    space: PruneSpace, criterion: str, *, inputs: torch.Tensor | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``channel_scores`` for every group, keyed by group name (one pass over ``inputs`` for Taylor)."""
    check_criterion(criterion)
    if criterion in NEEDS_INPUTS:
        return _input_scores(space, inputs, list(range(len(space.groups))), criterion)
    return {g.name: _data_free_scores(space, i, criterion, seed, stacklevel=4) for i, g in enumerate(space.groups)}


def group_scores(
    space: PruneSpace, names: Sequence[str], criterion: str, *, inputs: torch.Tensor | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``channel_scores`` for the groups ``names`` (one pass over ``inputs`` for the criteria that need them)."""
    check_criterion(criterion)
    if criterion in NEEDS_INPUTS:
        return _input_scores(space, inputs, [space.index_of(n) for n in names], criterion) if names else {}
    return {n: _data_free_scores(space, space.index_of(n), criterion, seed, stacklevel=4) for n in names}


def _input_scores(space: PruneSpace, inputs, indices: list[int], criterion: str) -> dict[str, torch.Tensor]:
    taylor = taylor_for_groups(space, inputs, indices)
    if criterion == "taylor_synthetic":
        return taylor
    l1 = {name: _data_free_scores(space, space.index_of(name), "l1", 0) for name in taylor}
    return rank_sum(taylor, l1)


def _data_free_scores(space: PruneSpace, index: int, criterion: str, seed: int, stacklevel: int = 3) -> torch.Tensor:
    group = space.groups[index]
    if criterion == "random":
        return random_scores(group.size, seed, index)
    if criterion == "merge_saliency":
        return merge_saliency(space, index)
    scores, why = tp_scores(space, index, criterion)
    if scores is None and criterion != "l1":
        message = f"importance {criterion!r} cannot score group {group.name!r} ({why}); using 'l1' for it"
        warnings.warn(message, stacklevel=stacklevel)  # points at the caller of the public function
        scores, why = tp_scores(space, index, "l1")
    if scores is None:
        raise RuntimeError(f"torch-pruning could not score group {group.name!r} with l1: {why}")
    return scores
