"""Data-free pairwise merge saliency (Srinivas & Babu 2015), shared by the ``merge_saliency`` criterion and Paoding."""

from __future__ import annotations

import math

import torch

from robustprune.structure.analysis import consumer_columns, different_activations, effective_incoming
from robustprune.structure.space import PruneSpace


def pair_saliency(w: torch.Tensor, b: torch.Tensor, a_norm: torch.Tensor) -> torch.Tensor:
    """S (n, n), float64: the cost of merging channel j (removed) into channel i (kept).

    ``w`` (n, D) incoming weights, ``b`` (n,) biases, ``a_norm`` (n,) norms of the outgoing weights::

        S(i, j) = (|(b_i - b_j) / (b_i + b_j)| + ||w_i - w_j||_2) * ||a_j||_2

    Where ``|b_i + b_j| < 1e-12`` the bias term is 0 if ``b_i == b_j``, else 1. The diagonal is +inf.
    """
    w, b, a_norm = (t.detach().to(torch.float64) for t in (w, b, a_norm))
    diff = b[:, None] - b[None, :]
    total = b[:, None] + b[None, :]
    tiny = total.abs() < 1e-12
    ratio = (diff / torch.where(tiny, torch.ones_like(total), total)).abs()
    bias_term = torch.where(tiny, (diff != 0).to(torch.float64), ratio)
    dist = torch.cdist(w, w, compute_mode="donot_use_mm_for_euclid_dist")
    s = (bias_term + dist) * a_norm[None, :]
    s.fill_diagonal_(math.inf)
    return s


def merge_saliency(space: PruneSpace, index: int) -> torch.Tensor:
    """Per channel j of group ``index``: min over i != j of ``pair_saliency``, float32 (a lone channel scores 0).

    w are the effective incoming weights (every conv/linear producer's rows, concatenated, BatchNorm
    folded in), b the effective bias and a_j the outgoing weights of j over all consumer input slices.
    It is the cost of removing j when its best partner stays, independent of any candidate: lower =
    safer to remove, so it serves as-is with "higher = keep".
    """
    group = space.groups[index]
    if group.size < 2:
        return torch.zeros(group.size)
    w, b = effective_incoming(space, index)
    a = torch.zeros(group.size, dtype=torch.float64)
    for _name, module, cols in consumer_columns(space, index):
        weight = module.weight.detach().to("cpu", torch.float64)
        for j, c in enumerate(cols):
            a[j] += weight[:, c].pow(2).sum()
    pairs = pair_saliency(w, b, a.sqrt())
    differ = different_activations(space, index)
    if differ is None:
        return pairs.min(dim=0).values.to(torch.float32)
    # a per-channel PReLU: only channels of the same slope merge exactly; one with none is removed outright,
    # which costs S(i, j) with a zero partner i
    best = pairs.masked_fill(differ, math.inf).min(dim=0).values
    alone = (1 + w.to(torch.float64).norm(dim=1)) * a.sqrt()
    return torch.where(torch.isinf(best), alone, best).to(torch.float32)
