"""Accuracy, calibration and OOD-detection metrics on logits.

Everything except :func:`predict_logits` is a pure function of tensors (or
array-likes), so the metrics can be checked against hand-computed answers
without a model. :func:`predict_logits` is the single place where pixel-space
data meets a model: it normalizes through the :class:`InputSpec`, so callers
never have to remember which space a batch lives in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from robustprune._modes import eval_mode as _eval_mode
from robustprune._modes import model_device
from robustprune.spec import InputSpec

__all__ = [
    "accuracy",
    "auroc",
    "expected_calibration_error",
    "max_softmax",
    "ood_auroc",
    "predict_logits",
]


def _as_tensor(values: torch.Tensor | np.ndarray | list, name: str) -> torch.Tensor:
    """Accept tensors and array-likes alike, always on CPU, so metrics work on whatever the caller holds."""
    tensor = torch.as_tensor(values).detach().cpu()
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty; a metric over zero examples is undefined")
    return tensor


def _logits_and_labels(logits, labels) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _as_tensor(logits, "logits")
    labels = _as_tensor(labels, "labels").long()
    if logits.dim() != 2 or labels.dim() != 1 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected logits of shape (N, C) and labels of shape (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    return logits, labels


def predict_logits(
    model: nn.Module,
    spec: InputSpec,
    pixels: torch.Tensor,
    batch_size: int = 1000,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits of ``model`` on a pixel-space batch, as a CPU float tensor of shape (N, num_classes).

    Inputs are normalized with ``spec`` here so that every caller feeds the model
    the same thing. The model runs in eval mode (BatchNorm running statistics,
    no dropout) and under ``no_grad``; the previous train/eval flag of each
    submodule is restored afterwards, so evaluating does not change a model that
    is half-way through training. ``device`` defaults to the model's device; the
    model itself is never moved.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec.check_batch(pixels)
    run_on = model_device(model, device)
    chunks = []
    with _eval_mode(model), torch.no_grad():
        for start in range(0, pixels.shape[0], batch_size):
            batch = pixels[start : start + batch_size].to(run_on)
            if not batch.is_floating_point():
                batch = batch.float()
            chunks.append(model(spec.normalize(batch)).float().cpu())
    if not chunks:
        return torch.empty(0, spec.num_classes)
    return torch.cat(chunks)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit equals the label (ties go to the lowest class index)."""
    logits, labels = _logits_and_labels(logits, labels)
    return float((logits.argmax(dim=1) == labels).double().mean())


def max_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Maximum softmax probability per row, in float64.

    float64 because float32 softmax saturates to exactly 1.0 for confident
    predictions, which turns distinct confidences into ties and biases ECE
    binning and AUROC ranking.
    """
    logits = _as_tensor(logits, "logits")
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (N, C), got {tuple(logits.shape)}")
    return torch.softmax(logits.double(), dim=1).max(dim=1).values


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """Standard (top-label) expected calibration error.

    Confidence is the max softmax probability; it is split into ``n_bins``
    equal-width bins ``(lo, hi]`` over [0, 1] (the first bin also holds 0), and
    ECE is the example-weighted mean over bins of ``|accuracy - mean confidence|``.
    Weighting by bin size is what makes it the expected gap for a random example.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    logits, labels = _logits_and_labels(logits, labels)
    probs = torch.softmax(logits.double(), dim=1)
    confidence, prediction = probs.max(dim=1)
    correct = (prediction == labels).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    # bucketize(right=False) gives i with edges[i-1] < c <= edges[i] over the inner edges: (lo, hi] bins,
    # and anything <= the first inner edge (0 included) in bin 0.
    bins = torch.bucketize(confidence, edges[1:-1], right=False)
    counts = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = torch.bincount(bins, weights=correct, minlength=n_bins)
    # |sum correct - sum conf| / N == (n_b / N) * |acc_b - conf_b|; empty bins contribute 0.
    return float((correct_sum - conf_sum).abs().sum() / counts.sum())


def auroc(scores_in: torch.Tensor | np.ndarray, scores_out: torch.Tensor | np.ndarray) -> float:
    """Area under the ROC curve for telling in-distribution (positive) from OOD by a score.

    Higher scores should mean "in-distribution". Computed exactly as the
    Mann-Whitney U statistic over ``n_in * n_out``: the probability that a random
    in-distribution score beats a random OOD one, ties counting one half
    (average ranks from ``scipy.stats.rankdata``). This avoids an sklearn dependency
    and any threshold-grid approximation.
    """
    s_in = _as_tensor(scores_in, "scores_in").double().flatten().numpy()
    s_out = _as_tensor(scores_out, "scores_out").double().flatten().numpy()
    if np.isnan(s_in).any() or np.isnan(s_out).any():
        raise ValueError("scores contain NaN; AUROC is undefined")
    ranks = rankdata(np.concatenate([s_in, s_out]), method="average")
    n_in, n_out = len(s_in), len(s_out)
    u_in = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u_in / (n_in * n_out))


def ood_auroc(logits_in: torch.Tensor, logits_out: torch.Tensor) -> float:
    """AUROC of the max-softmax-probability detector (Hendrycks & Gimpel) between in- and out-of-distribution logits."""
    return auroc(max_softmax(logits_in), max_softmax(logits_out))


def corruption_accuracy(
    model: nn.Module, spec, x: torch.Tensor, y: torch.Tensor, seed: int, device, tick: Callable[[], None]
) -> dict[str, float]:
    """Mean accuracy over severities per corruption of ``x`` (pixels); ``tick`` after each corrupted set."""
    from robustprune.data.corruptions import corruption_suite

    per: dict[str, list[float]] = {}
    for name, _severity, corrupted in corruption_suite(x, seed=seed):
        per.setdefault(name, []).append(accuracy(predict_logits(model, spec, corrupted, device=device), y))
        tick()
    return {name: sum(v) / len(v) for name, v in per.items()}
