"""Distillation losses: logit KD, DFBF intermediate supervision (kept channels or 1x1 adapter), SP-KD."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softmax at ``temperature``, batch mean, times T^2 (Hinton et al.)."""
    t = temperature
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * (t * t)


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Row-normalized batch Gram matrix of flattened features (b x b), Tung and Mori's G."""
    flat = features.float().flatten(1)
    return F.normalize(flat @ flat.t(), p=2, dim=1)


def sp_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]) -> torch.Tensor:
    """Similarity-preserving KD: mean over layers of ||G_s - G_t||_F^2 / b^2 (widths may differ)."""
    terms = []
    for s, t in zip(student, teacher, strict=True):
        b = s.shape[0]
        terms.append((similarity_matrix(s) - similarity_matrix(t)).pow(2).sum() / (b * b))
    return torch.stack(terms).mean()


def depth_weights(count: int) -> list[float]:
    """Weights growing linearly with depth and summing to 1 (DFBF weights deeper blocks more)."""
    total = count * (count + 1) / 2
    return [(i + 1) / total for i in range(count)]


def make_adapter(
    student_channels: int, teacher_channels: int, dims: int, gen: torch.Generator, axis: int = 1
) -> nn.Module:
    """A 1x1 map from the student's channels to the original's, for features of ``dims`` dimensions whose
    channels are on ``axis`` (1: (N, C, ...); -1 or ``dims - 1``: channels last, a Linear on the last axis).

    Initialized with the identity on the first min(c_s, c_t) channels plus small seeded noise,
    so training starts from "compare the leading channels" rather than from a random projection.
    """
    if dims == 2 or axis in (-1, dims - 1):
        layer: nn.Module = nn.Linear(student_channels, teacher_channels, bias=False)
    elif dims in (3, 4, 5):
        layer = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[dims](student_channels, teacher_channels, 1, bias=False)
    else:
        raise ValueError(f"cannot adapt features of {dims} dimensions with channels on axis {axis}")
    weight = torch.eye(teacher_channels, student_channels) + 0.01 * torch.randn(
        teacher_channels, student_channels, generator=gen
    )
    with torch.no_grad():
        layer.weight.copy_(weight.reshape(layer.weight.shape))
    return layer


def feature_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    layers: Sequence[str],
    kept: Mapping[str, Sequence[int]],
    adapters: nn.ModuleDict,
    axes: Mapping[str, int] | None = None,
) -> torch.Tensor:
    """DFBF: depth-weighted mean L1 distance of feature maps, through the kept channels or the layer's adapter.

    ``axes``: each layer's channel axis (default 1, as in (N, C, ...); -1 for channels-last outputs)."""
    total = None
    for weight, name in zip(depth_weights(len(layers)), layers, strict=True):
        s, t = student[name].float(), teacher[name].float()
        key = adapter_key(name)
        axis = (axes or {}).get(name, 1)
        if key in adapters:
            s = adapters[key](s)
        elif name in kept:
            t = t.index_select(axis, torch.as_tensor(kept[name], device=t.device))
        term = weight * (s - t).abs().mean()
        total = term if total is None else total + term
    return total


def adapter_key(layer: str) -> str:
    """ModuleDict keys cannot hold dots."""
    return layer.replace(".", "__")
