"""Score finished pruned models by the search's objective on held-out probes.

A search picks its candidate by the proxies on its own probes, so that score favours whichever model
was selected on those very inputs (a one-shot search, which optimises the final target directly, more
than a progressive one). Held-out probes are synthesized the same way with another seed, so models
pruned by different procedures can be compared fairly without real data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from robustprune._modes import eval_mode
from robustprune.probes.probeset import ProbeConfig, ProbeSet, build_probes
from robustprune.proxies import output_proxies
from robustprune.search.objective import DEFAULT_WEIGHTS, weighted_score
from robustprune.spec import InputSpec
from robustprune.structure.space import PruneSpace

__all__ = ["HELD_OUT_SEED_OFFSET", "best_by_held_out", "held_out_probes", "held_out_score"]

#: held-out probes use the search's seed plus this, so they never coincide with any search's own probes
HELD_OUT_SEED_OFFSET = 1000


def held_out_probes(
    original: nn.Module, spec: InputSpec, config: ProbeConfig, seed: int, cache_dir=None, progress=None
) -> ProbeSet:
    """The probes of ``config`` (synthetic, adversarial, undesired) drawn with seed ``seed + HELD_OUT_SEED_OFFSET``."""
    held = seed + HELD_OUT_SEED_OFFSET
    config = dataclasses.replace(config, seed=held, synthetic=dataclasses.replace(config.synthetic, seed=held))
    output_layer = PruneSpace(original, spec, verify=False).output_layer
    return build_probes(original, spec, output_layer, config, cache_dir=cache_dir, progress=progress)


def held_out_score(
    model: nn.Module, probes: ProbeSet, weights: Mapping[str, float] | None = None
) -> tuple[float, dict[str, float]]:
    """(weighted objective, its output proxies) of a pruned model on ``probes``; higher is better.

    Only the proxies computed from outputs are available for a finished model (no feature proxies);
    ``weights`` default to the search's ``DEFAULT_WEIGHTS``, which use only those.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    with eval_mode(model), torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in probes.inputs().split(256)])
    proxies = output_proxies(probes, logits, None)  # a dense model: no masked penultimate features
    missing = set(weights) - set(proxies)
    if any(weights[name] for name in missing):
        raise ValueError(f"held-out scores have no {', '.join(sorted(missing))} (only proxies of the outputs)")
    return weighted_score(proxies, {k: v for k, v in weights.items() if k in proxies}), proxies


def best_by_held_out(models: Sequence[nn.Module], probes: ProbeSet) -> tuple[int, list[float]]:
    """Index of the model with the highest held-out score (the first on a tie), and every score."""
    scores = [held_out_score(m, probes)[0] for m in models]
    return max(range(len(scores)), key=lambda i: (scores[i], -i)), scores
