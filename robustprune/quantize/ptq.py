"""int8 post-training quantization with PyTorch's PT2E flow (torchao), calibrated on given inputs.

The flow: ``torch.export`` the float model with a dynamic batch dimension, insert observers
(``prepare_pt2e``) as the backend's quantizer annotates the graph, run the calibration
inputs through it, and ``convert_pt2e`` to a graph of quantize / dequantize nodes around
float ops. That graph computes int8 arithmetic's results; the speed comes when a backend
lowers it (``torch.compile`` with inductor freezing turns it into oneDNN int8 kernels on x86).

Export is ``strict``: the non-strict tracer names graph nodes by module, so a module called
twice in one forward (a residual block's shared ``self.relu``, as in torchvision's ResNet)
becomes one partition with two outputs, which the x86 quantizer refuses.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from robustprune._io import staged_file
from robustprune.spec import InputSpec

__all__ = ["BACKENDS", "QuantizeError", "check_backend", "load_quantized", "quantize_int8", "save_quantized"]

#: Quantizers: "x86" (torchao's X86InductorQuantizer, for servers and desktops), "xnnpack" (ARM/mobile:
#: ExecuTorch's XNNPACKQuantizer, needs the executorch package).
Backend = Literal["x86", "xnnpack"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class QuantizeError(ValueError):
    """The model cannot be quantized as asked (one line saying why)."""


#: aten ops whose output aliases their input (a view of the same storage).
_VIEW_OPS = frozenset(
    {"permute", "view", "reshape", "transpose", "expand", "slice", "select", "unsqueeze", "squeeze", "t", "alias"}
)


def _reads_a_view(node) -> bool:
    """Whether an add node takes a view (``permute``, ``view`` ...) as an input."""
    return any(
        getattr(arg, "op", None) == "call_function" and getattr(arg.target, "_opname", None) in _VIEW_OPS
        for arg in node.args
    )


def _x86_quantizer(xiq):
    """torchao's X86InductorQuantizer, except that a conv + add whose other input is a view is left to the conv
    pattern alone: inductor fuses conv + add in place into the other input and asserts when that input aliases
    another tensor (torch 2.14: "QConv Binary Inplace Fusion requires accum is not an alias or mutation"; the
    residual after a channel LayerNorm's permute in ConvNeXt-style nets). The add then runs in float."""

    def without_view_accumulators(filter_fn):
        return lambda nodes: filter_fn(nodes) and not any(_reads_a_view(n) for n in nodes)

    class Quantizer(xiq.X86InductorQuantizer):
        def _annotate_conv2d_binary(self, gm, quantization_config, filter_fn=None):
            if filter_fn is not None:
                filter_fn = without_view_accumulators(filter_fn)
            super()._annotate_conv2d_binary(gm, quantization_config, filter_fn)

        def _annotate_conv2d_binary_unary(self, gm, quantization_config, filter_fn=None):
            if filter_fn is not None:
                filter_fn = without_view_accumulators(filter_fn)
            super()._annotate_conv2d_binary_unary(gm, quantization_config, filter_fn)

    return Quantizer()


def _quantizer(backend: str):
    if backend not in BACKENDS:
        raise QuantizeError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    try:
        if backend == "x86":
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

            quantizer = _x86_quantizer(xiq)
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            return quantizer
    except ImportError as exc:
        raise QuantizeError(f"int8 quantization needs torchao: pip install 'robustprune[quantize]' ({exc})") from None
    try:  # torchao keeps only a private test copy of the XNNPACK quantizer; ExecuTorch ships it
        from executorch.backends.xnnpack.quantizer import xnnpack_quantizer as xq
    except ImportError:
        raise QuantizeError(
            "the xnnpack quantizer ships with ExecuTorch: pip install 'robustprune[xnnpack]' (or use backend 'x86')"
        ) from None
    quantizer = xq.XNNPACKQuantizer()
    quantizer.set_global(xq.get_symmetric_quantization_config())
    return quantizer


def check_backend(backend: str) -> None:
    """Raise :class:`QuantizeError` (one line) unless ``backend`` is known and its quantizer's package is
    installed, so callers can say so before any slow work."""
    _quantizer(backend)


def _export(model: nn.Module, example: torch.Tensor, strict: bool) -> torch.export.ExportedProgram:
    batch = torch.export.Dim("batch", min=1, max=65536)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},), strict=strict)


def quantize_int8(
    model: nn.Module,
    spec: InputSpec,
    calibration: torch.Tensor,
    *,
    backend: Backend = "x86",
    batch_size: int = 64,
) -> torch.export.ExportedProgram:
    """An int8 exported program of ``model``, its activation ranges observed on ``calibration`` (pixel space).

    ``model`` is not changed (a private copy is exported). The result runs any batch size:
    ``program.module()(spec.normalize(pixels))``; save it with :func:`save_quantized`.
    """
    quantizer = _quantizer(backend)
    if calibration.dim() != len(spec.shape) + 1 or tuple(calibration.shape[1:]) != tuple(spec.shape):
        raise QuantizeError(
            f"calibration must be (N, {', '.join(map(str, spec.shape))}), got {tuple(calibration.shape)}"
        )
    if calibration.shape[0] < 2:
        raise QuantizeError("calibration needs at least 2 inputs")
    volumetric = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv3d)), None)
    if volumetric is not None:  # the quantizers annotate 1-D/2-D convs and linears: a Conv3d would stay float
        raise QuantizeError(
            f"int8 quantization covers Conv1d/Conv2d and Linear layers; Conv3d '{volumetric}' would stay float"
        )
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as exc:
        raise QuantizeError(f"int8 quantization needs torchao: pip install 'robustprune[quantize]' ({exc})") from None
    work = copy.deepcopy(model).cpu().eval()
    example = spec.normalize(calibration[:2].float())
    try:
        prepared = prepare_pt2e(_export(work, example, strict=True).module(), quantizer)
    except Exception as exc:  # torch.export / the quantizer raise many types; the user needs one line
        raise QuantizeError(f"could not export and annotate the model for int8: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        for start in range(0, calibration.shape[0], batch_size):
            prepared(spec.normalize(calibration[start : start + batch_size].float()))
    converted = convert_pt2e(prepared)
    return _export(converted, example, strict=False)


def save_quantized(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    """Write the program atomically (``torch.export.save``)."""
    path = Path(path)
    with staged_file(path) as tmp, open(tmp, "wb") as file:  # a file object: the same program, the same bytes
        torch.export.save(program, file)
    return path


def load_quantized(path: str | os.PathLike, allow_pickle: bool = False) -> nn.Module:
    """The saved int8 program as a callable module (``torch.export.load``, after torchao registers the
    quantize/dequantize ops the program calls). An archive whose loading would unpickle is refused unless
    ``allow_pickle`` (``robustprune.models.check_program_archive``)."""
    from robustprune.models import ModelRefError, check_program_archive

    try:
        check_program_archive(path, allow_pickle)
    except ModelRefError as exc:
        raise QuantizeError(str(exc)) from None
    try:
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401  (registers the quantized_decomposed ops)
    except ImportError as exc:
        message = f"loading an int8 program needs torchao: pip install 'robustprune[quantize]' ({exc})"
        raise QuantizeError(message) from None
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise QuantizeError(f"could not load the int8 program {path} ({type(exc).__name__}: {first})") from exc
