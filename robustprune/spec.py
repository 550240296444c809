"""Input specification of a model and validation of models against it.

Every model robustprune touches consumes *normalized* inputs; data, attacks and
synthetic inputs live in pixel space (``value_range``). ``InputSpec`` is the one
place that knows how to go from one to the other.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from robustprune._modes import eval_mode


class SpecError(ValueError):
    """A model or input does not match its InputSpec."""


_ONE_LOGIT_HINT = (
    "a binary classifier with one logit z counts as 2 classes: wrap it to return "
    "torch.cat([torch.zeros_like(z), z], dim=1) and set num_classes=2"
)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Shape of one input ((C, H, W) for images; (C, L) signals and (F,) features work too), per-channel
    normalization, pixel range, classes."""

    shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        if not self.shape or any(s <= 0 for s in self.shape):
            raise SpecError(f"InputSpec.shape must be positive integers, got {self.shape}")
        channels = self.shape[0]
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, channels):
                expected = "1" if channels == 1 else f"1 or {channels}"
                raise SpecError(
                    f"InputSpec.{name} has {len(values)} values; expected {expected} "
                    f"(one per channel of shape {self.shape})"
                )
            if not all(math.isfinite(v) for v in values):
                raise SpecError(f"InputSpec.{name} must be finite, got {values}")
        if any(s <= 0 for s in self.std):
            raise SpecError(f"InputSpec.std must be > 0, got {self.std}")
        if self.num_classes < 2:
            hint = f": {_ONE_LOGIT_HINT}" if self.num_classes == 1 else ""
            raise SpecError(f"InputSpec.num_classes must be >= 2, got {self.num_classes}{hint}")
        low, high = self.value_range
        if not low < high:
            raise SpecError(f"InputSpec.value_range must be (low, high) with low < high, got {self.value_range}")

    def _stat(self, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        channels = self.shape[0]
        t = torch.tensor(values, dtype=like.dtype, device=like.device)
        t = t.expand(channels) if t.numel() == 1 else t
        return t.view(1, channels, *([1] * (len(self.shape) - 1)))

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixel-space batch -> the normalized batch the model consumes."""
        return (pixels - self._stat(self.mean, pixels)) / self._stat(self.std, pixels)

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """Normalized batch -> pixel space."""
        return inputs * self._stat(self.std, inputs) + self._stat(self.mean, inputs)

    def check_batch(self, pixels: torch.Tensor) -> None:
        """Raise SpecError if ``pixels`` is not an (N, *shape) batch."""
        if pixels.dim() != len(self.shape) + 1 or tuple(pixels.shape[1:]) != self.shape:
            raise SpecError(
                f"expected a batch of shape (N, {', '.join(map(str, self.shape))}), got {tuple(pixels.shape)}"
            )

    def unit_range(self, pixels: torch.Tensor | None = None) -> tuple[InputSpec, torch.Tensor | None]:
        """The same model input with pixels mapped from ``value_range`` onto [0, 1]: (spec', pixels'), exact
        (mean and std move with it); the spec itself when its range is already [0, 1]."""
        low, high = self.value_range
        if (low, high) == (0.0, 1.0):
            return self, pixels
        scale = high - low
        unit = InputSpec(
            self.shape,
            tuple((m - low) / scale for m in self.mean),
            tuple(s / scale for s in self.std),
            self.num_classes,
            (0.0, 1.0),
        )
        return unit, None if pixels is None else (pixels - low) / scale

    def to_dict(self) -> dict:
        """The spec-file format: ``{"shape": [C, H, W], "mean": [...], "std": [...], "num_classes": N,
        "value_range": [lo, hi]}`` (``value_range`` optional, default [0, 1])."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        """Inverse of :meth:`to_dict`; a SpecError naming the missing, unknown or mistyped key."""
        if not isinstance(data, dict):
            raise SpecError(f"an input spec is a JSON object with keys {', '.join(_KEYS)}; got {type(data).__name__}")
        missing = [k for k in _REQUIRED if k not in data]
        unknown = sorted(set(data) - set(_KEYS))
        if missing or unknown:
            what = f"lacks {', '.join(missing)}" if missing else f"has unknown keys {', '.join(unknown)}"
            raise SpecError(f"input spec {what} (keys: {', '.join(_KEYS)}; value_range is optional)")
        try:
            fields = {
                "shape": [int(v) for v in _number_list(data["shape"], "shape", integers=True)],
                "mean": _number_list(data["mean"], "mean"),
                "std": _number_list(data["std"], "std"),
                "num_classes": int(_number_list([data["num_classes"]], "num_classes", integers=True)[0]),
            }
            if "value_range" in data:
                fields["value_range"] = _number_list(data["value_range"], "value_range")
                if len(fields["value_range"]) != 2:
                    raise SpecError(f"input spec value_range must be [low, high], got {data['value_range']}")
        except TypeError as exc:
            raise SpecError(f"input spec: {exc}") from None
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


_KEYS = ("shape", "mean", "std", "num_classes", "value_range")
_REQUIRED = _KEYS[:4]


def _number_list(values: object, name: str, integers: bool = False) -> list[float]:
    """``values`` as a list of numbers (a scalar counts as a list of one); TypeError naming ``name`` otherwise."""
    values = values if isinstance(values, list | tuple) else [values]
    kinds = (int,) if integers else (int, float)
    if not values or not all(isinstance(v, kinds) and not isinstance(v, bool) for v in values):
        kind = "integers" if integers else "numbers"
        raise TypeError(f"{name} must be {kind}, got {values!r}")
    return list(values)


def load_spec_file(path: str | os.PathLike) -> InputSpec:
    """Read an input-spec JSON file (the format of :meth:`InputSpec.to_dict`); SpecError in one line if unusable."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"input spec file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path} is not valid JSON ({exc})") from None
    try:
        return InputSpec.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def validate_model(model: nn.Module, spec: InputSpec) -> None:
    """Check that ``model`` has finite weights and maps (N, *shape) to (N, num_classes).

    Raises SpecError with a message that names what is wrong, so that a bad
    model fails at the door rather than deep inside a search.
    """
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SpecError(f"model tensor '{name}' contains NaN or infinite values")
    for name, param in model.named_parameters():
        if param.is_floating_point() and param.dtype != torch.float32:  # inputs, probes and attacks are float32
            raise SpecError(
                f"model parameter '{name}' is {param.dtype}; robustprune prunes float32 models: pass model.float()"
            )
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    probe = torch.zeros(2, *spec.shape, device=device)
    try:
        with eval_mode(model), torch.no_grad():
            out = model(probe)
    except Exception as exc:  # the model's own error, re-raised with context
        raise SpecError(f"model failed on an input of shape (2, {', '.join(map(str, spec.shape))}): {exc}") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        one_logit = isinstance(out, torch.Tensor) and (out.dim() == 1 or (out.dim() == 2 and out.shape[1] == 1))
        hint = f": {_ONE_LOGIT_HINT}" if one_logit else ""
        raise SpecError(f"model output must have shape (N, {spec.num_classes}) for N=2 inputs, got {got}{hint}")
    low, high = spec.value_range
    noise = low + (high - low) * torch.rand(2, *spec.shape, generator=torch.Generator().manual_seed(0))
    try:
        with eval_mode(model), torch.no_grad():
            outs = (out, model(spec.normalize(noise.to(device))))
    except Exception as exc:
        raise SpecError(
            f"model failed on random inputs of shape (2, {', '.join(map(str, spec.shape))}): {exc}"
        ) from exc
    random_out = outs[1]  # not the zero input: a per-image standardization divides by its zero spread there
    if random_out.is_floating_point() and not torch.isfinite(random_out).all():  # every metric would read garbage
        masked = bool((random_out == float("-inf")).any()) and not bool(random_out.isnan().any())
        hint = ": mask classes with a large finite value (-1e4), not -inf" if masked else ""
        raise SpecError(f"the model outputs NaN or infinite logits on random in-range inputs{hint}")
    if all(_probabilities(o) for o in outs):
        # attacks, proxies, calibration and OOD scores all read logits; probabilities would be softmaxed twice
        raise SpecError(
            "the model outputs probabilities (rows >= 0 summing to 1); robustprune needs logits: "
            "drop the final softmax, or return log-probabilities (torch.log_softmax)"
        )


def _probabilities(out: torch.Tensor) -> bool:
    """Whether every row of ``out`` is >= 0 and sums to 1 (compared in float32: half-precision heads too)."""
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return False
    rows = out.float()
    return bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(1), torch.ones_like(rows[:, 0]), atol=1e-3))
