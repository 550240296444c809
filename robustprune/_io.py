"""Crash-safe file output: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the whole new content, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is as readable as any other
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class staged_directory:
    """Write a run's files into a hidden staging folder, then move them into place together.

    On an exception (Ctrl-C included) the staging folder is removed, so ``directory``
    never holds a half-written result::

        with staged_directory(out) as tmp:
            write(tmp / "report.json")
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def __enter__(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.directory))
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        try:
            if exc_type is None:
                for item in sorted(self.staging.iterdir()):
                    target = self.directory / item.name
                    if target.is_dir() and item.is_dir():
                        shutil.rmtree(target)
                    os.replace(item, target)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
