"""Data-free scores of a candidate against the original model, computed on a ProbeSet.

Every proxy is cheap, batched and has a documented range and direction:

=====================  ===========  ==========  ==========================================================
proxy                  range        better      meaning
=====================  ===========  ==========  ==========================================================
``fidelity``           [0, 1]       higher      top-1 agreement with the original on synthetic inputs
``kl``                 [0, inf)     lower       mean KL(original || candidate) of the softmax outputs
``robust_fidelity``    [0, 1]       higher      top-1 agreement on the original's adversarial inputs
``attack_robustness``  [0, 1]       higher      share of synthetic inputs whose (original) label survives
                                                a fresh FGSM/PGD attack on the candidate itself
``open_world``         [-1, 1]      lower       change in mean max-softmax on undesired inputs
                                                (candidate minus original; rising confidence is bad)
``feature``            [-1, 1]      higher      mean cosine similarity of penultimate features
``feature_sp``         [0, 1]       higher      1 - ||G_c - G_o||_F^2 / (4 b): similarity of the batch
                                                similarity matrices (row-normalised F F^T, Tung & Mori)
=====================  ===========  ==========  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from robustprune._batching import grad_batch_size
from robustprune._modes import eval_mode
from robustprune.evaluate.attacks import BATCH_SIZE as ATTACK_BATCH_SIZE
from robustprune.evaluate.attacks import adversarial_examples
from robustprune.probes.probeset import ProbeSet, penultimate_features
from robustprune.structure.masks import masked
from robustprune.structure.space import Candidate, PruneSpace

PROXIES = {
    "fidelity": ((0.0, 1.0), "max"),
    "kl": ((0.0, float("inf")), "min"),
    "robust_fidelity": ((0.0, 1.0), "max"),
    "attack_robustness": ((0.0, 1.0), "max"),
    "open_world": ((-1.0, 1.0), "min"),
    "feature": ((-1.0, 1.0), "max"),
    "feature_sp": ((0.0, 1.0), "max"),
}


def fidelity(candidate_logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    return (candidate_logits.argmax(1) == reference_logits.argmax(1)).float().mean().item()


def kl_divergence(reference_logits: torch.Tensor, candidate_logits: torch.Tensor) -> float:
    ref = F.log_softmax(reference_logits.double(), 1)
    cand = F.log_softmax(candidate_logits.double(), 1)
    return F.kl_div(cand, ref, log_target=True, reduction="batchmean").clamp_min(0).item()


def open_world_delta(reference_logits: torch.Tensor, candidate_logits: torch.Tensor) -> float:
    conf = lambda logits: F.softmax(logits.double(), 1).max(1).values.mean()  # noqa: E731
    return (conf(candidate_logits) - conf(reference_logits)).item()


def feature_cosine(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    return F.cosine_similarity(candidate.double(), reference.double(), dim=1, eps=1e-12).mean().item()


def similarity_preservation(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """1 - ||G_c - G_o||_F^2 / (4 b) with G = row-normalised F F^T (each row has norm 1, so the
    squared distance is at most 4 b and the score lies in [0, 1])."""
    gram = lambda f: F.normalize(f.double() @ f.double().T, dim=1)  # noqa: E731
    b = candidate.shape[0]
    return 1.0 - ((gram(candidate) - gram(reference)) ** 2).sum().item() / (4 * b)


class CandidateModule(nn.Module):
    """The space's model with parameter/buffer overrides, as a module an attack can differentiate."""

    def __init__(self, model: nn.Module, overrides: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.overrides = dict(overrides)

    def forward(self, x):
        return functional_call(self.model, self.overrides, (x,)) if self.overrides else self.model(x)


def attack_robustness(
    module: nn.Module,
    probes: ProbeSet,
    attack: str = "fgsm",
    n: int = 128,
    steps: int = 10,
    batch_size: int | None = None,
) -> float:
    """Share of the first ``n`` synthetic probes still given the original's label after an attack on ``module``
    (``batch_size``: inputs per gradient pass, as in ``adversarial_examples``)."""
    pixels = probes.pixels["synthetic"][:n]
    labels = probes.logits["synthetic"][:n].argmax(1)
    options = {"eps": probes.config.eps, "steps": steps, "seed": probes.config.seed, "batch_size": batch_size}
    x_adv = adversarial_examples(module, probes.spec, pixels, labels, attack=attack, **options)
    with torch.no_grad():  # the attack hands back CPU tensors; the probes are on the model's device
        return (module(probes.spec.normalize(x_adv.to(pixels.device))).argmax(1) == labels).float().mean().item()


def output_proxies(probes: ProbeSet, logits: torch.Tensor, features: torch.Tensor | None) -> dict[str, float]:
    """The proxies of a candidate's outputs on ``probes``; the feature proxies only when ``features`` are given."""
    sl = probes.slices()
    syn = logits[sl["synthetic"]]
    scores = {
        "fidelity": fidelity(syn, probes.logits["synthetic"]),
        "kl": kl_divergence(probes.logits["synthetic"], syn),
        "robust_fidelity": fidelity(logits[sl["adversarial"]], probes.logits["adversarial"]),
        "open_world": open_world_delta(probes.logits["undesired"], logits[sl["undesired"]]),
    }
    if features is not None:
        scores["feature"] = feature_cosine(features[sl["synthetic"]], probes.features)
        scores["feature_sp"] = similarity_preservation(features[sl["synthetic"]], probes.features)
    return scores


def score(
    space: PruneSpace,
    probes: ProbeSet,
    candidate: Candidate,
    overrides: Mapping[str, torch.Tensor] | None = None,
    attack: str | None = "fgsm",
    n_attack: int = 128,
) -> dict[str, float]:
    """Every proxy for ``candidate`` (with optional compensation ``overrides``) on ``probes``.

    ``attack=None`` skips ``attack_robustness`` (the only proxy that needs gradients).
    The model is used in eval mode through masks; nothing is copied or changed.
    """
    model = space.model
    module = CandidateModule(model, overrides or {})
    # sized on the space's model (remembered there), not on this candidate's new wrapper of it
    chunk = grad_batch_size(model, probes.spec.shape, ATTACK_BATCH_SIZE) if attack else None
    with eval_mode(model), masked(space, candidate):
        with torch.no_grad():
            logits, features = penultimate_features(model, space.output_layer, probes.inputs(), call=module)
        scores = output_proxies(probes, logits, features)
        if attack:
            scores["attack_robustness"] = attack_robustness(module, probes, attack=attack, n=n_attack, batch_size=chunk)
    return scores
