"""Moved: criteria live in ``robustprune.criteria``, selection in ``robustprune.select``.

Kept for the imports of ``search/objective.py`` and ``cli.py`` until they name the new modules.
"""

from robustprune.criteria import CRITERIA
from robustprune.select import select_keep

__all__ = ["CRITERIA", "select_keep"]
