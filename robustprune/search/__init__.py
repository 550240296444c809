"""Progressive, Optuna-driven, robustness-scored pruning search."""

from robustprune.search.engine import SearchConfig, search
from robustprune.search.result import SearchResult, StepRecord

__all__ = ["SearchConfig", "SearchResult", "StepRecord", "search"]
