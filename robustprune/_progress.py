"""Progress bars for long work (tqdm), shown only where a person is watching.

Bars go to stderr and only when it is a terminal: piped or captured output (CI logs, scripts,
``> log.txt``) gets the plain one-line messages instead, so logs stay readable.
``ROBUSTPRUNE_PROGRESS=1`` forces bars on, ``=0`` turns them off.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm


def bars_enabled(quiet: bool = False) -> bool:
    """Whether long work should draw progress bars on stderr."""
    if quiet:
        return False
    forced = os.environ.get("ROBUSTPRUNE_PROGRESS")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    return sys.stderr.isatty()


def progress_bar(total: int, desc: str, quiet: bool = False, unit: str = "it", **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr, disabled (a no-op with the same interface) unless ``bars_enabled``."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        disable=not bars_enabled(quiet),
        **kwargs,
    )


def write_line(message: str) -> None:
    """Print a log line on stderr without breaking a bar that is being drawn."""
    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()
