"""Neuron merging (Srinivas & Babu 2015; Kim et al., NeurIPS 2020, conv/BN form): a removed channel's
outgoing weights are added, scaled, to its most similar kept channel's."""

from __future__ import annotations

import torch

from robustprune.structure.analysis import consumer_columns, different_activations, incoming_vectors
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
    such pairs and shrink the others.) A per-channel PReLU among the group's members makes a
    channel's activation its own: only kept channels with the same slopes are partners (the merge
    is exact only then), and a removed channel with none is not merged.

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
        differ = different_activations(space, index)
        if differ is not None:  # a partner must share the removed channel's activation
            cos = cos.masked_fill(differ[removed][:, kept], float("-inf"))
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
