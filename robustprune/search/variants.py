"""Ablations of the search: each variant changes one thing against the default search.

- ``search``: the default (Optuna's sampler proposes each step's per-group amounts).
- ``search_random``: the same, with random per-group proposals: is the model-based sampler
  better than random shapes?
- ``progressive_uniform``: the same machinery (schedule, criterion choice, BN re-estimation,
  rescoring), with the even step (every group's amount grows alike) as the one trial of
  every step: the only difference from ``search`` is the Optuna allocation.
- ``oneshot_search``: one step straight to the final target with the default search's total
  trial budget, the same proxies, criterion and BN re-estimation: progressive against
  one-shot, at equal cost.
"""

from __future__ import annotations

import dataclasses

from robustprune.search.engine import SearchConfig
from robustprune.structure import PruneSpace

__all__ = ["SEARCH_VARIANTS", "variant_config"]

SEARCH_VARIANTS: tuple[str, ...] = ("search", "search_random", "progressive_uniform", "oneshot_search")


def variant_config(config: SearchConfig, variant: str, space: PruneSpace) -> SearchConfig:
    """``config`` changed as ``variant`` asks; ``space`` (the model's prune space) sizes the one-shot budget."""
    if variant not in SEARCH_VARIANTS:
        raise ValueError(f"unknown search variant {variant!r}; choose one of: {', '.join(SEARCH_VARIANTS)}")
    if variant == "search_random":
        return dataclasses.replace(config, sampler="random")
    if variant == "progressive_uniform":
        return dataclasses.replace(config, trials=1, enqueue_uniform=True)
    if variant == "oneshot_search":
        steps = config.resolve(space).steps
        return dataclasses.replace(config, steps=1, trials=steps * config.trials, max_increment=1.0)
    return config
