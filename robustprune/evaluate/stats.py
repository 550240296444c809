"""Paired statistics for comparing two pruned models on the same images.

A comparison of methods A and B takes per-image correctness arrays of shape
``(seeds, images)``: row ``s`` holds which of the shared evaluation images each
method classified correctly for seed ``s``. Pairing on the same images removes the
image-sampling noise a difference of two independent accuracies would carry.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats

__all__ = [
    "Comparison",
    "SeedComparison",
    "compare",
    "mcnemar",
    "mean_ci",
    "paired_bootstrap",
    "paired_seed_interval",
    "verdict",
]


def _correctness(values, name: str) -> np.ndarray:
    """A (seeds, images) float array of 0/1 values; a 1-d array is one seed."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be (seeds, images) 0/1 correctness, got shape {array.shape}")
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold 0/1 correctness values")
    return array


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the two-sided t-interval (half-width 0 for a single value)."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(array.mean())
    if array.size == 1:
        return mean, 0.0
    sem = float(array.std(ddof=1)) / np.sqrt(array.size)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, array.size - 1) * sem)


def mcnemar(a_correct, b_correct) -> float:
    """Exact two-sided McNemar p-value for one seed: a binomial test on the discordant images."""
    a = _correctness(a_correct, "a_correct")
    b = _correctness(b_correct, "b_correct")
    if a.shape != b.shape or a.shape[0] != 1:
        raise ValueError(f"mcnemar compares one seed's images: shapes {a.shape} and {b.shape}")
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_bootstrap(
    a_correct, b_correct, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0, chunk: int = 500
) -> tuple[float, float, float]:
    """Accuracy difference A - B and its percentile interval, resampling seeds and images.

    Each resample draws seeds with replacement and images with replacement (the same
    images for every seed, since the images are shared), so the interval carries both
    the seed-to-seed spread and the finite test set.
    """
    a = _correctness(a_correct, "a_correct")
    b = _correctness(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"a and b must be evaluated on the same seeds and images: {a.shape} vs {b.shape}")
    diff = a - b
    n_seeds, n_images = diff.shape
    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=size).T  # (images, size)
        per_seed = diff @ counts / n_images  # (seeds, size): each seed's mean difference on the resampled images
        picks = rng.integers(0, n_seeds, size=(n_seeds, size))
        samples[start : start + size] = np.take_along_axis(per_seed, picks, axis=0).mean(axis=0)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """'win' when the interval of A - B lies above zero, 'loss' below it, 'tie' when it covers zero."""
    if low > 0:
        return "win"
    if high < 0:
        return "loss"
    return "tie"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A paired comparison of A against B on shared images, in accuracy points (0-100).

    ``verdict`` is the pooled rule's (a bootstrap over seeds and images); ``seed_verdict`` the seed-level
    rule's (a t-interval over the per-seed differences; None with one seed). ``at_boundary``: a pooled bound
    lies within ``boundary`` points of zero, inside the bootstrap's Monte Carlo error.
    """

    difference: float
    low: float
    high: float
    verdict: str
    seed_differences: tuple[float, ...]
    mcnemar_p: tuple[float, ...]
    seed_low: float | None = None
    seed_high: float | None = None
    seed_verdict: str | None = None
    at_boundary: bool = False

    @property
    def both_rules_verdict(self) -> str:
        """'win' or 'loss' only where the pooled and the seed-level rule agree and no pooled bound is at the
        Monte Carlo boundary; 'tie' otherwise (the evaluation protocol, amendment 9)."""
        if self.verdict != "tie" and self.seed_verdict == self.verdict and not self.at_boundary:
            return self.verdict
        return "tie"

    def describe(self, with_p: bool = False, both_rules: bool = False) -> str:
        """``+1.20 [+0.40, +2.00] win (per seed +1.00, +1.40)``; ``with_p`` adds each seed's McNemar p,
        ``both_rules`` the seed-level interval and verdict and the Monte Carlo boundary mark."""
        if with_p:
            pairs = zip(self.seed_differences, self.mcnemar_p, strict=True)
            spread = ", ".join(f"{d:+.2f} p={_p(p)}" for d, p in pairs)
        else:
            spread = ", ".join(f"{d:+.2f}" for d in self.seed_differences)
        verdict_ = self.verdict
        if both_rules:
            verdict_ += " at the Monte Carlo boundary" if self.at_boundary else ""
            if self.seed_verdict is None:
                verdict_ += "; seeds: 1 seed, no interval"
            else:
                verdict_ += f"; seeds [{self.seed_low:+.2f}, {self.seed_high:+.2f}] {self.seed_verdict}"
        return _interval_text(self.difference, self.low, self.high, verdict_, spread)


def _interval_text(difference: float, low: float, high: float, verdict_: str, spread: str) -> str:
    return f"{difference:+.2f} [{low:+.2f}, {high:+.2f}] {verdict_} (per seed {spread})"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


@dataclasses.dataclass(frozen=True)
class SeedComparison:
    """A comparison of A against B on one number per seed (no per-image data): a t-interval of the
    per-seed differences. With one seed there is no interval and no verdict."""

    difference: float
    low: float | None
    high: float | None
    verdict: str | None
    seed_differences: tuple[float, ...]

    def describe(self) -> str:
        spread = ", ".join(f"{d:+.2f}" for d in self.seed_differences)
        if self.verdict is None:
            return f"{self.difference:+.2f} (1 seed: no interval)"
        return _interval_text(self.difference, self.low, self.high, self.verdict, spread)


def paired_seed_interval(a, b, confidence: float = 0.95) -> SeedComparison:
    """Mean of the per-seed differences A - B with its two-sided t-interval (pairs: same seed)."""
    a_values = np.asarray(a, dtype=np.float64).ravel()
    b_values = np.asarray(b, dtype=np.float64).ravel()
    if a_values.shape != b_values.shape or a_values.size == 0:
        raise ValueError(f"a and b need one value per shared seed: {a_values.shape} vs {b_values.shape}")
    diff = a_values - b_values
    mean, half = mean_ci(diff, confidence)
    spread = tuple(float(d) for d in diff)
    if diff.size == 1:
        return SeedComparison(mean, None, None, None, spread)
    return SeedComparison(mean, mean - half, mean + half, verdict(mean - half, mean + half), spread)


def compare(a_correct, b_correct, n_resamples: int = 10_000, seed: int = 0, boundary: float = 0.1) -> Comparison:
    """Bootstrap interval, verdict, per-seed differences and per-seed McNemar p-values of A vs B, with the
    seed-level t-interval beside it and a pooled bound within ``boundary`` points of zero marked."""
    a = _correctness(a_correct, "a_correct")
    b = _correctness(b_correct, "b_correct")
    difference, low, high = paired_bootstrap(a, b, n_resamples=n_resamples, seed=seed)
    per_seed = [float(100 * (a[s].mean() - b[s].mean())) for s in range(a.shape[0])]
    seeds = paired_seed_interval(per_seed, np.zeros(len(per_seed)))
    return Comparison(
        difference=100 * difference,
        low=100 * low,
        high=100 * high,
        verdict=verdict(low, high),
        seed_differences=tuple(per_seed),
        mcnemar_p=tuple(mcnemar(a[s], b[s]) for s in range(a.shape[0])),
        seed_low=seeds.low,
        seed_high=seeds.high,
        seed_verdict=seeds.verdict,
        # a zero-width interval (no discordant images) has no Monte Carlo error to be near
        at_boundary=low < high and min(abs(100 * low), abs(100 * high)) <= boundary,
    )
