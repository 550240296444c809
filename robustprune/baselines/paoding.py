"""Paoding: progressive, data-free, robustness-preserving pruning of dense layers (a baseline).

A reimplementation, from the paper's description, of Meng, Bai, Teo and Dong, "Supervised
Robustness-preserving Data-free Neural Network Pruning" (ICECCS 2023, arXiv 2204.00783):

* Unit: hidden neurons of ``nn.Linear`` layers, removed in pairs by *merging*: for a pair
  (``a`` kept, ``b`` removed) the outgoing weights of ``b`` are added to ``a``'s
  (``W_next[:, a] += W_next[:, b]``), then ``b`` is removed. The output layer is never pruned.
* Candidate order: the pair saliency of Srinivas and Babu (2015), :func:`pair_saliency`.
* Impact: interval arithmetic from the input box (the pixel ``value_range`` normalized by the
  spec) through every layer, the first included; the change a merge makes on the next layer,
  ``(a - b) * W_next[:, b]`` with ``a`` and ``b`` over their post-ReLU intervals, is propagated
  to the logits and scored by :func:`impact_score`.
* Selection: simulated annealing along the pairs in ascending saliency, :func:`select_pairs`.
* Schedule: every hidden dense layer loses ``step`` of its original width per iteration until
  ``target`` of it is gone (both fractions of that layer's original neurons).

Defects of the original code fixed here: the least-saliency pair is eligible (and, being the
first one scored, always accepted); pair direction matches the merge (the kept neuron absorbs
the removed one, and the saliency's outgoing-weight factor is the removed neuron's); the
temperature decreases as the layer's quota fills (:func:`temperature`); the cumulative impact
of the pairs already accepted in the step is used (a candidate is scored on the accumulated
output intervals plus its own); the first layer's intervals are propagated from the input box.

Scope: models that compute ``[Flatten] Linear (ReLU Linear)*``, however they are written (an
``nn.Sequential``, a module holding a Flatten and a Sequential, ``F.relu`` in a forward; ``Identity``
and ``Dropout`` are tolerated anywhere): the Linear layers are taken in call order and the model's
output is checked against the chain they form. Conv layers are NOT supported: the original
gave them plain L1 filter pruning, which this baseline leaves out; a model with any other module
raises a ValueError that names the first unsupported one.

Pure torch/numpy, deterministic for a given ``seed`` (a ``numpy.random.Generator`` drives the
annealing). The user's model is never modified: a new, physically smaller model is returned.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from robustprune.baselines.dense_chain import (
    chain_intervals,
    dense_chain,
    input_intervals,
    interval_linear,
    interval_relu,
    merge_impact,
    propagate_intervals,
)
from robustprune.criteria.saliency import pair_saliency as merge_pair_saliency
from robustprune.spec import InputSpec

__all__ = [
    "PaodingConfig",
    "impact_score",
    "input_intervals",
    "interval_linear",
    "interval_relu",
    "merge_impact",
    "pair_saliency",
    "paoding_prune",
    "paoding_prune_to_macs",
    "paoding_prune_to_params",
    "propagate_intervals",
    "select_pairs",
    "temperature",
]

_DTYPE = torch.float64
_TEMPERATURE_FLOOR = 1e-3


@dataclasses.dataclass
class PaodingConfig:
    """Settings of :func:`paoding_prune`.

    target: fraction of each hidden dense layer's neurons REMOVED (at least one neuron stays).
    step: fraction of each layer's original neurons removed per iteration (at least one neuron).
    alpha, beta: weights of the width and entropy terms of :func:`impact_score`.
    t0: initial annealing temperature (see :func:`temperature`); 0 gives a near-greedy walk.
    seed: seed of the numpy Generator driving the annealing.
    """

    target: float = 0.5
    step: float = 0.025
    alpha: float = 0.75
    beta: float = 0.25
    t0: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.target < 1.0:
            raise ValueError(f"PaodingConfig.target must be in [0, 1), got {self.target}")
        if not 0.0 < self.step <= 1.0:
            raise ValueError(f"PaodingConfig.step must be in (0, 1], got {self.step}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"PaodingConfig.alpha and beta must be >= 0, got {self.alpha}, {self.beta}")
        if self.t0 < 0:
            raise ValueError(f"PaodingConfig.t0 must be >= 0, got {self.t0}")


def pair_saliency(w: Tensor, b: Tensor | None, a: Tensor) -> Tensor:
    """Srinivas-Babu pair saliency (``criteria.saliency.pair_saliency``) of the ``n`` neurons of one dense layer.

    ``w`` (n, in): incoming weights; ``b`` (n,): biases (None -> 0); ``a`` (n, out): outgoing weights
    (row i = column i of the next layer's weight). ``S[i, j]`` is the cost of merging j (removed) into
    i (kept); the diagonal is +inf. Lower is safer to merge.
    """
    n = w.shape[0]
    if a.shape[0] != n:
        raise ValueError(f"pair_saliency: w has {n} neurons but a has {a.shape[0]} rows")
    b = torch.zeros(n, dtype=_DTYPE) if b is None else b.detach().to(_DTYPE).reshape(n)
    return merge_pair_saliency(w, b, a.detach().to(_DTYPE).norm(dim=1))


# --------------------------------------------------------------------------- annealing


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def impact_score(lo: np.ndarray, hi: np.ndarray, alpha: float = 0.75, beta: float = 0.25) -> float:
    """``alpha * sigmoid(total width) + beta * sigmoid(entropy of the normalized widths)`` of output intervals."""
    widths = np.maximum(np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64), 0.0)
    total = float(widths.sum())
    entropy = 0.0
    if total > 0:
        p = widths[widths > 0] / total
        entropy = float(-(p * np.log(p)).sum())
    return alpha * _sigmoid(total) + beta * _sigmoid(entropy)


def temperature(filled: int, needed: int, t0: float) -> float:
    """Annealing temperature once ``filled`` of ``needed`` pairs are accepted: ``t0 (1 - filled/needed) + 1e-3``.

    Strictly decreasing in ``filled`` for ``t0 > 0`` (the original code ran it upward).
    """
    if needed <= 0:
        return _TEMPERATURE_FLOOR
    frac = min(max(filled / needed, 0.0), 1.0)
    return t0 * (1.0 - frac) + _TEMPERATURE_FLOOR


def select_pairs(
    saliency: Tensor,
    impact: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray | Tensor, np.ndarray | Tensor]],
    needed: int,
    *,
    alpha: float = 0.75,
    beta: float = 0.25,
    t0: float = 1.0,
    rng: np.random.Generator | None = None,
    chunk: int = 1024,
) -> list[tuple[int, int]]:
    """Pick ``needed`` merge pairs ``(kept, removed)`` by simulated annealing in ascending saliency.

    ``impact(kept, removed)`` returns the output-change intervals ``(lo, hi)`` (m, n_out) of the
    candidates; it is called lazily in chunks of the sorted list. A candidate is scored with
    :func:`impact_score` of the cumulative intervals of the pairs accepted so far plus its own.
    The first candidate scored (the least-saliency pair) is accepted outright; afterwards a pair
    scoring no worse than the last accepted score is accepted, a worse one with probability
    ``exp(-(score - last) / T)``, ``T = temperature(accepted, needed, t0)``. A neuron is removed at
    most once and a removed neuron is never a kept partner afterwards. If one pass leaves the quota
    unfilled, the remaining valid pairs are taken in saliency order. Merges must be applied in the
    returned order (a kept partner may itself be removed by a later pair).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    n = saliency.shape[0]
    if not 0 <= needed <= n - 1:
        raise ValueError(f"select_pairs: cannot remove {needed} of {n} neurons (at least one must stay)")
    if needed == 0:
        return []
    flat = saliency.detach().to(_DTYPE).reshape(-1).numpy()
    order = np.argsort(flat, kind="stable")
    order = order[np.isfinite(flat[order])]
    kept_idx, removed_idx = order // n, order % n

    own: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def own_interval(pos: int) -> tuple[np.ndarray, np.ndarray]:
        if pos not in own:
            stop = min(pos + chunk, len(order))
            lo, hi = impact(kept_idx[pos:stop], removed_idx[pos:stop])
            lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
            for m, p in enumerate(range(pos, stop)):
                own[p] = (lo[m], hi[m])
        return own[pos]

    removed: set[int] = set()
    pairs: list[tuple[int, int]] = []
    cum_lo = cum_hi = None
    last: float | None = None
    for pos in range(len(order)):
        a, b = int(kept_idx[pos]), int(removed_idx[pos])
        if a in removed or b in removed:
            continue
        lo, hi = own_interval(pos)
        if cum_lo is not None:
            lo, hi = cum_lo + lo, cum_hi + hi
        score = impact_score(lo, hi, alpha, beta)
        if last is None or score <= last:
            accept = True
        else:
            accept = rng.random() < math.exp(-(score - last) / temperature(len(pairs), needed, t0))
        if accept:
            pairs.append((a, b))
            removed.add(b)
            cum_lo, cum_hi, last = lo, hi, score
            if len(pairs) == needed:
                return pairs
    for pos in range(len(order)):  # quota not filled in one pass: fill greedily in saliency order
        a, b = int(kept_idx[pos]), int(removed_idx[pos])
        if a in removed or b in removed:
            continue
        pairs.append((a, b))
        removed.add(b)
        if len(pairs) == needed:
            break
    return pairs


def _quota(fraction: float, n: int) -> int:
    """Neurons out of ``n`` that ``fraction`` names (round half up), at most ``n - 1``.

    Paoding's own rounding, not ``select.removed_count``'s floor: the published method rounds to nearest,
    and switching would change which widths its bisection lands on."""
    return min(n - 1, int(math.floor(fraction * n + 0.5)))


def _pruned_widths(widths: list[int], target: float) -> list[int]:
    """Hidden widths after pruning ``target`` of each (the output width is kept)."""
    return [n - _quota(target, n) for n in widths[:-1]] + [widths[-1]]


def _cost(in_features: int, widths: list[int], biased: list[bool]) -> int:
    """``in*out`` per Linear plus ``out`` where ``biased``: parameters, or MACs with every entry True."""
    total, fan_in = 0, in_features
    for width, bias in zip(widths, biased, strict=True):
        total += fan_in * width + (width if bias else 0)
        fan_in = width
    return total


def paoding_prune(model: nn.Module, spec: InputSpec, config: PaodingConfig) -> tuple[nn.Module, dict[str, list[int]]]:
    """Prune the hidden neurons of a dense ReLU chain by Paoding's progressive pair merging.

    Returns a new, physically smaller model (a deep copy; ``model`` is untouched): each hidden
    Linear keeps ``n - round(target * n)`` neurons (at least one), the next Linear's inputs shrink
    accordingly and carry the merged outgoing weights. The second value maps each hidden Linear's
    name (as in ``model.named_children()``) to the kept indices of its original output neurons.
    """
    chain = dense_chain(model, spec)
    names = [name for name, _ in chain]
    with torch.no_grad():
        weights = [m.weight.detach().to("cpu", _DTYPE).clone() for _, m in chain]
        biases = [None if m.bias is None else m.bias.detach().to("cpu", _DTYPE).clone() for _, m in chain]
    box = input_intervals(spec, weights[0].shape[1])
    hidden = len(chain) - 1
    original = [weights[k].shape[0] for k in range(hidden)]
    goal = [_quota(config.target, n) for n in original]
    per_step = [max(1, int(math.floor(config.step * n + 0.5))) for n in original]
    done = [0] * hidden
    kept = [list(range(n)) for n in original]
    rng = np.random.default_rng(config.seed)

    with torch.no_grad():
        while any(done[k] < goal[k] for k in range(hidden)):
            for k in range(hidden):
                needed = min(per_step[k], goal[k] - done[k])
                if needed <= 0:
                    continue
                pre = chain_intervals(weights, biases, *box)
                post_lo, post_hi = interval_relu(*pre[k])
                w_next = weights[k + 1]
                downstream = [(pre[j - 1][1], weights[j]) for j in range(k + 2, len(weights))]
                saliency = pair_saliency(weights[k], biases[k], w_next.T)

                def impact(a, b, post_lo=post_lo, post_hi=post_hi, w_next=w_next, downstream=downstream):
                    lo, hi = merge_impact(a, b, post_lo, post_hi, w_next, downstream)
                    return lo.numpy(), hi.numpy()

                pairs = select_pairs(
                    saliency, impact, needed, alpha=config.alpha, beta=config.beta, t0=config.t0, rng=rng
                )
                for a, b in pairs:  # in acceptance order: a kept partner may be removed later
                    w_next[:, a] += w_next[:, b]
                removed = {b for _, b in pairs}
                stay = [i for i in range(weights[k].shape[0]) if i not in removed]
                index = torch.tensor(stay, dtype=torch.long)
                weights[k] = weights[k][index]
                if biases[k] is not None:
                    biases[k] = biases[k][index]
                weights[k + 1] = w_next[:, index]
                kept[k] = [kept[k][i] for i in stay]
                done[k] += len(pairs)

    pruned = copy.deepcopy(model)
    for (name, old), w, b in zip(chain, weights, biases, strict=True):
        param = old.weight
        # skip_init: no random initialisation, so the caller's RNG stream is untouched (the weights are copied)
        layer = nn.utils.skip_init(
            nn.Linear, w.shape[1], w.shape[0], bias=b is not None, device=param.device, dtype=param.dtype
        )
        with torch.no_grad():
            layer.weight.copy_(w.to(param.dtype))
            if b is not None:
                layer.bias.copy_(b.to(param.dtype))
        layer.weight.requires_grad_(param.requires_grad)
        if b is not None:
            layer.bias.requires_grad_(old.bias.requires_grad)
        layer.train(old.training)
        parent, _, child = name.rpartition(".")
        setattr(pruned.get_submodule(parent), child, layer)
    return pruned, {names[k]: kept[k] for k in range(hidden)}


def _prune_to_budget(
    model: nn.Module, spec: InputSpec, keep_fraction: float, seed: int, what: str, kw: dict
) -> tuple[nn.Module, dict[str, list[int]], PaodingConfig]:
    if "target" in kw:
        raise TypeError(f"paoding_prune_to_{what}: 'target' is chosen by the search; do not pass it")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"paoding_prune_to_{what}: keep fraction must be in (0, 1], got {keep_fraction}")
    chain = dense_chain(model, spec)
    in_features = chain[0][1].in_features
    widths = [m.out_features for _, m in chain]
    biased = [what == "macs" or m.bias is not None for _, m in chain]
    original = _cost(in_features, widths, biased)
    budget = keep_fraction * original

    def cost(target: float) -> int:
        return _cost(in_features, _pruned_widths(widths, target), biased)

    hi_target = math.nextafter(1.0, 0.0)
    if cost(hi_target) > budget:
        raise ValueError(
            f"paoding_prune_to_{what}: {keep_fraction:.4f} of the {what} is out of reach; pruning every hidden "
            f"layer to one neuron keeps {cost(hi_target) / original:.4f}"
        )
    # widths (hence the cost) depend on target alone and fall monotonically: bisect on the count,
    # keeping cost(hi) <= budget < cost(lo), then prune once at the smallest feasible target.
    lo_target = 0.0
    if cost(lo_target) <= budget:
        hi_target = 0.0
    else:
        for _ in range(64):
            mid = (lo_target + hi_target) / 2
            if cost(mid) <= budget:
                hi_target = mid
            else:
                lo_target = mid
    config = PaodingConfig(target=hi_target, seed=seed, **kw)
    pruned, kept = paoding_prune(model, spec, config)
    landed = _cost(in_features, [m.out_features for _, m in dense_chain(pruned, spec)], biased) / original
    if landed < keep_fraction - 0.02:
        warnings.warn(
            f"paoding_prune_to_{what}: asked for {keep_fraction:.4f} of the {what}, the nearest width step "
            f"below gives {landed:.4f}",
            stacklevel=3,
        )
    return pruned, kept, config


def paoding_prune_to_params(
    model: nn.Module, spec: InputSpec, keep_fraction_params: float, seed: int = 0, **kw
) -> tuple[nn.Module, dict[str, list[int]], PaodingConfig]:
    """Paoding-prune to at most ``keep_fraction_params`` of the parameters, as close below as the widths allow.

    ``target`` is found by bisection (the pruned widths, hence the parameter count, depend on it
    alone); ``kw`` are the other :class:`PaodingConfig` fields. Returns the pruned model, the kept
    indices and the config used. Warns if the result lands more than 0.02 below the request.
    """
    return _prune_to_budget(model, spec, keep_fraction_params, seed, "params", kw)


def paoding_prune_to_macs(
    model: nn.Module, spec: InputSpec, keep_fraction_macs: float, seed: int = 0, **kw
) -> tuple[nn.Module, dict[str, list[int]], PaodingConfig]:
    """As :func:`paoding_prune_to_params`, with MACs counted as ``in*out + out`` per Linear."""
    return _prune_to_budget(model, spec, keep_fraction_macs, seed, "macs", kw)
