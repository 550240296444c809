"""RecoverConfig: every knob of data-free recovery, validated at construction."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, get_args

from robustprune.probes.synthetic import SyntheticConfig

RecoverInputs = Literal["pool", "fresh"]
BNMode = Literal["train", "frozen"]
INPUTS: tuple[str, ...] = get_args(RecoverInputs)
BN_MODES: tuple[str, ...] = get_args(BNMode)


@dataclasses.dataclass(frozen=True)
class RecoverConfig:
    """How to distill a pruned model from its original on synthetic inputs.

    Inputs (synthetic only):

    * ``inputs="pool"``: ``pool_size`` images inverted from the original once (``synthetic``
      says how), then each batch is drawn from the pool with cheap augmentation: a random
      shift of up to ``shift`` pixels (zero padding), a horizontal flip with probability 0.5
      when ``flip``, and Gaussian pixel noise of std ``noise``. ``inputs="fresh"``: a new
      batch is inverted from the original at every step (seed varies by step): no reuse, far
      slower (``synthetic.steps`` forward/backward passes of the original per step).
    * ``adv_fraction``: that fraction of each batch is replaced by L-inf PGD versions
      (``adv_eps`` a fraction of the pixel range, ``adv_steps`` steps) of the same inputs against the
      original, so its behaviour around them (robustness) is distilled too; targets are
      always the original's outputs on the input the student sees.

    Losses (total = weighted sum; a weight of 0 switches a term off):

    * ``kd_weight``: KL(original || student) of the softmax at temperature ``temperature``,
      times T^2 (Hinton et al.).
    * ``feature_weight``: DFBF intermediate supervision, mean L1 distance between the
      student's and the original's feature maps at ``features`` (``"auto"``: block outputs),
      weighted linearly with depth; the original's maps are restricted to the channels the
      pruned model kept when they are known, else a learned 1x1 adapter maps the student's
      channels to the original's (trained with the student, discarded afterwards).
    * ``sp_weight``: similarity-preserving KD (Tung and Mori 2019) on the same layers: squared
      Frobenius distance of the row-normalized batch Gram matrices, / b^2, mean over layers.

    Training: ``steps`` SGD steps (momentum 0.9, Nesterov) of ``batch_size`` inputs, lr
    ``lr`` with a cosine decay to 0, ``weight_decay``, gradients clipped to a total norm of
    ``grad_clip`` (0: off; SP-KD's scale-free Gram matrices give large gradients on small
    features). ``expand`` > 1 trains the linearly
    over-parameterized student (every conv / linear as a chain of two, hidden width
    ``expand`` x) and merges it back at the end; 1 trains the compact model directly.
    ``bn="train"``: BatchNorm in train mode, so its running statistics are re-estimated on
    synthetic data matched to the original's statistics (pruning shifts every BN's inputs);
    ``"frozen"``: BN in eval mode, running statistics kept, only its affine weights train.
    ``checkpoint_every``: steps between checkpoints when a checkpoint folder is given.

    The defaults are the recipe chosen on the validation split (docs/defaults.md): KD + DFBF
    features + SP-KD on the augmented pool, with over-parameterization (``expand``) and
    adversarial inputs (``adv_fraction``) off; the loss weights follow the papers' scales.
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float = 0.01
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    inputs: RecoverInputs = "pool"
    pool_size: int = 512
    synthetic: SyntheticConfig = dataclasses.field(default_factory=SyntheticConfig)
    shift: int = 2
    flip: bool = True
    noise: float = 0.02
    adv_fraction: float = 0.0
    adv_eps: float = 0.1
    adv_steps: int = 5
    kd_weight: float = 1.0
    temperature: float = 4.0
    feature_weight: float = 1.0
    sp_weight: float = 1000.0
    features: str | tuple[str, ...] = "auto"
    expand: int = 1
    bn: BNMode = "train"
    checkpoint_every: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ValueError(f"RecoverConfig.inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"RecoverConfig.bn must be one of {BN_MODES}, got {self.bn!r}")
        if not isinstance(self.synthetic, SyntheticConfig):
            raise ValueError(f"RecoverConfig.synthetic must be a SyntheticConfig, got {type(self.synthetic).__name__}")
        for name in ("steps", "batch_size", "pool_size", "expand", "checkpoint_every", "adv_steps"):
            _check_int(name, getattr(self, name), 1)
        for name in ("shift", "seed"):
            _check_int(name, getattr(self, name), 0)
        for name in ("lr", "temperature"):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("weight_decay", "grad_clip", "noise", "kd_weight", "feature_weight", "sp_weight"):
            _check_number(name, getattr(self, name))
        for name in ("adv_fraction", "adv_eps"):
            value = getattr(self, name)
            _check_number(name, value)
            if value > 1:
                raise ValueError(f"RecoverConfig.{name} must be in [0, 1], got {value!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"RecoverConfig.flip must be a bool, got {self.flip!r}")
        if isinstance(self.features, list):
            object.__setattr__(self, "features", tuple(self.features))
        if not (self.features in ("auto", "none") or (isinstance(self.features, tuple) and self.features)):
            raise ValueError(f"RecoverConfig.features must be 'auto', 'none' or module names, got {self.features!r}")
        if self.kd_weight == 0 and self.feature_weight == 0 and self.sp_weight == 0:
            raise ValueError("RecoverConfig: kd_weight, feature_weight and sp_weight are all 0; nothing to train")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["features"] = list(self.features) if isinstance(self.features, tuple) else self.features
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RecoverConfig:
        data = dict(data)
        if isinstance(data.get("synthetic"), dict):
            data["synthetic"] = SyntheticConfig(**data["synthetic"])
        return cls(**data)


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"RecoverConfig.{name} must be an integer >= {low}, got {value!r}")


def _check_number(name: str, value: object, positive: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"RecoverConfig.{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
