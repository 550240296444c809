"""Prune space, reversible masks, physical surgery and persistence."""

from robustprune.structure.masks import masked
from robustprune.structure.persist import (
    RunFolderError,
    UntrustedCodeError,
    apply_spec,
    candidate_of,
    load_pruned,
    pruning_spec,
    save_pruned,
)
from robustprune.structure.space import Candidate, ChannelGroup, PruneSpace, UnsupportedModelError
from robustprune.structure.surgery import export

__all__ = [
    "Candidate",
    "ChannelGroup",
    "PruneSpace",
    "RunFolderError",
    "UnsupportedModelError",
    "UntrustedCodeError",
    "apply_spec",
    "export",
    "candidate_of",
    "load_pruned",
    "masked",
    "pruning_spec",
    "save_pruned",
]
