"""Progressive, Optuna-driven, robustness-scored pruning search."""

from robustprune.search.engine import SearchConfig, search
from robustprune.search.result import SearchResult, StepRecord
from robustprune.search.storage import StorageBusyError, StorageError, StorageMismatchError
from robustprune.search.variants import SEARCH_VARIANTS, variant_config

__all__ = [
    "SEARCH_VARIANTS",
    "SearchConfig",
    "SearchResult",
    "StepRecord",
    "StorageBusyError",
    "StorageError",
    "StorageMismatchError",
    "search",
    "variant_config",
]
