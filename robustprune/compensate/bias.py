"""Mean-shift (bias) correction for models without BatchNorm: each consumer's bias absorbs the mean
contribution of the channels it no longer reads, the means measured once on caller-supplied inputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from robustprune._modes import eval_mode
from robustprune.structure.analysis import consumer_columns
from robustprune.structure.layers import CONV_TYPES, LAYER_TYPES
from robustprune.structure.space import Candidate, PruneSpace


def consumer_input_means(space: PruneSpace, inputs: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Mean input feature of every consumer layer of the space's groups on ``inputs`` (NORMALIZED model
    inputs), measured on the unpruned model: (in_features,) per consumer, float64 on the CPU."""
    modules = dict(space.model.named_modules())
    names = sorted({c for g in space.groups for c in g.consumers if isinstance(modules[c], LAYER_TYPES)})
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def make_hook(name):
        def hook(module, args):
            x = args[0].detach().to(torch.float64)
            x = x.movedim(1, -1) if isinstance(module, CONV_TYPES) else x  # features last
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
