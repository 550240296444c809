"""torch-pruning's weight-magnitude criteria (l1, l2, bn_scale, fpgm) on one channel group."""

from __future__ import annotations

import torch
import torch_pruning as tp

from robustprune.structure.analysis import pruning_group
from robustprune.structure.space import PruneSpace

MAGNITUDE_CRITERIA = ("l1", "l2", "bn_scale", "fpgm")


def tp_importance(criterion: str):
    """torch-pruning's importance object for ``criterion``, unnormalised (``tp_scores`` normalises)."""
    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1, normalizer=None)
    if criterion == "l2":
        return tp.importance.MagnitudeImportance(p=2, normalizer=None)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    if criterion == "fpgm":
        return tp.importance.FPGMImportance(normalizer=None)
    raise AssertionError(criterion)


def tp_scores(space: PruneSpace, index: int, criterion: str) -> tuple[torch.Tensor | None, str]:
    """torch-pruning's score, normalised by the group mean as its default ``normalizer="mean"`` does,
    or (None, why it could not score the group).

    The normalisation is done here so that an all-zero group gives zeros, not 0/0 = NaN.
    """
    group = space.groups[index]
    full = None
    try:
        full = pruning_group(space, index)
        scores = tp_importance(criterion)(full)
    except Exception as exc:  # noqa: BLE001 - a criterion that does not apply falls back to l1 (with a warning)
        why = f"{type(exc).__name__}: {exc}"
        without = _without_grouped_inputs(full) if full is not None else None
        if without is None:
            return None, why
        try:  # torch-pruning cannot slice a grouped conv's inputs (a depthwise conv with a channel multiplier)
            scores = tp_importance(criterion)(without)
        except Exception:  # noqa: BLE001 - report the first failure, the one on the whole group
            return None, why
    if scores is None:
        return None, "it has no BatchNorm" if criterion == "bn_scale" else "torch-pruning returned no scores"
    if scores.numel() != group.size:
        return None, f"torch-pruning returned {scores.numel()} scores for {group.size} channels"
    scores = scores.detach().to("cpu", torch.float32)
    if not torch.isfinite(scores).all():
        return None, "the scores are not finite"
    mean = scores.mean()
    return (scores / mean if mean > 0 else scores), ""


def _without_grouped_inputs(group):
    """torch-pruning's ``group`` without the grouped convs that read it (scored by their producers alone),
    or None where it has none."""
    items = [
        item
        for item in group.items
        if not (item.dep.pruning_fn == tp.pruner.function.prune_conv_in_channels and item.dep.layer.groups > 1)
    ]
    if len(items) == len(group.items) or not items:
        return None
    without = tp.dependency.Group()
    without._group, without._DG = items, group._DG  # the same items: their root_idxs come with them
    return without
