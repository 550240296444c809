"""Post-training int8 quantization, calibrated without real data (The Knowledge Within)."""

from robustprune.quantize.ptq import (
    BACKENDS,
    QuantizeError,
    check_backend,
    load_quantized,
    quantize_int8,
    save_quantized,
)

__all__ = ["BACKENDS", "QuantizeError", "check_backend", "load_quantized", "quantize_int8", "save_quantized"]
