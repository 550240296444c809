"""The user's own evaluation data: an image-folder tree, or an ``.npz`` / ``.pt`` file of tensors.

Everything comes back in the pixel space of the model's InputSpec (``spec.value_range``), shaped
``(N, *spec.shape)``, with labels when the data has them. Nothing here is used for pruning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from robustprune._progress import progress_bar
from robustprune.data.fashion_mnist import DataError
from robustprune.spec import InputSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_user_data(
    path: str | os.PathLike, spec: InputSpec, labels: bool = True, quiet: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(x, y)`` from ``path``: x float32 ``(N, *spec.shape)`` in ``spec.value_range``, y int64 ``(N,)`` or None.

    ``path`` is a folder with one subfolder of images per class (classes in sorted name order, as torchvision's
    ImageFolder, images found at any depth in them; images directly in the folder: unlabeled), or an ``.npz`` /
    ``.pt`` file holding ``x`` (already in the spec's pixel range) and optionally ``y``. ``labels=False`` (OOD
    sets) ignores any labels and class folders' count. Raises DataError (one line) on anything unusable. A
    progress bar shows on a terminal while an image folder is read, unless ``quiet``.
    """
    path = Path(path)
    if path.is_dir():
        x, y = _read_image_folder(path, spec, labels, quiet)
    elif path.suffix == ".npz" and path.is_file():
        x, y = _read_npz(path)
    elif path.suffix == ".pt" and path.is_file():
        x, y = _read_pt(path)
    elif not path.exists():
        raise DataError(f"evaluation data not found: {path}")
    else:
        raise DataError(f"{path}: evaluation data is an image folder, an .npz or a .pt file of x (and y)")
    return check_user_data(path, x, y if labels else None, spec)


def _read_npz(path: Path) -> tuple[object, object]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # zipfile, pickle refusal, truncation: one line
        raise DataError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return _x_and_y(path, arrays)


def _read_pt(path: Path) -> tuple[object, object]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"could not read {path} with weights_only=True ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a dict with x (and y), found {type(data).__name__}")
    return _x_and_y(path, data)


def _x_and_y(path: Path, data: dict) -> tuple[object, object]:
    if "x" not in data:
        raise DataError(f"{path} has no 'x' (keys: {', '.join(map(str, data)) or 'none'}); save x (N, C, H, W) and y")
    return data["x"], data.get("y")


def check_user_data(
    path: str | Path, x: object, y: object, spec: InputSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x and y as tensors, checked against ``spec`` (shape, finite values inside the pixel range, labels in range);
    ``path`` names the source in the DataError."""
    try:
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:  # strings, ragged lists, sparse
        raise DataError(f"{path}: x is not an array of numbers ({type(exc).__name__})") from None
    if x.layout != torch.strided:
        raise DataError(f"{path}: x must be a dense array, got a {x.layout} tensor")
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{path}: x must hold numbers, got dtype {x.dtype}")
    x = x.to(torch.float32)
    if x.dim() != len(spec.shape) + 1 or tuple(x.shape[1:]) != spec.shape:
        raise DataError(
            f"{path}: x has shape {tuple(x.shape)}; the model's spec needs (N, {', '.join(map(str, spec.shape))})"
        )
    if len(x) == 0:
        raise DataError(f"{path}: x holds no examples")
    if not torch.isfinite(x).all():
        raise DataError(f"{path}: x holds NaN or infinite values")
    low, high = spec.value_range
    if x.min() < low - 1e-4 or x.max() > high + 1e-4:
        raise DataError(
            f"{path}: x spans [{x.min():.3g}, {x.max():.3g}], outside the spec's pixel range [{low:g}, {high:g}]; "
            "give pixels, not normalized inputs (or set --value-range)"
        )
    x = x.clamp(low, high)  # within the tolerance above: the attacks take the range strictly
    if y is None:
        return x, None
    try:
        y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise DataError(f"{path}: y is not an array of integer labels ({type(exc).__name__})") from None
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1 or len(y) != len(x):
        raise DataError(f"{path}: y must be {len(x)} integer labels, got dtype {y.dtype} and shape {tuple(y.shape)}")
    y = y.to(torch.int64)
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise DataError(f"{path}: labels span {int(y.min())}..{int(y.max())}; the model has {spec.num_classes} classes")
    return x, y


def _read_image_folder(
    root: Path, spec: InputSpec, labels: bool = True, quiet: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Images under ``root/<class>/`` (labels by sorted class name) or directly in ``root`` (no labels)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        loose = _images(root)
        if loose:
            raise DataError(
                f"{root} holds class folders and also {len(loose)} image{'s' * (len(loose) > 1)} outside them "
                f"({loose[0].name}, ...): "
                "move each into its class folder, or remove the class folders for unlabeled data"
            )
        files = [(f, label) for label, folder in enumerate(classes) for f in _images(folder, recursive=True)]
        empty = sorted({c.name for c in classes} - {classes[label].name for _, label in files})
        if empty and labels:  # every later class's label would shift by one
            raise DataError(
                f"{root}: class folder{'s' * (len(empty) > 1)} {', '.join(empty)} hold{'s' * (len(empty) == 1)} no "
                "images, which would shift the labels of the classes after it; remove it or add its images"
            )
        if len(classes) > spec.num_classes and labels:
            raise DataError(f"{root} has {len(classes)} class folders; the model has {spec.num_classes} classes")
        names = [c.name for c in classes]
        if labels and all(n.isascii() and n.isdigit() for n in names) and names != sorted(names, key=int):
            first = next(i for i, (a, b) in enumerate(zip(names, sorted(names, key=int), strict=True)) if a != b)
            warnings.warn(  # ImageFolder's order, kept; a model trained with label = the number would be misread
                f"{root}: class folders are numbers, labelled in name order as torchvision's ImageFolder does "
                f"(folder {names[first]} is label {first}); if your labels are the numbers, zero-pad the names",
                stacklevel=3,
            )
    else:
        files = [(f, None) for f in _images(root)]
    if not files:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}), directly or in class subfolders")
    images = []
    with progress_bar(len(files), f"reading {root.name}", quiet=quiet, unit="image") as bar:
        for file, _ in files:
            images.append(_read_image(file, spec))
            bar.update(1)
    x = torch.stack(images)
    y = torch.tensor([label for _, label in files]) if classes else None
    return x, y


def _images(folder: Path, recursive: bool = False) -> list[Path]:
    """The images in ``folder`` (and below it when ``recursive``); hidden files (macOS ``._x.png`` resource forks)
    and hidden folders are skipped."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        f
        for f in found
        if f.is_file()
        and f.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    )


def _is_16_bit_container(image) -> bool:
    """Whether a 32-bit mode ``I`` image holds 16-bit pixels: Pillow opens 16-bit PGMs, and before 10.3 16-bit
    PNGs, as mode ``I``; those formats have no wider integers. A TIFF's mode ``I`` is a true 32-bit image."""
    low, high = image.getextrema()
    return image.format in ("PNG", "PPM") and 0 <= low and high <= 65535


def _read_image(path: Path, spec: InputSpec) -> torch.Tensor:
    """One image converted to the spec's channels and (H, W) (bilinear), scaled to its pixel range."""
    from PIL import Image, UnidentifiedImageError

    if len(spec.shape) != 3 or spec.shape[0] not in _MODES:
        raise DataError(f"image folders need a spec of shape (1, 3 or 4 channels, H, W), got {spec.shape}")
    channels, height, width = spec.shape
    try:
        with Image.open(path) as image:
            wide = image.mode == "F" or (image.mode == "I" and not _is_16_bit_container(image))
            if wide:  # floats, or integers beyond 16 bits: no white level to scale by
                raise DataError(
                    f"{path} is a {'float' if image.mode == 'F' else 'signed or 32-bit integer'} image, whose white "
                    "level is unknown: save it as unsigned 8 or 16 bits, or pass its pixels in an .npz or .pt file"
                )
            if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey (medical, depth): white is 65535
                grey = image.convert("I").convert("F").resize((width, height), Image.Resampling.BILINEAR)
                array = np.repeat(np.asarray(grey, dtype=np.float32)[..., None] / 65535.0, channels, axis=2)
                if channels == 4:
                    array[..., 3] = 1.0  # opaque
            else:
                image = image.convert(_MODES[channels]).resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:  # a bomb is no OSError
        raise DataError(f"could not read image {path} ({type(exc).__name__})") from None
    pixels = torch.from_numpy(np.ascontiguousarray(array.reshape(height, width, channels))).permute(2, 0, 1)
    low, high = spec.value_range
    return low + (high - low) * pixels
