"""One-shot data-free pruning baselines: what the progressive search has to beat.

- ``l1_uniform``: the same fraction of channels removed from every group, lowest
  L1 filter norm first (Li et al. 2017).
- ``taylor_uniform``: the same fractions, channels ranked by the first-order Taylor
  importance on synthetic inputs (``importance.taylor_synthetic``), the criterion the
  search uses by default; it separates what the search's per-group allocation wins
  from what the criterion alone gives. Needs ``inputs`` (synthetic, normalized).
- ``taylor_l1_uniform``: the same fractions, channels ranked by ``taylor_l1`` (the rank sum of
  Taylor on synthetic inputs and L1), the ranking the search chooses most often: the
  strongest one-shot rival of the search's allocation. Needs ``inputs`` too.
- ``random_uniform``: the same fractions, channels chosen at random (seeded).
- ``global_magnitude``: one ranking over all groups of the L1 importance normalised
  by its group mean (torch-pruning's global pruning); the least important channels
  anywhere go first.
- ``paoding``: the Paoding method (robustprune.paoding): progressive pair merging of
  dense neurons chosen by saliency, interval-arithmetic impact and simulated
  annealing; conv groups get L1 filter pruning as in the paper.

None of them sees real data or re-estimates BN statistics; each lands at or just below
its target (fraction of the original MACs or params to keep).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from robustprune.importance import _top, all_scores
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, save_pruned
from robustprune.structure.space import UnsupportedModelError
from robustprune.targets import Target, fill_to_target, smallest_feasible, uniform_amount_for, uniform_counts

METHODS = ("l1_uniform", "taylor_uniform", "taylor_l1_uniform", "random_uniform", "global_magnitude", "paoding")

#: Baselines that rank channels on synthetic inputs (``baseline(..., inputs=)``), and the criterion each uses.
INPUT_CRITERIA = {"taylor_uniform": "taylor_synthetic", "taylor_l1_uniform": "taylor_l1"}


@dataclasses.dataclass
class PruneResult:
    """A pruned model and how it was obtained."""

    model: nn.Module
    candidate: dict[str, tuple[int, ...]]
    space: PruneSpace
    method: str
    target: Target
    macs: int
    params: int

    @property
    def kept_fraction(self) -> dict[str, float]:
        return {"macs": self.macs / self.space.full_macs, "params": self.params / self.space.full_params}

    def save(self, directory: str | Path, model_ref: str | None = None) -> None:
        save_pruned(directory, self.space, self.candidate, self.model, model_ref=model_ref)


def _keep_top(scores: torch.Tensor, count: int, blocks: int = 1) -> tuple[int, ...]:
    return _top(scores, count, blocks)  # with GroupNorm: the same count from each of its groups


def uniform_candidate(space: PruneSpace, target: Target, scores: dict[str, torch.Tensor]) -> dict:
    """The same removal fraction in every group (up to one channel), landing just under ``target``."""
    counts = fill_to_target(space, target, uniform_counts(space, uniform_amount_for(space, target)))
    return {g.name: _keep_top(scores[g.name], n, g.blocks) for g, n in zip(space.groups, counts, strict=True)}


def _random_scores(space: PruneSpace, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {grp.name: torch.rand(grp.size, generator=g) for grp in space.groups}


def global_candidate(space: PruneSpace, target: Target, scores: dict[str, torch.Tensor]) -> dict:
    """Remove the globally least important channels (scores normalised per group) until ``target`` is met."""
    entries = []
    for gi, grp in enumerate(space.groups):
        s = scores[grp.name].double()
        s = s / s.mean().clamp_min(1e-12)
        entries += [(float(v), gi, c) for c, v in enumerate(s)]
    entries.sort()
    sizes = [g.size for g in space.groups]
    # The removal order is fixed by the ranking: skip a channel only when its group is down to one.
    order: list[tuple[int, int]] = []
    left = list(sizes)
    for _, gi, c in entries:
        if left[gi] > 1:
            left[gi] -= 1
            order.append((gi, c))

    def counts_after(k: int) -> list[int]:
        counts = list(sizes)
        for gi, _ in order[:k]:
            counts[gi] -= 1
        return counts

    k = smallest_feasible(0, len(order), lambda k: target.met(space, counts_after(k)))
    removed = set(order[:k])
    return {
        grp.name: tuple(c for c in range(grp.size) if (gi, c) not in removed) for gi, grp in enumerate(space.groups)
    }


def _paoding(space: PruneSpace, target: Target, seed: int) -> tuple[nn.Module, dict]:
    """Paoding on a dense network; conv models are refused (the paper prunes convs with plain L1 = l1_uniform)."""
    from robustprune.paoding import paoding_prune_to_macs, paoding_prune_to_params

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
) -> PruneResult:
    """Prune ``model`` one-shot with ``method`` to the target; returns a new model (``model`` is untouched).

    ``inputs``: normalized synthetic inputs, needed by the ``INPUT_CRITERIA`` baselines only.
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose one of: {', '.join(METHODS)}")
    if method in INPUT_CRITERIA and inputs is None:
        raise ValueError(f"{method} ranks channels on synthetic inputs: pass inputs= (normalized)")
    target = Target(macs=target_macs, params=target_params)
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
