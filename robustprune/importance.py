"""Channel importance inside a coupled group: which channels a candidate should drop.

Every criterion gives one score per group channel, HIGHER = MORE important (kept
first). Scores are comparable within a group only; a search decides how many
channels each group loses and ``select_keep`` picks which.

Criteria (``CRITERIA``):

``l1``, ``l2``
    torch-pruning's ``MagnitudeImportance(p=1 | 2)`` with its defaults: the p-th
    power of the weight magnitudes of the channel in every coupled layer (producer
    rows, consumer input slices, BatchNorm scales), averaged over the layers
    (``group_reduction="mean"``) and divided by the group mean (``normalizer="mean"``).
``bn_scale``
    torch-pruning's ``BNScaleImportance``: mean |gamma| over the group's BatchNorms
    (network slimming). Groups without a BatchNorm fall back to ``l1``.
``fpgm``
    torch-pruning's ``FPGMImportance`` (geometric median): channels close to all
    others are redundant. Note that torch-pruning measures the distances between
    the element-wise *magnitudes* |w|^2 of the rows, not the signed rows.
``random``
    Uniform scores from a ``torch.Generator`` seeded by ``(seed, group index)``:
    reproducible across runs and processes, different for different seeds.
``merge_saliency``
    Data-free pairwise saliency of Srinivas & Babu (2015), as used by Paoding. See
    ``_merge_saliency``. Lower = cheaper to remove given its best partner.
``taylor_synthetic``
    First-order Taylor estimate of the loss change when the channel is zeroed,
    on caller-supplied NORMALIZED model inputs with the model's own predictions as
    labels. See ``_taylor_all``.
``taylor_l1``
    The sum of each channel's within-group rank under ``taylor_synthetic`` and under
    ``l1`` (ranks scaled to [0, 1]): a channel goes first when both call it
    unimportant. Needs ``inputs``. Why: Taylor candidates keep robustness, l1 ones clean
    accuracy, and where the two disagree the combination keeps both (resnet20 at 70%
    MACs, uniform, validation: 90.0% clean / 64.4% PGD vs 88.8 / 62.0 for Taylor and
    89.7 / 58.3 for l1; results/criterion_choice.md).

If a torch-pruning importance returns None or raises for a group (e.g. ``bn_scale``
on a group without BatchNorm), the group falls back to ``l1`` with a warning that names
the criterion, the group and the reason; if ``l1`` fails too, a RuntimeError says why.

The helpers ``_effective_incoming``, ``_incoming_vectors`` and ``_consumer_columns``
are shared with ``robustprune.compensate`` (neuron merging).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from robustprune._modes import eval_mode
from robustprune.structure.space import ChannelGroup, PruneSpace, UnsupportedModelError

CRITERIA = ("l1", "l2", "bn_scale", "fpgm", "random", "merge_saliency", "taylor_synthetic", "taylor_l1")
_NEEDS_INPUTS = ("taylor_synthetic", "taylor_l1")

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)  # affine per channel
_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_MASKABLE_TYPES = _LAYER_TYPES + _NORM_TYPES
_TAYLOR_BATCH = 256


# -- public API ---------------------------------------------------------------------------------------
def channel_scores(
    space: PruneSpace, group_name: str, criterion: str, *, inputs: torch.Tensor | None = None, seed: int = 0
) -> torch.Tensor:
    """Importance of each channel of group ``group_name``: float tensor of shape (group.size,), on the CPU.

    HIGHER = MORE important. ``inputs`` (NORMALIZED model inputs, shape (N, *spec.shape))
    is required by ``taylor_synthetic`` and ignored by the data-free criteria. The
    model is never changed (weights, buffers, ``.grad`` and train/eval mode).
    """
    _check_criterion(criterion)
    index = _group_index(space, group_name)
    if criterion in _NEEDS_INPUTS:
        return _input_scores(space, inputs, [index], criterion)[group_name]
    return _data_free_scores(space, index, criterion, seed)


def all_scores(
    space: PruneSpace, criterion: str, *, inputs: torch.Tensor | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``channel_scores`` for every group, keyed by group name (one pass over ``inputs`` for Taylor)."""
    _check_criterion(criterion)
    if criterion in _NEEDS_INPUTS:
        return _input_scores(space, inputs, list(range(len(space.groups))), criterion)
    return {g.name: _data_free_scores(space, i, criterion, seed, stacklevel=4) for i, g in enumerate(space.groups)}


def taylor_scores(
    space: PruneSpace, inputs: torch.Tensor, *, targets: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Taylor importance of every group's channels on ``inputs`` (NORMALIZED), against ``targets``
    (class indices; default: the model's own predictions). Run it inside ``masked(...)`` to score
    the channels of an already pruned model."""
    return _taylor_all(space, inputs, list(range(len(space.groups))), targets)


def removed_last(
    scores: Mapping[str, torch.Tensor], candidate: Mapping[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """``scores`` with every channel the candidate removed set below all kept ones (-1; the
    criteria here are >= 0), so ``select_keep`` with amounts at least as large as the
    candidate's removes those channels first: the next candidate is nested in this one."""
    out = {}
    for name, s in scores.items():
        s = torch.as_tensor(s).detach().flatten().to("cpu", torch.float64).clone()
        kept = candidate.get(name)
        if kept is not None:
            removed = torch.ones(len(s), dtype=torch.bool)
            removed[list(kept)] = False
            s[removed] = -1.0
        out[name] = s
    return out


def _input_scores(space: PruneSpace, inputs, indices: list[int], criterion: str) -> dict[str, torch.Tensor]:
    taylor = _taylor_all(space, inputs, indices)
    if criterion == "taylor_synthetic":
        return taylor
    l1 = {name: _data_free_scores(space, _group_index(space, name), "l1", 0) for name in taylor}
    return rank_sum(taylor, l1)


def rank_sum(*criteria: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group, the sum of each channel's rank (scaled to [0, 1]) under every given criterion's scores."""
    return {name: sum(_unit_ranks(scores[name]) for scores in criteria) for name in criteria[0]}


def _unit_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each score within its tensor, scaled to [0, 1] (ties keep index order)."""
    scores = torch.as_tensor(scores).detach().flatten().to("cpu", torch.float64)
    ranks = torch.empty_like(scores)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(len(scores), dtype=torch.float64)
    return ranks / max(1, len(scores) - 1)


def select_keep(
    space: PruneSpace,
    amounts: Mapping[str, float],
    criterion: str = "l1",
    *,
    inputs: torch.Tensor | None = None,
    seed: int = 0,
    scores: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Kept channel indices (sorted) per group named in ``amounts``; other groups are omitted (kept whole).

    ``amounts[name]`` in [0, 1) is the fraction of the group's channels REMOVED:
    ``floor(amount * size)`` channels (a 1e-9 slack absorbs float error, so 0.3 of 10
    removes 3), but at least one channel is always kept. The highest-scoring channels
    are kept; ties go to the lower index. ``scores`` may hold precomputed scores (e.g.
    from ``all_scores``) for some or all groups; the rest are computed with ``criterion``.
    """
    _check_criterion(criterion)
    for name, amount in amounts.items():
        space.group(name)  # KeyError for unknown groups
        try:
            ok = 0.0 <= float(amount) < 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"amount for group {name!r} must be in [0, 1), got {amount!r}")
    scores = dict(scores or {})
    missing = [n for n in amounts if n not in scores]
    if criterion in _NEEDS_INPUTS and missing:
        scores.update(_input_scores(space, inputs, [_group_index(space, n) for n in missing], criterion))
    keep: dict[str, tuple[int, ...]] = {}
    for name, amount in amounts.items():
        size = space.group(name).size
        s = scores[name] if name in scores else channel_scores(space, name, criterion, inputs=inputs, seed=seed)
        s = torch.as_tensor(s).detach().flatten().to("cpu", torch.float64)
        if s.numel() != size:
            raise ValueError(f"scores for group {name!r} have {s.numel()} entries, the group has {size} channels")
        s = torch.nan_to_num(s, nan=-math.inf)
        n_remove = min(math.floor(float(amount) * size + 1e-9), size - 1)
        keep[name] = _top(s, size - n_remove, space.group(name).blocks)
    return keep


def _top(scores: torch.Tensor, n_keep: int, blocks: int) -> tuple[int, ...]:
    """The ``n_keep`` best channels (sorted), or with GroupNorm ``blocks`` the same number of best channels
    from each block, rounded down (at least one per block), so the group structure stays valid."""
    if blocks == 1:
        return tuple(sorted(int(i) for i in torch.argsort(scores, descending=True, stable=True)[:n_keep]))
    width = scores.numel() // blocks
    per_block = max(1, n_keep // blocks)
    keep = []
    for b in range(blocks):
        order = torch.argsort(scores[b * width : (b + 1) * width], descending=True, stable=True)
        keep += [b * width + int(i) for i in order[:per_block]]
    return tuple(sorted(keep))


# -- data-free criteria -------------------------------------------------------------------------------
def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")


def _group_index(space: PruneSpace, name: str) -> int:
    space.group(name)  # KeyError naming the group
    return space._index[name]


def _tp_importance(criterion: str):
    if criterion == "l1":
        return tp.importance.MagnitudeImportance(p=1, normalizer=None)
    if criterion == "l2":
        return tp.importance.MagnitudeImportance(p=2, normalizer=None)
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance(normalizer=None)
    if criterion == "fpgm":
        return tp.importance.FPGMImportance(normalizer=None)
    raise AssertionError(criterion)


def _tp_scores(space: PruneSpace, index: int, criterion: str) -> tuple[torch.Tensor | None, str]:
    """torch-pruning's score, normalised by the group mean as its default ``normalizer="mean"`` does,
    or (None, why it could not score the group).

    The normalisation is done here so that an all-zero group gives zeros, not 0/0 = NaN.
    """
    group = space.groups[index]
    root, handler = space._roots[index]
    try:
        tp_group = space.graph.get_pruning_group(root, handler, list(range(group.size)))
        scores = _tp_importance(criterion)(tp_group)
    except Exception as exc:  # noqa: BLE001 - a criterion that does not apply falls back to l1 (with a warning)
        return None, f"{type(exc).__name__}: {exc}"
    if scores is None:
        return None, "it has no BatchNorm" if criterion == "bn_scale" else "torch-pruning returned no scores"
    if scores.numel() != group.size:
        return None, f"torch-pruning returned {scores.numel()} scores for {group.size} channels"
    scores = scores.detach().to("cpu", torch.float32)
    if not torch.isfinite(scores).all():
        return None, "the scores are not finite"
    mean = scores.mean()
    return (scores / mean if mean > 0 else scores), ""


def _data_free_scores(space: PruneSpace, index: int, criterion: str, seed: int, stacklevel: int = 3) -> torch.Tensor:
    group = space.groups[index]
    if criterion == "random":
        gen = torch.Generator().manual_seed(_stable_seed(seed, index))
        return torch.rand(group.size, generator=gen)
    if criterion == "merge_saliency":
        return _merge_saliency(space, index)
    scores, why = _tp_scores(space, index, criterion)
    if scores is None and criterion != "l1":
        message = f"importance {criterion!r} cannot score group {group.name!r} ({why}); using 'l1' for it"
        warnings.warn(message, stacklevel=stacklevel)  # points at the caller of the public function
        scores, why = _tp_scores(space, index, "l1")
    if scores is None:
        raise RuntimeError(f"torch-pruning could not score group {group.name!r} with l1: {why}")
    return scores


def _stable_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"robustprune-random:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _merge_saliency(space: PruneSpace, index: int) -> torch.Tensor:
    """Pairwise merge saliency (Srinivas & Babu 2015; Paoding), data-free.

    For channels i (the kept partner) and j (the removed one)::

        S(i, j) = (|(b_i - b_j) / (b_i + b_j)| + ||w_i - w_j||_2) * ||a_j||_2

    with w the effective incoming weights (rows of every conv/linear producer of the
    group, concatenated, BatchNorm folded in, see ``_effective_incoming``), b the
    effective bias and a_j the outgoing weights of j (all consumer input slices).
    When |b_i + b_j| < 1e-12 the bias term is 0 if b_i == b_j, else 1. The score of
    j is min over i != j of S(i, j): the cost of removing j when its best partner
    stays. The partner is not required to be kept by a candidate (scores are
    candidate-independent). Lower = safer to remove = less important, so the score
    can be used as-is with "higher = keep". A group of one channel scores 0.
    """
    group = space.groups[index]
    if group.size < 2:
        return torch.zeros(group.size)
    w, b = _effective_incoming(space, index)
    a = torch.zeros(group.size, dtype=torch.float64)
    for _name, module, cols in _consumer_columns(space, index):
        weight = module.weight.detach().to("cpu", torch.float64)
        for j, c in enumerate(cols):
            a[j] += weight[:, c].pow(2).sum()
    a = a.sqrt()
    dw = torch.cdist(w, w, compute_mode="donot_use_mm_for_euclid_dist")  # [i, j]
    diff = b[:, None] - b[None, :]
    total = b[:, None] + b[None, :]
    tiny = total.abs() < 1e-12
    ratio = (diff / torch.where(tiny, torch.ones_like(total), total)).abs()
    bias_term = torch.where(tiny, (diff != 0).to(torch.float64), ratio)
    s = (bias_term + dw) * a[None, :]
    s.fill_diagonal_(math.inf)
    return s.min(dim=0).values.to(torch.float32)


# -- incoming / outgoing weights of a group -----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Unit:
    """One producer of a group's channels: a conv/linear member and the BatchNorm it feeds, or a lone BN."""

    layer: nn.Module | None
    layer_map: tuple[int, ...] | None
    norm: nn.Module | None
    norm_map: tuple[int, ...] | None
    terminal: bool  # its output reaches no other member of the group (it is what consumers read)


def _terminal_members(space: PruneSpace, group: ChannelGroup) -> set[str]:
    """Members whose output does not flow (through element-wise ops only) into another member of the group.

    conv -> BN: the BN is terminal, the conv not. A residual add: every summed BN.
    An inverted residual (1x1 conv -> BN -> ReLU6 -> depthwise -> BN): only the last BN.
    """
    modules = dict(space.model.named_modules())
    names = {m: n for n, m in modules.items()}
    member_set = set(group.members)
    terminal = set()
    for name in group.members:
        node = space.graph.module2node.get(modules[name])
        if node is None:
            terminal.add(name)
            continue
        stack, seen, reaches = list(node.outputs), set(), False
        while stack:
            nd = stack.pop()
            if id(nd) in seen:
                continue
            seen.add(id(nd))
            mod = nd.module
            if isinstance(mod, _MASKABLE_TYPES):
                if names.get(mod) in member_set:
                    reaches = True
                    break
                continue  # a consumer: the channel stops here
            stack.extend(nd.outputs)
        if not reaches:
            terminal.add(name)
    return terminal


def _units(space: PruneSpace, index: int) -> list[_Unit]:
    group = space.groups[index]
    modules = dict(space.model.named_modules())
    maps = dict(zip(group.members, group.channel_maps, strict=True))
    terminal = _terminal_members(space, group)
    paired: dict[str, str] = {}  # layer member -> the BN member that reads its output directly
    for name in group.members:
        module = modules[name]
        if not isinstance(module, _NORM_TYPES):
            continue
        node = space.graph.module2node.get(module)
        inputs = node.inputs if node is not None else []
        if len(inputs) == 1 and isinstance(inputs[0].module, _LAYER_TYPES):
            source = next((n for n in group.members if modules[n] is inputs[0].module), None)
            if source is not None and source not in paired:
                paired[source] = name
    bn_of_layer = set(paired.values())
    units = []
    for name in group.members:
        module = modules[name]
        if isinstance(module, _LAYER_TYPES):
            norm = paired.get(name)
            last = norm or name
            norm_module, norm_map = (modules[norm], maps[norm]) if norm else (None, None)
            units.append(_Unit(module, maps[name], norm_module, norm_map, last in terminal))
        elif isinstance(module, _NORM_TYPES) and name not in bn_of_layer:
            units.append(_Unit(None, None, module, maps[name], name in terminal))
    return units


def _bn_affine(norm: nn.Module, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm: y = scale * x + shift."""
    n = len(idx)
    running_mean, running_var = getattr(norm, "running_mean", None), getattr(norm, "running_var", None)
    mean = running_mean[idx] if running_mean is not None else torch.zeros(n)  # layer/group norm: affine only
    var = running_var[idx] if running_var is not None else torch.ones(n)
    mean, var = mean.detach().to("cpu", torch.float64), var.detach().to("cpu", torch.float64)
    gamma = norm.weight.detach()[idx].to("cpu", torch.float64) if norm.weight is not None else torch.ones(n)
    beta = norm.bias.detach()[idx].to("cpu", torch.float64) if norm.bias is not None else torch.zeros(n)
    scale = gamma.to(torch.float64) / torch.sqrt(var + norm.eps)
    return scale, beta.to(torch.float64) - mean * scale


def _unit_effective(unit: _Unit, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Effective incoming (rows (size, fan_in), bias (size,)) of one unit, in float64 on the CPU.

    conv/linear followed by BN: w * gamma / sqrt(var + eps) and beta + (b - mean) * gamma / sqrt(var + eps).
    A lone BN (its input is not a member layer): rows are its scale (one column), bias its shift.
    """
    if unit.layer is not None:
        idx = list(unit.layer_map)
        w = unit.layer.weight.detach()[idx].flatten(1).to("cpu", torch.float64)
        b = (
            unit.layer.bias.detach()[idx].to("cpu", torch.float64)
            if unit.layer.bias is not None
            else torch.zeros(size, dtype=torch.float64)
        )
        if unit.norm is not None:
            scale, shift = _bn_affine(unit.norm, list(unit.norm_map))
            w = w * scale[:, None]
            b = b * scale + shift
        return w, b
    scale, shift = _bn_affine(unit.norm, list(unit.norm_map))
    return scale[:, None], shift


def _effective_incoming(space: PruneSpace, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(w (size, D), b (size,)): effective incoming weights of every unit concatenated, and the bias.

    b is the sum of the effective biases of the *terminal* units (exact for residual adds,
    where those outputs are summed); if no unit is terminal, of all units.
    """
    size = space.groups[index].size
    units = _units(space, index)
    parts, bias_terminal, bias_all = [], torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    for unit in units:
        w, b = _unit_effective(unit, size)
        parts.append(w)
        bias_all += b
        if unit.terminal:
            bias_terminal += b
    w = torch.cat(parts, dim=1) if parts else torch.zeros(size, 0, dtype=torch.float64)
    return w, bias_terminal if any(u.terminal for u in units) else bias_all


def _incoming_vectors(space: PruneSpace, index: int) -> torch.Tensor:
    """(size, D + units) float64: per unit [effective rows, effective bias], concatenated over units."""
    size = space.groups[index].size
    parts = []
    for unit in _units(space, index):
        w, b = _unit_effective(unit, size)
        parts += [w, b[:, None]]
    return torch.cat(parts, dim=1) if parts else torch.zeros(size, 0, dtype=torch.float64)


def _consumer_columns(space: PruneSpace, index: int) -> list[tuple[str, nn.Module, list[list[int]]]]:
    """Per consumer layer (not a member): (name, module, cols) with cols[j] the input features of channel j.

    The mapping comes from torch-pruning's root indices, so a Linear after a flatten
    gets the whole block of features of each channel.
    """
    group = space.groups[index]
    modules = dict(space.model.named_modules())
    names = {m: n for n, m in modules.items()}
    root, handler = space._roots[index]
    tp_group = space.graph.get_pruning_group(root, handler, list(range(group.size)))
    members = set(group.members)
    out: dict[str, tuple[nn.Module, list[list[int]]]] = {}
    for i, (dep, idxs) in enumerate(tp_group):
        module = dep.target.module
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is None or name in members or "out_channels" in dep.handler.__name__:
            continue
        if not isinstance(module, _LAYER_TYPES):
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) reads group {group.name!r} but is not a conv or linear"
            )
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d) and module.groups != 1:
            raise UnsupportedModelError(f"grouped conv '{name}' reads group {group.name!r}; not supported")
        cols = out.setdefault(name, (module, [[] for _ in range(group.size)]))[1]
        for idx, root_idx in zip(idxs, tp_group[i].root_idxs, strict=True):
            if root_idx is None:
                continue
            if int(idx) not in cols[int(root_idx)]:
                cols[int(root_idx)].append(int(idx))
    return [(name, module, cols) for name, (module, cols) in out.items()]


# -- Taylor on synthetic labels -----------------------------------------------------------------------
def _per_channel(t: torch.Tensor, axis: int) -> torch.Tensor:
    """(N, C): ``t`` summed over every axis but the batch and the channel ``axis`` (``channel_axis``)."""
    if t.dim() == 2:
        return t
    return t.movedim(axis, 1).flatten(2).sum(2)


def _taylor_all(
    space: PruneSpace, inputs: torch.Tensor | None, indices: list[int], targets: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """First-order Taylor importance with pseudo-labels (Molchanov et al. 2017), for the groups ``indices``.

    ``inputs``: NORMALIZED model inputs (what the model consumes, not pixels), shape
    (N, *spec.shape). Loss = cross-entropy of the logits against their own argmax
    (or against ``targets``, class indices of shape (N,), e.g. the original model's
    predictions when scoring an already pruned model), summed over the batch. Zeroing
    channel j changes the loss by about -sum(a * dL/da) over the channel's positions at
    the group's *terminal* members (the outputs consumers read: the last BN of a
    conv -> BN chain, every summed branch of a residual add). Score = mean over samples of |that sum|.

    The model runs in eval mode (restored afterwards); gradients are taken with
    ``torch.autograd.grad`` with respect to the activations only, so no parameter's
    ``.grad`` is touched (it is also restored defensively).
    """
    if inputs is None:
        raise ValueError("criterion 'taylor_synthetic' needs inputs (a tensor of NORMALIZED model inputs)")
    inputs = torch.as_tensor(inputs)
    if inputs.dim() != len(space.spec.shape) + 1 or tuple(inputs.shape[1:]) != tuple(space.spec.shape):
        expected = ", ".join(map(str, space.spec.shape))
        raise ValueError(f"inputs must have shape (N, {expected}), got {tuple(inputs.shape)}")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is empty")
    if targets is not None and tuple(targets.shape) != (inputs.shape[0],):
        raise ValueError(f"targets must have shape ({inputs.shape[0]},), got {tuple(targets.shape)}")
    model = space.model
    modules = dict(model.named_modules())
    # terminal member name -> list of (group index, channel map)
    watch: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    for gi in indices:
        group = space.groups[gi]
        maps = dict(zip(group.members, group.channel_maps, strict=True))
        for name in sorted(_terminal_members(space, group)):
            watch.setdefault(name, []).append((gi, maps[name]))
    totals = {gi: torch.zeros(space.groups[gi].size, dtype=torch.float64) for gi in indices}
    captured: dict[str, torch.Tensor] = {}

    def make_hook(name):
        def hook(_module, _inputs, output):
            captured[name] = output
            return output.clone()  # later in-place ops (ReLU(inplace=True)) must not rewrite the captured tensor

        return hook

    params = list(model.parameters())
    grads_before = {id(p): p.grad for p in params}
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    handles = [modules[name].register_forward_hook(make_hook(name)) for name in watch]
    try:
        with eval_mode(model), torch.enable_grad():
            for start in range(0, inputs.shape[0], _TAYLOR_BATCH):
                x = inputs[start : start + _TAYLOR_BATCH].detach().to(space.device, dtype)
                x.requires_grad_(True)
                captured.clear()
                logits = model(x)
                labels = (
                    logits.detach().argmax(dim=1)
                    if targets is None
                    else targets[start : start + _TAYLOR_BATCH].to(logits.device)
                )
                loss = F.cross_entropy(logits, labels, reduction="sum")
                names = [n for n in watch if n in captured]
                grads = torch.autograd.grad(loss, [captured[n] for n in names], allow_unused=True)
                signed: dict[int, torch.Tensor] = {}  # group index -> (batch, size) sum over terminal members
                for name, grad in zip(names, grads, strict=True):
                    if grad is None:
                        continue  # the member does not influence the loss
                    act = captured[name].detach()
                    contrib = _per_channel(act * grad, space.channel_axes[name]).to("cpu", torch.float64)
                    for gi, cmap in watch[name]:
                        if gi not in signed:
                            signed[gi] = torch.zeros(contrib.shape[0], len(cmap), dtype=torch.float64)
                        signed[gi] += contrib[:, list(cmap)]
                for gi, val in signed.items():
                    totals[gi] += val.abs().sum(0)
    finally:
        for h in handles:
            h.remove()
        for p in params:
            p.grad = grads_before[id(p)]
        captured.clear()
    n = inputs.shape[0]
    return {space.groups[gi].name: (totals[gi] / n).to(torch.float32) for gi in indices}
