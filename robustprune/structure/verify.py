"""The prune space checks itself: a masked candidate must compute what its exported model computes.

Masks are what the search scores and the export is what the user gets, so a group whose export
differs from its mask (a ``torch.split`` with sizes fixed in the model's code, a reshape that merges
the channel axis in an order torch-pruning's index mapping does not follow) would make every score
a lie. One random candidate that prunes every group finds such a model; a bisection over the groups
names the first group that breaks it, so the refusal can say what to exclude.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from robustprune.structure.layers import UnsupportedModelError

if TYPE_CHECKING:
    from robustprune.structure.space import Candidate, PruneSpace

#: largest |masked - exported| allowed, relative to the largest output (at least 1); CUDA convs
#: default to TF32, whose error depends on the (different) shapes of the masked and pruned convs
TOLERANCE = {"cpu": 1e-4, "cuda": 1e-2}

# torch-pruning's pass-through ops that explain a mismatch, with what they are in the model's code
_OP_HINTS = {
    "_SplitOp": "a torch.split/chunk whose sizes are fixed in the model's code",
    "_ReshapeOp": "a reshape that merges its channel axis with other axes",
    "_UnbindOp": "an unbind",
    "_SliceOp": "a slice of the channel axis (x[:, :k])",
}


def check_exact(space: PruneSpace, seed: int = 0) -> None:
    """Raise UnsupportedModelError naming a group whose exported model differs from its masked one."""
    g = torch.Generator().manual_seed(seed)
    candidate = {grp.name: _random_half(grp.size, grp.blocks, g) for grp in space.groups}
    x = torch.randn(2, *space.spec.shape, generator=g).to(space.device)
    if _mismatch(space, candidate, x) is None:
        return
    unpruned = _mismatch(space, {}, x)
    if unpruned is not None:  # no group is to blame: the model or its copy is not reproducible
        raise UnsupportedModelError(
            f"the model's exported copy differs from it with nothing pruned ({unpruned}); its eval-mode forward "
            "pass must be deterministic (no noise, no state changed by a call); verify=False skips this check"
        )
    names = [grp.name for grp in space.groups]
    lo, hi = 1, len(names)  # the shortest prefix of groups that fails ends with a culprit
    while lo < hi:
        mid = (lo + hi) // 2
        if _mismatch(space, {n: candidate[n] for n in names[:mid]}, x) is None:
            lo = mid + 1
        else:
            hi = mid
    name = names[lo - 1]
    reason = _mismatch(space, {name: candidate[name]}, x) or _mismatch(space, {n: candidate[n] for n in names[:lo]}, x)
    hints = _hints(space, space.index_of(name))
    raise UnsupportedModelError(
        f"pruning group '{name}' changes what the exported model computes ({reason})"
        + (f"; its channels pass through {', '.join(hints)}" if hints else "")
        + f"; exclude '{name}' to keep its channels whole"
    )


def _random_half(size: int, blocks: int, g: torch.Generator) -> tuple[int, ...]:
    """A random half of the channels, the same number in each block (at least one)."""
    width = size // blocks
    per_block = max(1, width // 2)
    keep: list[int] = []
    for b in range(blocks):
        keep += [b * width + int(i) for i in torch.randperm(width, generator=g)[:per_block]]
    return tuple(sorted(keep))


def _mismatch(space: PruneSpace, candidate: Candidate, x: torch.Tensor) -> str | None:
    """Why the exported model differs from the masked one on ``x``, or None where they agree."""
    from robustprune.structure.masks import masked  # masks and surgery import the space module
    from robustprune.structure.surgery import export

    with torch.no_grad(), masked(space, candidate):  # an error here is ours, not the model's: it propagates
        y_masked = space.model(x)
    try:
        with torch.no_grad():
            y_pruned = export(space, candidate)(x)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # a shape error in the exported model is the usual sign
        return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
    if y_masked.shape != y_pruned.shape:
        return "the outputs differ in shape"
    err = (y_masked - y_pruned).abs().max().item() / max(1.0, y_masked.abs().max().item())
    return (
        None if err <= TOLERANCE.get(x.device.type, TOLERANCE["cpu"]) else f"outputs differ by {err:.1e} of the largest"
    )


def _hints(space: PruneSpace, index: int) -> Sequence[str]:
    """The pass-through ops on the group's path that can explain a mismatch, in a phrase each."""
    root, handler = space.roots[index]
    size = space.groups[index].size
    full = space.graph.get_pruning_group(root, handler, list(range(size)))
    kinds = {type(dep.target.module).__name__ for dep, _ in full}
    return [hint for op, hint in _OP_HINTS.items() if op in kinds]
