"""The robustness part of an evaluation report: FGSM/PGD and corruption accuracy on fixed seeded subsets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from robustprune.data.corruptions import CORRUPTIONS, SEVERITIES
from robustprune.evaluate.attacks import robust_accuracy
from robustprune.evaluate.metrics import corruption_accuracy
from robustprune.spec import InputSpec


def has_corruptions(spec: InputSpec) -> bool:
    """Whether the corruption suite applies: it transforms (C, H, W) images."""
    return len(spec.shape) == 3


def robustness_metrics(
    model: nn.Module,
    spec: InputSpec,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    subset: torch.Tensor,
    settings,
    device,
    say: Callable[[str], None],
    tick: Callable[[], None],
) -> dict:
    """``robust_accuracy`` (FGSM and PGD at ``settings.eps``) on the first ``settings.n_attack`` indices of
    ``subset``, and ``corruption_accuracy_per`` / ``corruption_accuracy`` on its first ``settings.n_corruption``
    (None for inputs that are not images; ``settings``: an ``EvalSettings``). ``tick`` follows each attack and
    each corruption set."""
    x_att, y_att = pixels[subset[: settings.n_attack]], labels[subset[: settings.n_attack]]
    out: dict = {"robust_accuracy": {}}
    for attack in ("fgsm", "pgd"):
        say(f"{attack.upper()} robust accuracy, eps {settings.eps} of the pixel range, on {len(x_att)} inputs")
        out["robust_accuracy"][attack] = robust_accuracy(
            model, spec, x_att, y_att, attack=attack, eps=settings.eps, steps=settings.pgd_steps,
            seed=settings.seed, device=device,
        )  # fmt: skip
        tick()
    if not has_corruptions(spec):
        say(f"corruption accuracy: skipped, the corruptions are image transforms and inputs have shape {spec.shape}")
        out["corruption_accuracy_per"] = out["corruption_accuracy"] = None
        return out
    idx = subset[: settings.n_corruption]
    x_corr, y_corr = pixels[idx], labels[idx]
    say(f"corruption accuracy on {len(x_corr)} inputs x {len(CORRUPTIONS)} corruptions x {len(SEVERITIES)} severities")
    per = corruption_accuracy(model, spec, x_corr, y_corr, settings.seed, device, tick)
    out["corruption_accuracy_per"] = per
    out["corruption_accuracy"] = sum(per.values()) / len(per)
    return out
