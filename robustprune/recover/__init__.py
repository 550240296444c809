"""Data-free recovery: distill a pruned model from its original on synthetic inputs (opt-in; changes weights).

``recover(pruned, original, spec, RecoverConfig(...))`` fine-tunes a copy of the pruned model
with logit KD, DFBF intermediate supervision and SP-KD, optionally as a linearly
over-parameterized chain merged back at the end, on inputs inverted from the original
(plus PGD versions of them). No real data is used.
"""

from robustprune.recover.config import RecoverConfig
from robustprune.recover.overparam import expand_model, merge_model
from robustprune.recover.result import RecoverResult
from robustprune.recover.run import recover

__all__ = ["RecoverConfig", "RecoverResult", "expand_model", "merge_model", "recover"]
