"""Progressive, Optuna-driven, robustness-scored pruning search."""

from robustprune.search.engine import SearchConfig, search
from robustprune.search.result import SearchResult, StepRecord
from robustprune.search.storage import StorageBusyError, StorageError, StorageMismatchError

__all__ = [
    "SearchConfig",
    "SearchResult",
    "StepRecord",
    "StorageBusyError",
    "StorageError",
    "StorageMismatchError",
    "search",
]
