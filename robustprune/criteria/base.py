"""The registry of channel criteria and the pieces every criterion shares: validation, ranks, seeds."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal, get_args

import torch

#: Every criterion ``channel_scores`` knows; see the package docstring for what each measures.
Criterion = Literal["l1", "l2", "bn_scale", "fpgm", "random", "merge_saliency", "taylor_synthetic", "taylor_l1"]
CRITERIA: tuple[str, ...] = get_args(Criterion)
#: Criteria that need model inputs (they run the model); the others read the weights only.
NEEDS_INPUTS = ("taylor_synthetic", "taylor_l1")


def check_criterion(criterion: str) -> None:
    """ValueError naming the choices when ``criterion`` is not in ``CRITERIA``."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")


def random_scores(size: int, seed: int, index: int) -> torch.Tensor:
    """Uniform scores seeded by ``(seed, group index)``: the same in every process, different per seed."""
    gen = torch.Generator().manual_seed(_stable_seed(seed, index))
    return torch.rand(size, generator=gen)


def _stable_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"robustprune-random:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def rank_sum(*criteria: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group, the sum of each channel's rank (scaled to [0, 1]) under every given criterion's scores."""
    return {name: sum(unit_ranks(scores[name]) for scores in criteria) for name in criteria[0]}


def unit_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each score within its tensor, scaled to [0, 1] (ties keep index order)."""
    scores = torch.as_tensor(scores).detach().flatten().to("cpu", torch.float64)
    ranks = torch.empty_like(scores)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(len(scores), dtype=torch.float64)
    return ranks / max(1, len(scores) - 1)
