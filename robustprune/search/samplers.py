"""Optuna sampler by name. Optuna is the optimization engine; robustprune only chooses and seeds it."""

from __future__ import annotations

import warnings
from typing import Literal, get_args

import optuna

Sampler = Literal["tpe", "cmaes", "gp", "qmc", "random", "nsga2"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random", "gp", "qmc")


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
