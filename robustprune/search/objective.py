"""Build and score one candidate: amounts -> kept channels -> compensation -> proxies -> objective."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping

import torch

from robustprune.compensate import bias_overrides, bn_reestimate_overrides, consumer_input_means, merge_overrides
from robustprune.probes.probeset import ProbeSet
from robustprune.proxies import PROXIES, score
from robustprune.select import removed_count, rounded_amount, select_keep
from robustprune.structure.space import PruneSpace
from robustprune.targets import Target

#: Default objective: agreement on synthetic inputs, agreement on adversarial inputs, KL to the
#: original's outputs (a continuous tie-breaker: agreement saturates near 1 for mild candidates),
#: and a penalty for becoming more confident on undesired inputs (evidence: docs/defaults.md, "weights").
DEFAULT_WEIGHTS = {"fidelity": 1.0, "robust_fidelity": 0.5, "kl": 0.1, "open_world": 0.25}
COMPENSATIONS = ("bn", "merge", "bias")


#: The order the objective sums in, whatever order a weights dict has (one read back from JSON is sorted):
#: every process then scores a candidate to the same bits.
SUM_ORDER = (*DEFAULT_WEIGHTS, *(name for name in PROXIES if name not in DEFAULT_WEIGHTS))


def weighted_score(proxies: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Sum of weighted proxies, each signed so that higher is better; open-world only penalises a rise."""
    total = 0.0
    for name in SUM_ORDER:
        weight = weights.get(name)
        if not weight:
            continue
        value = proxies[name]
        if name == "open_world":
            value = max(0.0, value)
        total += weight * (value if PROXIES[name][1] == "max" else -value)
    return total


def check_proxy_names(names: Iterable[str], where: str) -> None:
    """Every name must be a proxy; ``where`` names the setting in the error (``weights``, ``floors``)."""
    unknown = set(names) - set(PROXIES)
    if unknown:
        raise ValueError(f"unknown proxies in {where}: {', '.join(sorted(unknown))}; known: {', '.join(PROXIES)}")


def check_weights(weights: Mapping[str, float]) -> None:
    check_proxy_names(weights, "weights")
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ValueError(f"objective weight {name!r} must be a finite number, got {weight!r}")
    if not any(weights.values()):
        raise ValueError("at least one objective weight must be non-zero")


def meets_floors(proxies: Mapping[str, float], floors: Mapping[str, float]) -> list[str]:
    """The floors ``proxies`` would cross (a floor is a minimum for 'higher is better' proxies, else a maximum)."""
    crossed = []
    for name, floor in floors.items():
        better = PROXIES[name][1]
        if (better == "max" and proxies[name] < floor) or (better == "min" and proxies[name] > floor):
            crossed.append(f"{name} {proxies[name]:.4f} vs floor {floor}")
    return crossed


def fit_amounts(
    space: PruneSpace,
    previous: Mapping[str, float],
    direction: Mapping[str, float],
    max_increment: float,
    target: Target,
    max_amount: float = 0.9,
) -> tuple[dict[str, float], bool]:
    """Removal fractions ``previous + max_increment * min(1, lam * direction)`` per group, with the
    smallest ``lam >= 0`` that meets ``target``; ``(amounts at the bound, False)`` if none does.

    With ``target.round_to`` > 1 each amount is rounded so the kept channels are a multiple of it
    (``removed_count``), and a group may move by one such multiple in a step even where that is more
    than ``max_increment`` (else a small group could never lose a multiple); the cost is monotone in
    ``lam`` either way, so the bisection still lands just under the target.

    The sampler chooses the *shape* of the step (``direction`` in [0, 1] per group: which groups
    lose more); the scale is solved for, so a trial lands just under the step's target, and no
    group's amount grows by more than ``max_increment`` in one step (groups saturate at the
    bound one by one as ``lam`` grows). Infeasible only when even every group with a non-zero
    direction taking the full increment falls short.
    """

    step = target.round_to
    increment = {g.name: max(max_increment, step / g.size) if step > 1 else max_increment for g in space.groups}

    def amounts(lam: float) -> dict[str, float]:
        out = {}
        for g in space.groups:
            before = previous.get(g.name, 0.0)
            grown = before + increment[g.name] * min(1.0, lam * direction[g.name])
            out[g.name] = rounded_amount(g.size, max(before, min(max_amount, grown)), step)
        return out

    def feasible(lam: float) -> bool:
        a = amounts(lam)
        return target.met(space, [g.size - removed_count(g.size, a[g.name]) for g in space.groups])

    positive = [d for d in direction.values() if d > 0]
    if not positive:
        return amounts(0.0), feasible(0.0)
    hi = 1.0 / min(positive)  # every group with a positive direction at its bound
    if not feasible(hi):
        return amounts(hi), False
    lo = 0.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if feasible(mid):
            hi = mid
        else:
            lo = mid
    return amounts(hi), True


def fit_and_score_probes(probes: ProbeSet, split: bool) -> tuple[ProbeSet, ProbeSet]:
    """(fit, score): the probes the channel ranking, rescoring and BN re-estimation are fitted on, and the
    probes candidates are scored on. ``split``: the first half of the synthetic inputs (with their adversarial
    versions) fits and the second half scores (``ProbeSet.split``); else both are all of ``probes``.

    Why: a ranking or BN statistics fitted on the very inputs that score the candidate flatter it, so the
    proxies can rise while real accuracy falls (docs/defaults.md, "split_probes").
    """
    if not split:
        return probes, probes
    n = len(probes.pixels["synthetic"])
    if n < 2:
        raise ValueError(f"split_probes needs at least 2 synthetic probes, got {n}")
    return probes.split(n // 2)


@dataclasses.dataclass
class Evaluator:
    """Everything needed to score a candidate, prepared once per search (no model copies per trial)."""

    space: PruneSpace
    probes: ProbeSet
    scores: dict[str, torch.Tensor]  # channel importance per group, computed once on the original model
    compensation: tuple[str, ...] = ("bn",)
    attack: str | None = None  # fresh attack on each candidate (attack_robustness) when weighted
    bn_pixels: torch.Tensor | None = None  # inputs for BN re-estimation (default: the probes' synthetic ones)

    def __post_init__(self) -> None:
        unknown = set(self.compensation) - set(COMPENSATIONS)
        if unknown:
            raise ValueError(f"unknown compensation {sorted(unknown)}; choose from {', '.join(COMPENSATIONS)}")
        if {"merge", "bias"} <= set(self.compensation):
            raise ValueError("compensation 'merge' and 'bias' both rewrite what consumers read; choose one")
        pixels = self.probes.pixels["synthetic"] if self.bn_pixels is None else self.bn_pixels
        self.bn_inputs = self.probes.spec.normalize(pixels)
        self._means: dict[str, torch.Tensor] | None = None  # consumer input means, for "bias"

    def candidate(self, amounts: Mapping[str, float]) -> dict[str, tuple[int, ...]]:
        return select_keep(self.space, dict(amounts), scores=self.scores)

    def overrides(self, candidate) -> dict[str, torch.Tensor]:
        overrides: dict[str, torch.Tensor] = {}
        if "merge" in self.compensation:
            overrides = merge_overrides(self.space, candidate)
        if "bias" in self.compensation:
            if self._means is None:
                self._means = consumer_input_means(self.space, self.bn_inputs)
            overrides = bias_overrides(self.space, candidate, self._means)
        if "bn" in self.compensation:
            bn = bn_reestimate_overrides(
                self.space, candidate, self.bn_inputs, batch_size=len(self.bn_inputs), base=overrides or None
            )
            overrides = {**overrides, **bn}
        return overrides

    def evaluate(self, amounts: Mapping[str, float]) -> tuple[dict, dict, dict[str, float]]:
        return self.evaluate_candidate(self.candidate(amounts))

    def evaluate_candidate(self, cand: dict[str, tuple[int, ...]]) -> tuple[dict, dict, dict[str, float]]:
        overrides = self.overrides(cand)
        return cand, overrides, score(self.space, self.probes, cand, overrides, attack=self.attack)
