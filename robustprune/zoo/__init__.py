"""Reference models trained on Fashion-MNIST, shipped with the package.

``load(name)`` returns ``(model, InputSpec)``. ``manifest()`` says how each checkpoint was
trained (the command, commit and seed) and with what test accuracy.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
from torch import nn

from robustprune.spec import InputSpec
from robustprune.zoo.architectures import ARCHITECTURES

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
MANIFEST_PATH = CHECKPOINT_DIR / "manifest.json"

#: Fashion-MNIST train-set pixel statistics; every zoo model consumes inputs normalized with them.
FASHION_MNIST_SPEC = InputSpec(shape=(1, 28, 28), mean=(0.2860,), std=(0.3530,), num_classes=10)


def names() -> list[str]:
    return list(ARCHITECTURES)


def build(name: str) -> nn.Module:
    """A freshly initialised (untrained) zoo architecture."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown zoo model {name!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]()


@cache
def manifest() -> dict:
    if not MANIFEST_PATH.is_file():
        return {}
    return json.loads(MANIFEST_PATH.read_text())


def checkpoint_path(name: str) -> Path:
    return CHECKPOINT_DIR / f"{name}.pt"


def load(name: str, device: str | torch.device = "cpu") -> tuple[nn.Module, InputSpec]:
    """The trained zoo model ``name`` in eval mode, and its InputSpec."""
    model = build(name)
    path = checkpoint_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"no trained checkpoint for zoo model {name!r} at {path} (the package ships one per zoo model; "
            "is this installation incomplete?)"
        )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), FASHION_MNIST_SPEC
