"""robustprune: data-free, robustness-preserving structured pruning of PyTorch models."""

__version__ = "0.1.0"

from robustprune.spec import InputSpec, SpecError, validate_model  # noqa: E402

__all__ = ["InputSpec", "SpecError", "validate_model", "__version__"]
