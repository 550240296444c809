"""int8 run folders: calibrate a pruned run's model, save the int8 program next to its float model, load both.

A quantized run folder holds ``int8.pt2`` (the exported int8 program), the float model it was
quantized from (``spec.json`` + ``pruned.pt``, as in the source run) and ``quantize.json`` (how it
was calibrated). Loading gives an :class:`Int8Model`: outputs come from the int8 program; gradients,
which the program does not have (quantize/dequantize ops), come from the float model, so the
evaluation's gradient attacks run as BPDA (Athalye et al. 2018) against the int8 outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from robustprune.data.fashion_mnist import TRAIN_IMAGES, fits_fashion_mnist
from robustprune.quantize.ptq import QuantizeError
from robustprune.spec import InputSpec

__all__ = ["CALIBRATIONS", "Int8Model", "calibration_inputs", "is_quantized_run", "load_quantized_run"]

#: Calibration inputs: the search's synthetic probes (BN-statistics inversion, as in The Knowledge
#: Within), Gaussian noise matched to the input normalisation, or real training images (for comparison).
Calibration = Literal["synthetic", "gaussian", "real"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)
#: How many calibration inputs each source gives by default (synthetic: the search's probe count).
DEFAULT_N = {"synthetic": 256, "gaussian": 256, "real": 1000}
PROGRAM_FILE = "int8.pt2"
INFO_FILE = "quantize.json"


class Int8Model(nn.Module):
    """The int8 program's outputs with the float model's gradients (straight-through / BPDA).

    The program runs on the CPU whatever ``.to()`` moved the float model to; its outputs come back on the
    input's device, so attacks may run the gradients on a GPU."""

    def __init__(self, program: nn.Module, float_model: nn.Module) -> None:
        super().__init__()
        self.float_model = float_model.eval()
        self.__dict__["program"] = program  # not a submodule: an exported module refuses train()/eval()

    @property
    def cost_reference(self) -> nn.Module:
        """What MACs and parameters are counted on (``count_macs_params``): the same layers, in float."""
        return self.float_model

    def train(self, mode: bool = True) -> Int8Model:
        self.training = mode
        self.float_model.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.program(x.cpu()).to(x.device)  # the int8 program is a CPU artefact (x86 / ARM kernels)
        if torch.is_grad_enabled() and x.requires_grad:
            ref = self.float_model(x)
            return out.detach() + ref - ref.detach()
        return out


def calibration_inputs(
    source: Calibration,
    model: nn.Module,
    spec: InputSpec,
    n: int | None = None,
    seed: int = 0,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress=None,
) -> torch.Tensor:
    """``n`` calibration inputs in pixel space from ``source`` (one of ``CALIBRATIONS``).

    ``model`` is the original (unpruned) model: synthetic inputs are the search's probes, inverted
    from its BN statistics (disk-cached, so after a search they are a cache hit).
    """
    if source not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {source!r}; choose one of: {', '.join(CALIBRATIONS)}")
    n = DEFAULT_N[source] if n is None else n
    if n < 2:
        raise QuantizeError(f"calibration needs at least 2 inputs, got {n}")
    if source == "real" and n > TRAIN_IMAGES:
        raise QuantizeError(
            f"calibration 'real' takes at most the {TRAIN_IMAGES:,} training images before the validation split "
            f"train[{TRAIN_IMAGES}:], asked for {n:,}"
        )
    if source == "real" and not fits_fashion_mnist(spec):
        raise QuantizeError(
            f"calibration 'real' is Fashion-MNIST train images, which do not fit this model (input {spec.shape}, "
            f"{spec.num_classes} classes): use synthetic or gaussian"
        )
    if source == "synthetic":
        import dataclasses

        from robustprune.probes.cache import cached_generate
        from robustprune.search.engine import SEARCH_PROBES

        config = SEARCH_PROBES.seeded(seed).synthetic
        if n > config.n:
            config = dataclasses.replace(config, n=n)
        return cached_generate(model, spec, config, cache_dir=cache_dir, progress=progress).pixels[:n].float()
    if source == "gaussian":
        # normalized inputs ~ N(0, 1), i.e. pixels ~ N(mean, std) per channel, clipped to the spec's pixel range
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, *spec.shape, generator=g)
        mean = torch.tensor(spec.mean).view(-1, *([1] * (len(spec.shape) - 1)))
        std = torch.tensor(spec.std).view(-1, *([1] * (len(spec.shape) - 1)))
        return (mean + std * z).clamp(*spec.value_range)
    from robustprune.data.fashion_mnist import load_fashion_mnist

    images, _labels = load_fashion_mnist("train", data_root)
    return images[:n].float()


def is_quantized_run(folder: str | Path) -> bool:
    return (Path(folder) / PROGRAM_FILE).is_file()


def load_quantized_run(
    folder: str | Path, allow_pickle: bool = False, trust_code: bool = False
) -> tuple[Int8Model, InputSpec, dict]:
    """The run folder's int8 model (see :class:`Int8Model`), its input spec, and ``quantize.json``."""
    import json

    from robustprune.quantize.ptq import load_quantized
    from robustprune.structure import load_pruned

    folder = Path(folder)
    if not is_quantized_run(folder):
        raise ValueError(f"{folder} is not a quantized run folder (no {PROGRAM_FILE})")
    float_model, spec, _data = load_pruned(folder, allow_pickle=allow_pickle, trust_code=trust_code)
    info = json.loads((folder / INFO_FILE).read_text()) if (folder / INFO_FILE).is_file() else {}
    return Int8Model(load_quantized(folder / PROGRAM_FILE, allow_pickle), float_model), spec, info
