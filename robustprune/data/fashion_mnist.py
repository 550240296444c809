"""Fashion-MNIST read straight from the IDX gzip files of Debian's package.

Real data is used only to *evaluate* pruned models; robustprune never trains
or prunes on it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ROOT_ENV_VAR = "ROBUSTPRUNE_FASHION_MNIST"
INSTALL_HINT = "apt-get update && apt-get install -y dataset-fashion-mnist"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}

#: The zoo trains on train[:TRAIN_IMAGES]; the rest of the training file is the validation split every decision uses.
TRAIN_IMAGES = 55_000
#: Evaluation splits: the test set, and the held-out validation split train[55000:].
EvalSplit = Literal["test", "val"]
EVAL_SPLITS: tuple[str, ...] = get_args(EvalSplit)


class DataNotFoundError(FileNotFoundError):
    """Evaluation data is not installed; the message says how to get it."""


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else $ROBUSTPRUNE_FASHION_MNIST, else Debian's path."""
    return Path(root or os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT)


class DataError(ValueError):
    """An evaluation data file is there but unreadable (corrupt gzip, wrong format, truncated)."""


def _read_idx(path: Path, expected_dims: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path} is not a readable gzip file ({exc}); reinstall it: {INSTALL_HINT}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    dims = raw[3]
    if dims != expected_dims:
        raise DataError(f"{path} has {dims} dimensions, expected {expected_dims}")
    offset = 4 + 4 * dims
    if len(raw) < offset:
        raise DataError(f"{path} is truncated inside its header; reinstall it: {INSTALL_HINT}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} bytes of data")
    return data.reshape(shape)


def load_fashion_mnist(split: str = "test", root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)``: float images (N, 1, 28, 28) in [0, 1] and int64 labels.

    Raises DataNotFoundError naming the Debian package when the files are missing, DataError when
    they are unreadable.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    directory = resolve_root(root)
    image_name, label_name, count = _FILES[split]
    missing = [n for n in (image_name, label_name) if not (directory / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"Fashion-MNIST {split} files not found in {directory} (missing: {', '.join(missing)}). "
            f"Install them with: {INSTALL_HINT}  (or point ${ROOT_ENV_VAR} at a folder with the IDX .gz files)"
        )
    images = _read_idx(directory / image_name, 3)
    labels = _read_idx(directory / label_name, 1)
    if len(images) != len(labels) or len(images) != count:
        raise DataError(
            f"Fashion-MNIST {split}: {len(images)} images and {len(labels)} labels, expected {count} of each"
        )
    x = torch.from_numpy(images.copy()).float().div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_eval_split(split: str = "test", root: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The test set (``"test"``) or the validation split train[55000:] (``"val"``), as ``load_fashion_mnist``."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"evaluation split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if split == "test":
        return load_fashion_mnist("test", root)
    x, y = load_fashion_mnist("train", root)
    return x[TRAIN_IMAGES:].clone(), y[TRAIN_IMAGES:].clone()  # a view would keep all 60,000 images alive


def fits_fashion_mnist(spec) -> bool:
    """Whether a model of ``spec`` takes Fashion-MNIST images: (1, 28, 28) inputs, 10 classes."""
    return tuple(spec.shape) == (1, 28, 28) and spec.num_classes == 10


def fashion_mnist_available(root: str | os.PathLike | None = None) -> bool:
    directory = resolve_root(root)
    return all((directory / n).is_file() for f in _FILES.values() for n in f[:2])


def check_fashion_mnist(split: str = "test", root: str | os.PathLike | None = None) -> None:
    """Read ``split`` once so that a missing or corrupt file is reported before any expensive work
    (DataNotFoundError or DataError)."""
    load_fashion_mnist(split, root)
