"""Per-image correctness on fixed images, for paired comparisons of pruned models.

Every method and seed of a model is evaluated on the same images: clean on the whole split,
PGD on a fixed subset, APGD-CE on a smaller fixed subset. The subsets depend only on
``image_seed``, never on the method's or cell's seed, so every method is judged on the same images.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from robustprune.data.fashion_mnist import EVAL_SPLITS, load_eval_split
from robustprune.evaluate.attacks import robust_correct
from robustprune.spec import InputSpec

__all__ = ["PairedSettings", "correctness", "pack", "unpack"]


@dataclasses.dataclass(frozen=True)
class PairedSettings:
    """Which images and attacks the per-image correctness covers."""

    split: str = "test"
    eps: float = 0.01
    pgd_steps: int = 10
    n_pgd: int = 5000
    n_apgd: int = 1000
    apgd: bool = True
    image_seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {self.split!r}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps is a fraction of the pixel range, in [0, 1]; got {self.eps}")
        for name in ("pgd_steps", "n_pgd", "n_apgd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def correctness(
    model: nn.Module,
    spec: InputSpec,
    settings: PairedSettings | None = None,
    root=None,
    device: torch.device | str | None = None,
    images: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """``{"clean": (N,), "pgd": (n_pgd,), "apgd": (n_apgd,)}`` bool tensors (``apgd`` only when asked).

    ``images`` (pixels, labels) replaces the Fashion-MNIST split, e.g. for tests.
    """
    settings = settings or PairedSettings()
    if images is None:  # Fashion-MNIST pixels are in [0, 1]: the same model inputs as the spec's own range
        spec = spec.unit_range()[0]
    x, y = images if images is not None else load_eval_split(settings.split, root)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(settings.image_seed))
    out = {"clean": robust_correct(model, spec, x, y, attack=None, device=device)}
    attacks = [("pgd", settings.n_pgd)] + ([("apgd-ce", settings.n_apgd)] if settings.apgd else [])
    for attack, n in attacks:
        idx = order[:n]
        out[attack.removesuffix("-ce")] = robust_correct(
            model, spec, x[idx], y[idx], attack=attack, eps=settings.eps, steps=settings.pgd_steps, device=device
        )
    return out


def pack(correct: torch.Tensor) -> str:
    """A bool vector as a string of '0'/'1' (compact and exact in a JSON cell file)."""
    return "".join("1" if v else "0" for v in correct.tolist())


def unpack(text: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in text], dtype=torch.bool)
