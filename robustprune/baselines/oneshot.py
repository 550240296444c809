"""``baseline()``: prune one-shot with a named method; ``PruneResult``: what it returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from robustprune.criteria import all_scores
from robustprune.pruned import Cost, PruningResult
from robustprune.select import global_candidate, uniform_candidate
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, save_pruned
from robustprune.structure.space import UnsupportedModelError
from robustprune.targets import Target

METHODS = ("l1_uniform", "taylor_uniform", "taylor_l1_uniform", "random_uniform", "global_magnitude", "paoding")

#: Baselines that rank channels on synthetic inputs (``baseline(..., inputs=)``), and the criterion each uses.
INPUT_CRITERIA = {"taylor_uniform": "taylor_synthetic", "taylor_l1_uniform": "taylor_l1"}


@dataclasses.dataclass
class PruneResult(PruningResult):
    """A pruned model and how it was obtained (its interface, shared with ``SearchResult``: ``robustprune.pruned``)."""

    model: nn.Module
    candidate: dict[str, tuple[int, ...]]
    space: PruneSpace
    method: str
    target: Target
    macs: int
    params: int

    def cost(self) -> Cost:
        return Cost(self.macs, self.params, self.space.full_macs, self.space.full_params)

    def save(self, directory: str | Path, model_ref: str | None = None) -> list[Path]:
        """Write pruned.pt and spec.json into ``directory``."""
        return list(save_pruned(directory, self.space, self.candidate, self.model, model_ref=model_ref))

    def details(self) -> dict:
        return {"target": self.target.to_dict()}


def _random_scores(space: PruneSpace, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: torch.rand(grp.size, generator=g) for grp in space.groups}


def _paoding(space: PruneSpace, target: Target, seed: int) -> tuple[nn.Module, dict]:
    """Paoding on a dense network; conv models are refused (the paper prunes convs with plain L1 = l1_uniform)."""
    from robustprune.baselines.paoding import paoding_prune_to_macs, paoding_prune_to_params

    if target.macs is not None and target.params is not None:
        raise ValueError("the paoding baseline takes one target: --target-macs or --target-params")
    try:
        if target.macs is not None:
            pruned, kept, _ = paoding_prune_to_macs(space.model, space.spec, target.macs, seed=seed)
        else:
            pruned, kept, _ = paoding_prune_to_params(space.model, space.spec, target.params, seed=seed)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{exc} (Paoding merges dense neurons; the paper prunes conv layers with "
            "plain L1 filter norms, which is the l1_uniform baseline)"
        ) from exc
    if set(kept) != set(space.group_names()):
        raise ValueError(f"paoding pruned layers {sorted(kept)} but the prune space has groups {space.group_names()}")
    return pruned.eval(), {name: tuple(sorted(idx)) for name, idx in kept.items()}


def baseline(
    model: nn.Module,
    spec: InputSpec,
    method: str,
    target_macs: float | None = None,
    target_params: float | None = None,
    seed: int = 0,
    exclude: tuple[str, ...] = (),
    space: PruneSpace | None = None,
    inputs: torch.Tensor | None = None,
    round_to: int = 1,
) -> PruneResult:
    """Prune ``model`` one-shot with ``method`` to the target; returns a new model (``model`` is untouched).

    ``inputs``: normalized synthetic inputs, needed by the ``INPUT_CRITERIA`` baselines only.
    ``round_to``: kept channels per group in multiples of it (the uniform baselines only).
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of: {', '.join(METHODS)}")
    if method in INPUT_CRITERIA and inputs is None:
        raise ValueError(f"{method} ranks channels on synthetic inputs: pass inputs= (normalized)")
    if round_to != 1 and method in ("global_magnitude", "paoding"):
        raise ValueError(f"round_to applies to the uniform baselines; {method} removes channels one at a time")
    target = Target(macs=target_macs, params=target_params, round_to=round_to)
    space = space or PruneSpace(model, spec, exclude=exclude)
    if method == "paoding":
        pruned, candidate = _paoding(space, target, seed)
    else:
        if method == "random_uniform":
            scores = _random_scores(space, seed)
        elif method in INPUT_CRITERIA:
            scores = all_scores(space, INPUT_CRITERIA[method], inputs=inputs)
        else:
            scores = all_scores(space, "l1")
        if method == "global_magnitude":
            candidate = global_candidate(space, target, scores)
        else:
            candidate = uniform_candidate(space, target, scores)
        pruned = export(space, candidate)
    macs, params = space.cost(candidate)
    return PruneResult(pruned, candidate, space, method, target, macs, params)
