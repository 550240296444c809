"""robustprune: data-free, robustness-preserving structured pruning of PyTorch models.

Public API::

    import robustprune as rp
    model, spec = rp.zoo.load("resnet20")
    result = rp.search(model, spec, target_macs=0.5, sampler="tpe", seed=0)
    result.model, result.history, result.front
    result.save("runs/r20")
    rp.evaluate(result.model, spec)          # real-data metrics (Fashion-MNIST)
"""

__version__ = "0.1.0"

from robustprune import zoo  # noqa: E402
from robustprune.baselines import METHODS as BASELINES  # noqa: E402
from robustprune.baselines import PruneResult, baseline  # noqa: E402
from robustprune.evaluate.harness import EvalSettings, evaluate  # noqa: E402
from robustprune.models import load_model  # noqa: E402
from robustprune.recover import RecoverConfig, RecoverResult, recover  # noqa: E402
from robustprune.search import SearchConfig, SearchResult, search  # noqa: E402
from robustprune.spec import InputSpec, SpecError, validate_model  # noqa: E402
from robustprune.structure import PruneSpace, export, load_pruned, masked, save_pruned  # noqa: E402
from robustprune.targets import Target  # noqa: E402

__all__ = [
    "BASELINES",
    "EvalSettings",
    "InputSpec",
    "PruneResult",
    "PruneSpace",
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
