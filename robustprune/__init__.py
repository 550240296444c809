"""robustprune: data-free, robustness-preserving structured pruning of PyTorch models.

Public API::

    import robustprune as rp
    model, spec = rp.zoo.load("resnet20")
    result = rp.search(model, spec, target_macs=0.5, sampler="tpe", seed=0)
    result.model, result.history, result.front
    result.save("runs/r20")
    rp.evaluate(result.model, spec)          # real-data metrics (Fashion-MNIST)
"""

from __future__ import annotations

import importlib
import sys
import types

from robustprune._version import __version__

# The public names load on first use (PEP 562), so ``import robustprune.cli`` does not import torch:
# the command line catches a Ctrl-C during those imports and reports it in one line.
_EXPORTS = {
    "zoo": ("robustprune.zoo", None),
    "BASELINES": ("robustprune.baselines", "METHODS"),
    "PruneResult": ("robustprune.baselines", "PruneResult"),
    "baseline": ("robustprune.baselines", "baseline"),
    "EvalSettings": ("robustprune.evaluate.harness", "EvalSettings"),
    "evaluate": ("robustprune.evaluate.harness", "evaluate"),
    "load_model": ("robustprune.models", "load_model"),
    "RecoverConfig": ("robustprune.recover", "RecoverConfig"),
    "RecoverResult": ("robustprune.recover", "RecoverResult"),
    "recover": ("robustprune.recover", "recover"),
    "SearchConfig": ("robustprune.search", "SearchConfig"),
    "SearchResult": ("robustprune.search", "SearchResult"),
    "search": ("robustprune.search", "search"),
    "InputSpec": ("robustprune.spec", "InputSpec"),
    "SpecError": ("robustprune.spec", "SpecError"),
    "validate_model": ("robustprune.spec", "validate_model"),
    "PruneSpace": ("robustprune.structure", "PruneSpace"),
    "PruningResult": ("robustprune.pruned", "PruningResult"),
    "export": ("robustprune.structure", "export"),
    "load_pruned": ("robustprune.structure", "load_pruned"),
    "masked": ("robustprune.structure", "masked"),
    "save_pruned": ("robustprune.structure", "save_pruned"),
    "Target": ("robustprune.targets", "Target"),
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'robustprune' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        # importing a subpackage (robustprune.search, robustprune.recover) must not replace the function of its name
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name, (None, None))[1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "BASELINES",
    "EvalSettings",
    "InputSpec",
    "PruneResult",
    "PruneSpace",
    "PruningResult",
    "RecoverConfig",
    "RecoverResult",
    "SearchConfig",
    "SearchResult",
    "SpecError",
    "Target",
    "__version__",
    "baseline",
    "evaluate",
    "export",
    "load_model",
    "load_pruned",
    "masked",
    "recover",
    "save_pruned",
    "search",
    "validate_model",
    "zoo",
]
