"""On-disk cache of synthetic sets, keyed by the model's weights, its InputSpec and the SyntheticConfig.

A cache file holds tensors and plain JSON-able metadata only and is read with
``torch.load(weights_only=True)``. Nothing read back is trusted: shape, dtype, value
range, labels and a SHA-256 checksum of the pixels are verified, and a file that fails
(corrupt, truncated, written by another version) is regenerated with a warning.
Writes are atomic: a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from robustprune._io import staged_file
from robustprune.probes.synthetic import SyntheticConfig, SyntheticSet, generate
from robustprune.spec import InputSpec

#: Bump when generation changes in a way that makes old cached sets stale.
CACHE_VERSION = 1
CACHE_DIR_ENV_VAR = "ROBUSTPRUNE_CACHE_DIR"


def default_cache_dir() -> Path:
    """$ROBUSTPRUNE_CACHE_DIR, else ~/.cache/robustprune."""
    env = os.environ.get(CACHE_DIR_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robustprune"


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes()


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over the state_dict (parameters and buffers): names, dtypes, shapes and bytes, in sorted key order."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        value = state[name]
        if not isinstance(value, torch.Tensor):  # extra state: hash its repr
            h.update(f"{name}|extra|{value!r}\n".encode())
            continue
        h.update(f"{name}|{value.dtype}|{tuple(value.shape)}\n".encode())
        h.update(_tensor_bytes(value))
    return h.hexdigest()


def _architecture_signature(model: nn.Module) -> str:
    """Module names, classes and settings (stride, padding, ...): weights alone do not pin down the function."""
    return "\n".join(
        f"{name}:{type(m).__module__}.{type(m).__qualname__}({m.extra_repr()})" for name, m in model.named_modules()
    )


def cache_key(model: nn.Module, spec: InputSpec, config: SyntheticConfig) -> str:
    """SHA-256 of the weights hash, the architecture signature, spec.to_json(), the config as JSON and CACHE_VERSION."""
    payload = json.dumps(
        {
            "cache_version": CACHE_VERSION,
            "weights": weights_hash(model),
            "architecture": hashlib.sha256(_architecture_signature(model).encode()).hexdigest(),
            "spec": spec.to_json(),
            "config": config.to_dict(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_path(cache_dir: str | os.PathLike, config: SyntheticConfig, key: str) -> Path:
    return Path(cache_dir) / f"synthetic-{config.kind}-{key}.pt"


def _checksum(t: torch.Tensor) -> str:
    return hashlib.sha256(_tensor_bytes(t)).hexdigest()


def _load_verified(path: Path, key: str, spec: InputSpec, config: SyntheticConfig) -> SyntheticSet:
    """Load a cache file and check everything; raise ValueError naming the first problem."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors, truncated zip archives, ...
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or not {"pixels", "targets", "meta"} <= set(blob):
        raise ValueError("not a synthetic-set cache file")
    try:
        meta = json.loads(blob["meta"])
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError("metadata is not valid JSON") from exc
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    if meta.get("cache_version") != CACHE_VERSION or meta.get("key") != key:
        raise ValueError("written for another key or cache version")
    if meta.get("config") != config.to_dict():
        raise ValueError("stored config differs")
    pixels = blob["pixels"]
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.float32:
        raise ValueError("pixels are not a float32 tensor")
    if tuple(pixels.shape) != (config.n, *spec.shape):
        raise ValueError(f"pixels have shape {tuple(pixels.shape)}, expected {(config.n, *spec.shape)}")
    low, high = spec.value_range
    if not torch.isfinite(pixels).all() or pixels.min() < low or pixels.max() > high:
        raise ValueError("pixels are not finite or leave the value range")
    if meta.get("pixels_sha256") != _checksum(pixels):
        raise ValueError("pixel checksum mismatch")
    targets = blob["targets"]
    if config.kind == "inversion":
        if not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64 or tuple(targets.shape) != (config.n,):
            raise ValueError("targets are missing or malformed")
        if targets.min() < 0 or targets.max() >= spec.num_classes:
            raise ValueError("targets are out of range")
        if meta.get("targets_sha256") != _checksum(targets):
            raise ValueError("target checksum mismatch")
    elif targets is not None:
        raise ValueError("unexpected targets")
    seconds = meta.get("seconds")
    final_bn = meta.get("final_bn_loss")
    if not isinstance(seconds, int | float) or not (final_bn is None or isinstance(final_bn, int | float)):
        raise ValueError("malformed metadata")
    return SyntheticSet(pixels=pixels, targets=targets, config=config, seconds=float(seconds), final_bn_loss=final_bn)


def _atomic_save(obj: dict, path: Path) -> None:
    # owner-only: inputs inverted from a private model can reveal what it was trained on
    with staged_file(path, mode=0o600) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def cached_generate(
    model: nn.Module,
    spec: InputSpec,
    config: SyntheticConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    **kw,
) -> SyntheticSet:
    """:func:`~robustprune.probes.synthetic.generate` with an on-disk cache (``kw`` goes to generate).

    ``cache_dir`` defaults to :func:`default_cache_dir`. A hit is returned without running
    the model; a miss, or a cached file that fails verification (a warning says why), is
    generated and written atomically. If the cache cannot be written, a warning is issued
    and the fresh result is still returned. The ``device`` is not part of the key.
    """
    config = config or SyntheticConfig()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(model, spec, config)
    path = cache_path(directory, config, key)
    if path.exists():
        try:
            return _load_verified(path, key, spec, config)
        except ValueError as exc:
            warnings.warn(f"ignoring cached synthetic set {path}: {exc}; regenerating", stacklevel=2)
    result = generate(model, spec, config, **kw)
    pixels = result.pixels.detach().to("cpu", torch.float32).contiguous()
    targets = None if result.targets is None else result.targets.detach().to("cpu", torch.int64).contiguous()
    meta = {
        "cache_version": CACHE_VERSION,
        "key": key,
        "config": config.to_dict(),
        "spec": spec.to_dict(),
        "seconds": float(result.seconds),
        "final_bn_loss": None if result.final_bn_loss is None else float(result.final_bn_loss),
        "pixels_sha256": _checksum(pixels),
        "targets_sha256": None if targets is None else _checksum(targets),
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_save({"pixels": pixels, "targets": targets, "meta": json.dumps(meta)}, path)
    except OSError as exc:
        warnings.warn(f"could not write synthetic-set cache {path}: {exc}", stacklevel=2)
    return result
