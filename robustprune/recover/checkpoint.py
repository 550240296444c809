"""Resumable recovery: a checkpoint of everything the next step depends on, read back with weights_only=True."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from robustprune._io import claim, save_torch

CHECKPOINT_FILE = "recover.ckpt"


class CheckpointMismatchError(ValueError):
    """A checkpoint folder holds a run with different settings; the message says which."""


class CheckpointInUseError(CheckpointMismatchError):
    """Another live process is recovering into the same checkpoint folder."""


def checkpoint_path(directory: str | Path) -> Path:
    return Path(directory) / CHECKPOINT_FILE


def save_checkpoint(directory: str | Path, state: dict) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) atomically."""
    path = checkpoint_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torch(state, path)
    return path


def load_checkpoint(directory: str | Path, config: dict) -> dict | None:
    """The saved state, or None when there is none; CheckpointMismatchError if it was written with another config."""
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(state["config"])
    except Exception as exc:  # truncated by a full disk, or not ours
        raise CheckpointMismatchError(
            f"{path} is not a readable recovery checkpoint ({exc.__class__.__name__}); remove it to start over"
        ) from None
    if saved != json.loads(json.dumps(config)):
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != json.loads(json.dumps(config)).get(k))
        raise CheckpointMismatchError(
            f"{path} was written with different recovery settings ({', '.join(changed)}); "
            "use another checkpoint folder or the same settings"
        )
    return state


def rng_state(device: torch.device) -> dict:
    """The global CPU RNG state and, on CUDA, the device's (dropout and other global draws)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


#: The lock a recovery holds on its checkpoint folder (``robustprune._io.claim``: freed when its holder dies).
LOCK_FILE = ".recover.lock"


@contextlib.contextmanager
def hold_folder(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this recovery, or raise CheckpointInUseError: two processes writing one folder's
    checkpoints would resume from each other's steps."""
    with claim(folder / LOCK_FILE) as mine:
        if not mine:
            raise CheckpointInUseError(
                f"another process is recovering into checkpoint folder {folder}; wait for it or choose another"
            )
        yield
