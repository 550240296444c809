"""Where a number came from: commit, versions, threads, machine."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the robustprune checkout (with '-dirty' if it has changes), or 'unknown'."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or platform.system()}, {torch.get_num_threads()} torch threads"


def provenance(**extra) -> dict:
    from robustprune import __version__

    info = {
        "robustprune": __version__,
        "commit": git_commit(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(),
    }
    info.update(extra)
    return info
