"""BatchNorm running statistics re-estimated on caller-supplied inputs for the model as pruned by a candidate."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from robustprune._modes import eval_mode
from robustprune.structure.analysis import BATCH_NORMS
from robustprune.structure.masks import _module_masks, group_mask, masked
from robustprune.structure.space import Candidate, PruneSpace


def bn_reestimate_overrides(
    space: PruneSpace,
    candidate: Candidate,
    inputs: torch.Tensor,
    batch_size: int = 256,
    *,
    base: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Running mean/var of every BatchNorm, re-estimated on ``inputs`` for the model pruned to ``candidate``.

    ``inputs``: NORMALIZED model inputs, shape (N, *spec.shape). The model runs in eval
    mode under ``masked(space, candidate)``; forward pre-hooks on every BatchNorm
    accumulate the per-channel sum and sum of squares of its input (float64) over all
    samples and positions: the exact population mean and the unbiased variance (what
    BN with ``momentum=None`` would converge to, but exact).

    The estimates are *consistent*: each BN's statistics are measured on the inputs it
    receives when every BN upstream of it already uses its new statistics (a one-pass
    estimate with the old upstream statistics is wrong for stacked BNs and can blow
    the outputs up by orders of magnitude). With N <= ``batch_size`` this takes one
    forward pass (each BN's output is recomputed on the fly with its new statistics);
    otherwise one pass over ``inputs`` per level of BN depth (BN ancestors found in the
    space's dependency graph).

    Channels a BN loses under the candidate keep their old statistics (their outputs
    are masked anyway). ``candidate={}`` re-estimates the unpruned model. Returns
    ``{"<bn>.running_mean": ..., "<bn>.running_var": ...}`` for every BN that tracks
    running statistics and is reached by the forward pass; the model (weights, buffers,
    train/eval mode) is unchanged.

    ``base``: overrides the model is evaluated with while measuring (e.g. from
    ``merge_overrides``, so that the statistics match the merged weights). Running
    statistics in ``base`` are used for BNs that are not re-estimated. Merge it with the
    result: ``{**base, **bn_overrides}``.
    """
    inputs = _checked_inputs(inputs, batch_size)
    space.kept_counts(candidate)  # validates
    model = space.model
    base = _checked_base(model, base)
    norms = {name: m for name, m in model.named_modules() if isinstance(m, BATCH_NORMS) and m.running_mean is not None}
    if not norms:
        return {}
    module_masks = _module_masks(space, group_mask(space, candidate, device=torch.device("cpu")))
    stats = _Statistics(norms, base, {name: entry[0] for name, entry in module_masks.items()})
    one_batch = inputs.shape[0] <= batch_size
    # registered before ``masked`` enters, so the mask hooks run after the recomputation
    handles = [m.register_forward_pre_hook(stats.pre_hook(name)) for name, m in norms.items()]
    if one_batch:
        handles += [m.register_forward_hook(stats.recompute_hook(name)) for name, m in norms.items()]
    try:
        with eval_mode(model), torch.no_grad(), masked(space, candidate):
            if one_batch:
                stats.run(space, inputs, batch_size)
            else:
                _by_depth(stats, space, inputs, batch_size, _bn_ancestors(space, norms))
    finally:
        for h in handles:
            h.remove()
    return stats.overrides({})


def _checked_inputs(inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    inputs = torch.as_tensor(inputs)
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("inputs is empty")
    return inputs


def _checked_base(model: nn.Module, base: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    base = dict(base or {})
    known = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    unknown = sorted(set(base) - known)
    if unknown:
        raise KeyError(f"base overrides name tensors the model does not have: {', '.join(unknown)}")
    return base


class _Statistics:
    """Per-channel sums of each BN's inputs over the current pass, and the statistics already final."""

    def __init__(self, norms: Mapping[str, nn.Module], base: Mapping[str, torch.Tensor], keep_masks) -> None:
        self.norms, self.base, self.keep_masks = norms, base, keep_masks
        self.final: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.squares: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def stats(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and unbiased variance measured in this pass; channels the candidate removes keep their old ones."""
        module, n = self.norms[name], self.counts[name]
        mean = self.sums[name] / n
        var = ((self.squares[name] - n * mean * mean) / max(n - 1, 1)).clamp_min(0.0)
        old_mean = self.base.get(f"{name}.running_mean", module.running_mean).detach()
        old_var = self.base.get(f"{name}.running_var", module.running_var).detach()
        mean, var = mean.to(old_mean.device, old_mean.dtype), var.to(old_var.device, old_var.dtype)
        if name in self.keep_masks:
            kept = self.keep_masks[name].to(old_mean.device).bool()
            mean, var = torch.where(kept, mean, old_mean), torch.where(kept, var, old_var)
        return mean, var

    def finish(self, names: list[str]) -> bool:
        """Make the statistics of ``names`` measured in this pass final; True if any was measured."""
        measured = [name for name in names if name in self.counts]
        for name in measured:
            self.final[name] = self.stats(name)
        return bool(measured)

    def pre_hook(self, name: str):
        def hook(_module, args):
            if name in self.final:
                return
            x = args[0].detach().to(torch.float64)
            x = x.movedim(1, -1).reshape(-1, x.shape[1])  # (samples * positions, C)
            self.sums[name] = self.sums.get(name, 0) + x.sum(0)
            self.squares[name] = self.squares.get(name, 0) + (x * x).sum(0)
            self.counts[name] = self.counts.get(name, 0) + x.shape[0]

        return hook

    def recompute_hook(self, name: str):
        def hook(module, args, _output):
            if name in self.final or name not in self.counts:
                return None
            self.final[name] = self.stats(name)  # one batch holds every input: these are the population statistics
            mean, var = self.final[name]
            # inside functional_call, module.weight / module.bias are the (possibly overridden) tensors in use
            return F.batch_norm(args[0], mean, var, module.weight, module.bias, False, 0.0, module.eps)

        return hook

    def overrides(self, base: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``base`` with the final running statistics set."""
        out = dict(base)
        for name, (mean, var) in self.final.items():
            out[f"{name}.running_mean"], out[f"{name}.running_var"] = mean, var
        return out

    def run(self, space: PruneSpace, inputs: torch.Tensor, batch_size: int) -> None:
        """One pass over ``inputs`` with the final statistics (and ``base``) in force; fresh sums."""
        self.sums.clear(), self.squares.clear(), self.counts.clear()
        overrides = self.overrides(self.base)
        dtype = next((p.dtype for p in space.model.parameters() if p.is_floating_point()), torch.float32)
        for start in range(0, inputs.shape[0], batch_size):
            functional_call(space.model, overrides, (inputs[start : start + batch_size].to(space.device, dtype),))


def _by_depth(
    stats: _Statistics, space: PruneSpace, inputs: torch.Tensor, batch_size: int, ancestors: dict[str, set[str]]
) -> None:
    """One pass per level of BN depth: a BN is final once every BN upstream of it was final during its pass."""
    while True:
        ready = [n for n in stats.norms if n not in stats.final and ancestors[n] <= stats.final.keys()]
        stats.run(space, inputs, batch_size)
        progressed = stats.finish(ready)
        pending = [n for n in stats.norms if n not in stats.final and n in stats.counts]
        if not pending or not progressed:
            stats.finish(pending)  # no dependency information left: take what was measured
            return


def _bn_ancestors(space: PruneSpace, norms: Mapping[str, nn.Module]) -> dict[str, set[str]]:
    """Per BN, the nearest BNs upstream of it in the dependency graph (all BNs if it is not in the graph)."""
    names = {m: n for n, m in norms.items()}
    out: dict[str, set[str]] = {}
    for name, module in norms.items():
        node = space.graph.module2node.get(module)
        if node is None:
            out[name] = set(norms) - {name}
            continue
        found, stack, seen = set(), list(node.inputs), set()
        while stack:
            nd = stack.pop()
            if id(nd) in seen:
                continue
            seen.add(id(nd))
            if nd.module in names:
                found.add(names[nd.module])
                continue
            stack.extend(nd.inputs)
        out[name] = found
    return out
