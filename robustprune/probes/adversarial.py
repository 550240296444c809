"""Adversarial probes: attacks on the *original* model, run on synthetic inputs.

Labels are the original model's own predictions, so no real label is ever needed.
"""

from __future__ import annotations

import torch
from torch import nn

from robustprune.evaluate.attacks import adversarial_examples
from robustprune.evaluate.metrics import predict_logits
from robustprune.spec import InputSpec


def adversarial_probes(
    model: nn.Module,
    spec: InputSpec,
    pixels: torch.Tensor,
    attack: str = "pgd",
    eps: float = 0.1,
    steps: int = 10,
    seed: int = 0,
    device=None,
) -> torch.Tensor:
    """L-inf adversarial versions of ``pixels`` (pixel space) against ``model``'s own predictions."""
    labels = predict_logits(model, spec, pixels, device=device).argmax(1)
    return adversarial_examples(
        model, spec, pixels, labels, attack=attack, eps=eps, steps=steps, seed=seed, device=device
    )
