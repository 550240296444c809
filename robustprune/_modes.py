"""Train/eval mode handling shared by every place that runs a caller's model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and give every submodule its own training flag back afterwards.

    ``model.train(was_training)`` is not enough: it forces one flag onto all submodules,
    silently un-freezing (say) BatchNorm layers a caller had put in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
