"""Write a (pruned) model in a deployment format, atomically, with every batch size allowed."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from robustprune._io import staged_file
from robustprune._modes import eval_mode
from robustprune.spec import InputSpec

__all__ = ["FORMATS", "DeployError", "check_onnx", "save_model"]

FORMATS: tuple[str, ...] = ("torchscript", "torch-export", "onnx", "state_dict")

#: Largest output difference an ONNX file may show against the model on random inputs, as a fraction of the
#: largest output (at least 1): float32 rounding grows with the logits' size.
ONNX_TOLERANCE = 1e-4


class DeployError(ValueError):
    """The model cannot be written in the asked format (one line saying why)."""


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=65536)


def save_model(model: nn.Module, spec: InputSpec, path: str | os.PathLike, fmt: str = "torchscript") -> Path:
    """Write ``model`` (eval mode, a private copy) to ``path`` in ``fmt``; ONNX files are checked with onnxruntime."""
    if fmt not in FORMATS:
        raise DeployError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path = Path(path)
    work = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(2, *spec.shape)
    try:
        with staged_file(path) as tmp:
            _write(work, example, spec, tmp, fmt)
    except DeployError:
        raise
    except Exception as exc:  # tracers and exporters raise many types; the user needs one line
        raise DeployError(f"could not write {fmt}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}") from exc
    return path


def _write(work: nn.Module, example: torch.Tensor, spec: InputSpec, tmp: Path, fmt: str) -> None:
    """Write ``work`` to ``tmp`` in ``fmt``."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # trace is deprecated but still the portable format
            with open(tmp, "wb") as file:  # a file object: the archive's folder is not named after the temp file
                torch.jit.save(torch.jit.trace(work, example), file)
    elif fmt == "torch-export":
        program = torch.export.export(work, (example,), dynamic_shapes=({0: _batch_dim()},))
        with open(tmp, "wb") as file:  # a file object: torch warns about a path not ending in .pt2
            torch.export.save(program, file)
    elif fmt == "onnx":
        _save_onnx(work, example, tmp)
        check_onnx(tmp, work, spec)
    else:
        with open(tmp, "wb") as file:  # the same model gives the same bytes
            torch.save(work.state_dict(), file)


def _save_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise DeployError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'robustprune[onnx]'"
        ) from None
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=({0: _batch_dim()},),
        input_names=["input"],
        output_names=["logits"],
        verbose=False,
    )
    program.save(str(path))


def check_onnx(path: str | os.PathLike, model: nn.Module, spec: InputSpec, batch_size: int = 5, seed: int = 0) -> float:
    """Max |ONNX Runtime output - model output| on random normalized inputs, as a fraction of the largest output
    (or of 1, where every output is smaller); raises DeployError above ``ONNX_TOLERANCE``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeployError("checking an ONNX file needs onnxruntime: pip install 'robustprune[onnx]'") from None
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.rand(batch_size, *spec.shape, generator=generator)
    inputs = spec.normalize(pixels)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0])
    with torch.no_grad(), eval_mode(model):  # the caller's model keeps its mode
        want = model(inputs.to(next(model.parameters(), inputs).device)).cpu()
    diff = float((got - want).abs().max())
    relative = diff / max(1.0, float(want.abs().max()))
    if not relative <= ONNX_TOLERANCE:  # a NaN fails too
        raise DeployError(
            f"the ONNX file differs from the model by {diff:.2e} ({relative:.1e} of the largest output, "
            f"> {ONNX_TOLERANCE:g})"
        )
    return relative
