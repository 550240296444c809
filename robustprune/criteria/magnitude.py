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
    try:
        scores = tp_importance(criterion)(pruning_group(space, index))
    except Exception as exc:  # noqa: BLE001 - a criterion that does not apply falls back to l1 (with a warning)
        return None, f"{type(exc).__name__}: {exc}"
    if scores is None:
        return None, "it has no BatchNorm" if criterion == "bn_scale" else "torch-pruning returned no scores"
    if scores.numel() != group.size:
        return None, f"torch-pruning returned {scores.numel()} scores for {group.size} channels"
    scores = scores.detach().to("cpu", torch.float32)
    if not torch.isfinite(scores).all():
        return None, "the scores are not finite"
    mean = scores.mean()
    return (scores / mean if mean > 0 else scores), ""
