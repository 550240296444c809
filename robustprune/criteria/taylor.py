"""First-order Taylor importance with pseudo-labels (Molchanov et al. 2017), on caller-supplied inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustprune._batching import grad_batch_size
from robustprune._modes import eval_mode
from robustprune.structure.analysis import terminal_members
from robustprune.structure.space import PruneSpace

#: Inputs per gradient pass at most; fewer for a model whose activations would not fit (``grad_batch_size``).
_TAYLOR_BATCH = 256


def taylor_scores(
    space: PruneSpace, inputs: torch.Tensor, *, targets: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Taylor importance of every group's channels on ``inputs`` (NORMALIZED), against ``targets``
    (class indices; default: the model's own predictions). Run it inside ``masked(...)`` to score
    the channels of an already pruned model."""
    return taylor_for_groups(space, inputs, list(range(len(space.groups))), targets)


def _per_channel(t: torch.Tensor, axis: int) -> torch.Tensor:
    """(N, C): ``t`` summed over every axis but the batch and the channel ``axis`` (``channel_axis``)."""
    if t.dim() == 2:
        return t
    return t.movedim(axis, 1).flatten(2).sum(2)


def taylor_for_groups(
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
        for name in sorted(terminal_members(space, group)):
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
    chunk = grad_batch_size(model, space.spec.shape, _TAYLOR_BATCH, space.device)
    handles = [modules[name].register_forward_hook(make_hook(name)) for name in watch]
    try:
        with eval_mode(model), torch.enable_grad():
            for start in range(0, inputs.shape[0], chunk):
                x = inputs[start : start + chunk].detach().to(space.device, dtype)
                x.requires_grad_(True)
                captured.clear()
                logits = model(x)
                labels = (
                    logits.detach().argmax(dim=1)
                    if targets is None
                    else targets[start : start + chunk].to(logits.device)
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
