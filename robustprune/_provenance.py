"""Where a number came from: commit, versions, threads, machine."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the robustprune checkout (with '-dirty' if code has changes), or 'unknown'."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # results/ holds outputs, not code: rewriting a table must not mark the code dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", ":(top,exclude)results"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def machine() -> str:
    """Processor, core count, GPU (when one is visible) and torch threads: enough to tell two machines apart."""
    parts = [f"{platform.machine()} {platform.processor() or platform.system()}", f"{os.cpu_count()} cores"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    parts.append(f"{torch.get_num_threads()} torch threads")
    return ", ".join(parts)


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
