"""Optuna sampler by name. Optuna is the optimization engine; robustprune only chooses and seeds it."""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import numpy as np
import optuna

Sampler = Literal["tpe", "cmaes", "gp", "qmc", "random", "nsga2"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random", "gp", "qmc")


#: The largest search seed: a step's sampler seed ``seed * 1000 + k`` must stay below numpy's 2**32.
MAX_SEED = (2**32 - 1) // 1000 - 1


def step_seed(seed: int, k: int, existing: int = 0) -> int:
    """The sampler seed of step ``k``: ``seed * 1000 + k`` for a fresh step; a step resumed with ``existing``
    trials gets a seed of its own, so its sampler continues instead of replaying the amounts already tried."""
    if existing == 0:
        return seed * 1000 + k
    return int(np.random.SeedSequence([seed, k, existing]).generate_state(1)[0] >> 1)


def make_sampler(name: str, seed: int, multi_objective: bool = False) -> optuna.samplers.BaseSampler:
    """A seeded sampler. Every sampler here honours ``trial.set_constraint`` or ignores it harmlessly
    (infeasible trials are then never committed, because the engine filters on feasibility)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}")
    if multi_objective and name not in MULTI_OBJECTIVE_SAMPLERS:
        raise ValueError(
            f"sampler {name!r} is single-objective; for multi-objective search use one of "
            f"{', '.join(MULTI_OBJECTIVE_SAMPLERS)}"
        )
    if name == "tpe":
        # multivariate TPE models the groups' amounts jointly; a few random startup trials seed it
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    if name == "cmaes":
        # CMA-ES ignores constraints; infeasible trials are still never committed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=4, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=8)
    if name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=12)
