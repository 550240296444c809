"""The inputs every candidate is scored on, generated once, with the original model's answers.

A ``ProbeSet`` holds three kinds of pixel-space inputs and the original model's
logits (and penultimate features) on them:

- ``synthetic``: inverted from the model (``robustprune.probes.synthetic``);
- ``adversarial``: PGD/FGSM on the synthetic inputs against the original model;
- ``undesired``: noise and destroyed images the model should not be confident on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from robustprune._batching import forward_batch_size
from robustprune._modes import eval_mode, model_device
from robustprune.evaluate.attacks import Attack
from robustprune.probes.adversarial import adversarial_probes
from robustprune.probes.cache import cached_generate
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.probes.undesired import undesired_probes
from robustprune.spec import InputSpec

KIND_ORDER = ("synthetic", "adversarial", "undesired")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """What to probe with. The defaults balance proxy quality against search time on 2 CPU cores.

    ``seed`` seeds every probe: the synthesis, the attack's random start and the undesired inputs.
    None (the default) follows the seed of the search the probes are built for (0 outside a search);
    a number fixes it for all three (it replaces ``synthetic.seed``); a non-zero ``synthetic.seed`` given
    without it is taken as the probe seed.
    """

    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    attack: Attack = "pgd"
    eps: float = 0.1
    attack_steps: int = 10
    n_undesired: int = 256
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise ValueError(f"ProbeConfig.seed must be None or an integer >= 0, got {self.seed!r}")
        if self.seed is None and self.synthetic.seed != 0:
            object.__setattr__(self, "seed", self.synthetic.seed)  # a synthesis seed given alone is the probe seed
        elif self.seed is not None and self.synthetic.seed != self.seed:  # one seed for every probe
            object.__setattr__(self, "synthetic", dataclasses.replace(self.synthetic, seed=self.seed))
        if isinstance(self.eps, bool) or not isinstance(self.eps, int | float) or not 0 <= self.eps <= 1:
            raise ValueError(
                f"ProbeConfig.eps must be an L-inf radius in [0, 1] (a fraction of the pixel range), got {self.eps!r}"
            )

    def seeded(self, seed: int) -> ProbeConfig:
        """This config with its seed fixed: its own when given, else ``seed`` (the search's)."""
        if self.seed is not None:
            return self
        return dataclasses.replace(self, seed=seed, synthetic=dataclasses.replace(self.synthetic, seed=seed))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["synthetic"] = self.synthetic.to_dict()
        return data


@dataclasses.dataclass
class ProbeSet:
    spec: InputSpec
    pixels: dict[str, torch.Tensor]  # kind -> (n_kind, *shape) pixel-space inputs
    logits: dict[str, torch.Tensor]  # kind -> original model's logits
    features: torch.Tensor  # original model's penultimate features on the synthetic inputs
    config: ProbeConfig
    seconds: dict[str, float]
    _inputs: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for kind in KIND_ORDER:
            n = len(self.pixels[kind])
            out[kind] = slice(start, start + n)
            start += n
        return out

    def inputs(self) -> torch.Tensor:
        """All probes, normalized for the model, in KIND_ORDER (computed once)."""
        if self._inputs is None:
            self._inputs = self.spec.normalize(torch.cat([self.pixels[k] for k in KIND_ORDER]))
        return self._inputs

    def __len__(self) -> int:
        return sum(len(v) for v in self.pixels.values())

    def split(self, n_first: int) -> tuple[ProbeSet, ProbeSet]:
        """Two probe sets: the first ``n_first`` synthetic inputs with their adversarial versions,
        and the rest. Undesired inputs go to both (they are not tied to one synthetic input).

        Why: a criterion computed on some probes (Taylor) is flattered by proxies measured on
        the same probes; scoring it on the other part is a data-free held-out check.
        """
        n = len(self.pixels["synthetic"])
        if not 0 < n_first < n:
            raise ValueError(f"n_first must be in (0, {n}), got {n_first}")
        halves = []
        for part in (slice(0, n_first), slice(n_first, n)):
            pick = {"synthetic": part, "adversarial": part, "undesired": slice(None)}
            halves.append(
                ProbeSet(
                    self.spec,
                    {k: v[pick[k]] for k, v in self.pixels.items()},
                    {k: v[pick[k]] for k, v in self.logits.items()},
                    self.features[part],
                    self.config,
                    self.seconds,
                )
            )
        return halves[0], halves[1]


def penultimate_features(
    model: nn.Module,
    output_layer: str,
    inputs: torch.Tensor,
    call: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the input of the output layer flattened per sample) for ``inputs`` (normalized), in
    chunks sized to the model's activations (one chunk for a small model)."""
    layer = dict(model.named_modules())[output_layer]
    chunk = forward_batch_size(model, tuple(inputs.shape[1:]), max(len(inputs), 1), inputs.device)
    last: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_pre_hook(lambda _m, args: last.__setitem__("x", args[0]))
    logits, features = [], []
    try:
        for start in range(0, max(len(inputs), 1), chunk):  # an empty batch still runs once, as before
            logits.append((call or model)(inputs[start : start + chunk]))
            features.append(last.pop("x").flatten(1))
    finally:
        handle.remove()
    if len(logits) == 1:
        return logits[0], features[0]
    return torch.cat(logits), torch.cat(features)


def build_probes(
    model: nn.Module,
    spec: InputSpec,
    output_layer: str,
    config: ProbeConfig | None = None,
    cache_dir=None,
    progress: Callable[[str], None] | None = None,
) -> ProbeSet:
    """Generate (or load from the cache) the synthetic inputs, attack them, add undesired inputs,
    and record the original model's logits and penultimate features. ``model`` is not changed;
    the probes are on its device."""
    config = (config or ProbeConfig()).seeded(0)
    say = progress or (lambda _m: None)
    seconds = {}
    start = time.time()
    say(f"synthetic inputs: {config.synthetic.n} x {config.synthetic.kind}")
    synthetic = cached_generate(model, spec, config.synthetic, cache_dir=cache_dir, progress=progress).pixels
    seconds["synthetic"] = time.time() - start
    start = time.time()
    say(f"adversarial inputs: {config.attack.upper()} eps {config.eps} on the synthetic inputs")
    adversarial = adversarial_probes(
        model, spec, synthetic, attack=config.attack, eps=config.eps, steps=config.attack_steps, seed=config.seed
    )
    seconds["adversarial"] = time.time() - start
    undesired = undesired_probes(spec, config.n_undesired, synthetic=synthetic, seed=config.seed)
    # Probes live where the model does: every candidate is scored on them (the cache and the
    # generators hand back CPU tensors, whatever device they ran on).
    device = model_device(model)
    pixels = {
        "synthetic": synthetic.to(device),
        "adversarial": adversarial.to(device),
        "undesired": undesired.to(device),
    }
    probes = ProbeSet(spec, pixels, {}, torch.empty(0), config, seconds)
    with eval_mode(model), torch.no_grad():
        logits, features = penultimate_features(model, output_layer, probes.inputs())
    probes.logits = {kind: logits[sl] for kind, sl in probes.slices().items()}
    probes.features = features[probes.slices()["synthetic"]]
    return probes
