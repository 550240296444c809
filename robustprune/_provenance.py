"""Where a number came from: commit, versions, threads, machine."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from robustprune._version import __version__

#: Output folders (absolute, ``os.pathsep``-separated) whose changes do not make the code dirty; an
#: environment variable so that the worker processes a run starts inherit it (see ``outputs_excluded``).
OUTPUTS_ENV = "ROBUSTPRUNE_OUTPUT_DIRS"


def git_commit(path: str | Path | None = None, outputs: Sequence[str] | None = None) -> str:
    """The commit of the robustprune checkout (with '-dirty' if code has changes), or 'unknown'.

    ``outputs``: folders that hold outputs, not code, so rewriting them does not count as a change;
    default: those named by ``$ROBUSTPRUNE_OUTPUT_DIRS``.
    """
    cwd = Path(path) if path else Path(__file__).resolve().parent
    if outputs is None:
        outputs = [p for p in os.environ.get(OUTPUTS_ENV, "").split(os.pathsep) if p]
    try:
        sha, top = subprocess.run(
            ["git", "rev-parse", "HEAD", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.split()
        excluded = [f":(top,exclude){rel}" for rel in _inside(Path(top), outputs)]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/", *excluded],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def short_commit(commit: str) -> str:
    """A commit's first 7 characters, keeping its '-dirty' mark (for tables that list many cells' commits)."""
    return commit[:7] + ("-dirty" if commit.endswith("-dirty") else "")


def _inside(top: Path, paths: Sequence[str | Path]) -> list[str]:
    """``paths`` (absolute, or relative to the working directory) that lie in ``top``, relative to it."""
    out = []
    for p in paths:
        try:
            out.append(Path(p).resolve().relative_to(top.resolve()).as_posix())
        except ValueError:
            continue  # outside the checkout: git does not see it anyway
    return out


@contextlib.contextmanager
def outputs_excluded(*paths: str | Path) -> Iterator[None]:
    """Within the context, changes under ``paths`` do not make ``git_commit`` dirty (here and in child processes)."""
    before = os.environ.get(OUTPUTS_ENV)
    os.environ[OUTPUTS_ENV] = os.pathsep.join([*(str(Path(p).resolve()) for p in paths), *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(OUTPUTS_ENV, None)
        else:
            os.environ[OUTPUTS_ENV] = before


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor's model name (/proc/cpuinfo on Linux, where platform.processor() is empty)."""
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.system()


def machine() -> str:
    """Processor and the vector instructions torch's kernels use (two hosts that differ there round differently),
    core count, GPU (when one is visible) and torch threads: enough to tell two machines apart."""
    capability = torch.backends.cpu.get_cpu_capability()
    parts = [f"{platform.machine()} {cpu_name()} ({capability})", f"{os.cpu_count()} cores"]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    parts.append(f"{torch.get_num_threads()} torch threads")
    return ", ".join(parts)


#: The commit a long run started at (pin_commit), in the environment so that its worker processes report it too.
PINNED_COMMIT_ENV = "ROBUSTPRUNE_PINNED_COMMIT"


def pin_commit() -> str:
    """Record the checkout's commit now, at the start of a long run: provenance() in this process and the
    workers it starts reports it from then on, even after a commit made mid-run."""
    commit = git_commit()
    os.environ[PINNED_COMMIT_ENV] = commit
    return commit


def provenance(**extra) -> dict:
    info = {
        "robustprune": __version__,
        "commit": os.environ.get(PINNED_COMMIT_ENV) or git_commit(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(),
    }
    info.update(extra)
    return info
