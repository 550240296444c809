"""Data-free compensation for removed channels, as tensor *overrides* (the model is never modified).

An override dict maps names from ``model.named_parameters()`` / ``model.named_buffers()``
to full-shape replacement tensors. Evaluate a compensated candidate without copying
the model::

    with masked(space, candidate):
        logits = torch.func.functional_call(space.model, overrides, (x,))

and export it with ``export(space, candidate, model=apply_overrides(space.model, overrides))``.

``merge_overrides``
    Neuron merging (Srinivas & Babu 2015; Kim et al., NeurIPS 2020, conv/BN form):
    a removed channel's outgoing weights are added, scaled, to its most similar kept
    channel's.
``bn_reestimate_overrides``
    BatchNorm running statistics re-estimated on caller-supplied inputs for the
    model as pruned by the candidate.
``bias_overrides``
    Mean-shift (bias) correction for models without BatchNorm: each consumer's bias
    absorbs the mean contribution of the channels it no longer reads, the means
    measured once on caller-supplied inputs (``consumer_input_means``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from robustprune._modes import eval_mode
from robustprune.structure.analysis import BATCH_NORMS, consumer_columns, incoming_vectors
from robustprune.structure.masks import _module_masks, group_mask, masked
from robustprune.structure.space import Candidate, PruneSpace

_EPS = 1e-12


def merge_overrides(space: PruneSpace, candidate: Candidate, threshold: float = 0.0) -> dict[str, torch.Tensor]:
    """Neuron-merging overrides (consumer weights) for the channels ``candidate`` removes.

    For every removed channel j of a group, the kept channel i of the same group with
    the highest cosine similarity of the effective incoming vectors v = [w_eff, b_eff]
    is its partner (v concatenates, over every conv/linear producer of the group, the
    producer's row and bias with the following BatchNorm folded in:
    w * gamma / sqrt(var + eps) and beta + (b - mean) * gamma / sqrt(var + eps); a BN
    that does not directly follow a producer contributes its own scale and shift). If
    the similarity is > ``threshold``, s * (outgoing weights of j) is added to the
    outgoing weights of i in every consumer (for a Linear after a flatten: the whole
    block of input features of the channel).

    The scale is the norm ratio s = ||v_j|| / ||v_i|| (Kim et al.). When v_j = c v_i
    with c > 0 and the activation is positively homogeneous (ReLU, leaky ReLU), the
    channel j computes exactly c times channel i, so the merge is exact; for an exact
    duplicate s = 1. (The projection <v_j, v_i> / ||v_i||^2 = cos * s would agree on
    such pairs and shrink the others.)

    Similarities come from the original weights and merges only add to consumer input
    slices, so groups are independent and the order does not matter. Returns overrides
    for the changed consumer weights only; {} when nothing is removed.
    """
    space.kept_counts(candidate)  # validates
    overrides: dict[str, torch.Tensor] = {}
    module_names = {m: n for n, m in space.model.named_modules()}
    param_names = {id(p): n for n, p in space.model.named_parameters()}
    for name, keep in candidate.items():
        group = space.group(name)
        kept = sorted(int(i) for i in keep)
        removed = sorted(set(range(group.size)) - set(kept))
        if not removed:
            continue
        index = space.index_of(name)
        v = incoming_vectors(space, index)
        norms = v.norm(dim=1)
        unit = v / norms.clamp_min(_EPS)[:, None]
        cos = unit[removed] @ unit[kept].T  # (removed, kept)
        best = cos.argmax(dim=1)
        consumers = consumer_columns(space, index)
        for r, j in enumerate(removed):
            i = kept[int(best[r])]
            if not float(cos[r, best[r]]) > threshold or float(norms[i]) <= _EPS:
                continue
            scale = float(norms[j] / norms[i])
            for consumer, module, cols in consumers:
                key = param_names.get(id(module.weight)) or f"{module_names[module]}.weight"
                if key not in overrides:
                    overrides[key] = module.weight.detach().clone()
                target = overrides[key]
                source = module.weight.detach()
                ci = torch.tensor(cols[i], device=target.device)
                cj = torch.tensor(cols[j], device=target.device)
                if len(cols[i]) != len(cols[j]):
                    raise ValueError(
                        f"consumer {consumer!r} reads channels {i} and {j} of group {name!r} with "
                        "different numbers of input features"
                    )
                target.index_add_(1, ci, source.index_select(1, cj), alpha=scale)
    return overrides


def consumer_input_means(space: PruneSpace, inputs: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Mean input feature of every consumer layer of the space's groups on ``inputs`` (NORMALIZED model
    inputs), measured on the unpruned model: (in_features,) per consumer, float64 on the CPU."""
    modules = dict(space.model.named_modules())
    names = sorted({c for g in space.groups for c in g.consumers if isinstance(modules[c], nn.Conv2d | nn.Linear)})
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make_hook(name):
        def hook(module, args):
            x = args[0].detach().to(torch.float64)
            x = x.movedim(1, -1) if isinstance(module, nn.Conv2d) else x  # features last
            x = x.reshape(-1, x.shape[-1])
            sums[name] = sums.get(name, 0) + x.sum(0).cpu()
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    handles = [modules[n].register_forward_pre_hook(make_hook(n)) for n in names]
    dtype = next((p.dtype for p in space.model.parameters() if p.is_floating_point()), torch.float32)
    try:
        with eval_mode(space.model), torch.no_grad():
            for start in range(0, inputs.shape[0], batch_size):
                space.model(inputs[start : start + batch_size].to(space.device, dtype))
    finally:
        for h in handles:
            h.remove()
    return {n: sums[n] / counts[n] for n in sums}


def bias_overrides(
    space: PruneSpace, candidate: Candidate, means: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Bias corrections for the channels ``candidate`` removes: every consumer with a bias gets
    ``b + sum_j W[:, j] * mean_j`` over the input features j it loses (a conv's kernel summed; zero
    padding at the borders ignored), so its output keeps its mean on the inputs ``means`` were
    measured on (``consumer_input_means``). Consumers without a bias are left as they are.
    Returns overrides for the changed biases only; {} when nothing is removed."""
    space.kept_counts(candidate)  # validates
    param_names = {id(p): n for n, p in space.model.named_parameters()}
    overrides: dict[str, torch.Tensor] = {}
    for name, keep in candidate.items():
        group = space.group(name)
        removed = sorted(set(range(group.size)) - {int(i) for i in keep})
        if not removed:
            continue
        for consumer, module, cols in consumer_columns(space, space.index_of(name)):
            if module.bias is None or consumer not in means:
                continue
            features = [c for j in removed for c in cols[j]]
            weight = module.weight.detach().to("cpu", torch.float64)
            w = weight.flatten(2).sum(2) if weight.dim() > 2 else weight  # (out, in)
            shift = w[:, features] @ means[consumer][features]
            key = param_names[id(module.bias)]
            base = overrides.get(key, module.bias.detach())
            overrides[key] = base + shift.to(base.device, base.dtype)
    return overrides


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
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    inputs = torch.as_tensor(inputs)
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError("inputs is empty")
    space.kept_counts(candidate)  # validates
    model = space.model
    base = dict(base or {})
    known = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    unknown = sorted(set(base) - known)
    if unknown:
        raise KeyError(f"base overrides name tensors the model does not have: {', '.join(unknown)}")
    norms = {name: m for name, m in model.named_modules() if isinstance(m, BATCH_NORMS) and m.running_mean is not None}
    if not norms:
        return {}
    module_masks = _module_masks(space, group_mask(space, candidate, device=torch.device("cpu")))
    keep_masks = {name: entry[0] for name, entry in module_masks.items()}
    one_batch = inputs.shape[0] <= batch_size
    ancestors = _bn_ancestors(space, norms)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    final: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def stats(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        module, n = norms[name], counts[name]
        mean = sums[name] / n
        var = ((squares[name] - n * mean * mean) / max(n - 1, 1)).clamp_min(0.0)
        old_mean = base.get(f"{name}.running_mean", module.running_mean).detach()
        old_var = base.get(f"{name}.running_var", module.running_var).detach()
        mean, var = mean.to(old_mean.device, old_mean.dtype), var.to(old_var.device, old_var.dtype)
        if name in keep_masks:
            kept = keep_masks[name].to(old_mean.device).bool()
            mean, var = torch.where(kept, mean, old_mean), torch.where(kept, var, old_var)
        return mean, var

    def make_pre_hook(name):
        def hook(_module, args):
            if name in final:
                return
            x = args[0].detach().to(torch.float64)
            x = x.movedim(1, -1).reshape(-1, x.shape[1])  # (samples * positions, C)
            sums[name] = sums.get(name, 0) + x.sum(0)
            squares[name] = squares.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    def make_hook(name):
        def hook(module, args, _output):
            if name in final or name not in counts:
                return None
            final[name] = stats(name)  # one batch holds every input: these are the population statistics
            mean, var = final[name]
            # inside functional_call, module.weight / module.bias are the (possibly overridden) tensors in use
            return F.batch_norm(args[0], mean, var, module.weight, module.bias, False, 0.0, module.eps)

        return hook

    # registered before ``masked`` enters, so the mask hooks run after the recomputation
    handles = [m.register_forward_pre_hook(make_pre_hook(name)) for name, m in norms.items()]
    if one_batch:
        handles += [m.register_forward_hook(make_hook(name)) for name, m in norms.items()]
    try:
        with eval_mode(model), torch.no_grad(), masked(space, candidate):
            while True:
                sums.clear(), squares.clear(), counts.clear()
                overrides = dict(base)
                for name, (mean, var) in final.items():
                    overrides[f"{name}.running_mean"], overrides[f"{name}.running_var"] = mean, var
                ready = [n for n in norms if n not in final and ancestors[n] <= final.keys()]
                for start in range(0, inputs.shape[0], batch_size):
                    functional_call(model, overrides, (inputs[start : start + batch_size].to(space.device, dtype),))
                if one_batch:
                    break
                progressed = False
                for name in ready:
                    if name in counts:
                        final[name] = stats(name)
                        progressed = True
                pending = [n for n in norms if n not in final and n in counts]
                if not pending or not progressed:
                    for name in pending:  # no dependency information left: take what was measured
                        final[name] = stats(name)
                    break
    finally:
        for h in handles:
            h.remove()

    overrides: dict[str, torch.Tensor] = {}
    for name, (mean, var) in final.items():
        overrides[f"{name}.running_mean"] = mean
        overrides[f"{name}.running_var"] = var
    return overrides


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


def _override_targets(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model``'s parameters and buffers by name, after checking that ``overrides`` names only
    those, with their shapes (KeyError naming every unknown key, ValueError on a shape mismatch)."""
    targets = dict(model.named_parameters())
    targets.update(dict(model.named_buffers()))
    unknown = sorted(set(overrides) - set(targets))
    if unknown:
        raise KeyError(f"overrides name tensors the model does not have: {', '.join(unknown)}")
    for key, value in overrides.items():
        if tuple(value.shape) != tuple(targets[key].shape):
            raise ValueError(f"override {key!r} has shape {tuple(value.shape)}, expected {tuple(targets[key].shape)}")
    return targets


@contextlib.contextmanager
def overrides_applied(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Within the context, ``model``'s own tensors hold ``overrides``; the old values come back after.

    In place, unlike ``apply_overrides``: for a short computation on a private model where a deep
    copy per call would cost more than the computation (e.g. rescoring channels each search step).
    """
    targets = _override_targets(model, overrides)
    saved = {key: targets[key].detach().clone() for key in overrides}
    try:
        with torch.no_grad():
            for key, value in overrides.items():
                targets[key].copy_(value)
        yield
    finally:
        with torch.no_grad():
            for key, value in saved.items():
                targets[key].copy_(value)


def apply_overrides(model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` with the override tensors copied in; ``model`` is untouched.

    Raises KeyError naming every key that is not a parameter or buffer of ``model``,
    and ValueError on a shape mismatch.
    """
    _override_targets(model, overrides)  # validates before the copy
    out = copy.deepcopy(model)
    targets = _override_targets(out, overrides)
    with torch.no_grad():
        for key, value in overrides.items():
            targets[key].copy_(value)
    return out
