"""Paired statistics used to call a comparison a win, a tie or a loss."""

import numpy as np
import pytest
from scipy import stats as sps

from robustprune.evaluate.stats import compare, mcnemar, mean_ci, paired_bootstrap, verdict


def test_mean_ci_matches_the_t_interval():
    values = [84.4, 86.7, 83.9]
    mean, half = mean_ci(values)
    low, high = sps.t.interval(0.95, 2, loc=np.mean(values), scale=sps.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert mean - half == pytest.approx(low) and mean + half == pytest.approx(high)
    assert mean_ci([3.0]) == (3.0, 0.0)


def test_mcnemar_counts_only_discordant_images():
    a = np.array([1] * 10 + [1] * 50 + [0] * 40)
    b = np.array([0] * 10 + [1] * 50 + [0] * 40)
    assert mcnemar(a, b) == pytest.approx(2 * 0.5**10)
    assert mcnemar(a, a) == 1.0
    # swapping which images are discordant (not how many) leaves p unchanged
    assert mcnemar(b, a) == pytest.approx(mcnemar(a, b))


def test_identical_methods_tie_with_a_zero_interval():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 500)) < 0.8).astype(float)
    diff, low, high = paired_bootstrap(a, a, n_resamples=200)
    assert (diff, low, high) == (0.0, 0.0, 0.0)
    assert verdict(low, high) == "tie"


def test_a_clear_gain_is_a_win_and_its_reverse_a_loss():
    rng = np.random.default_rng(1)
    b = (rng.random((3, 2000)) < 0.7).astype(float)
    a = b.copy()
    a[:, :200] = 1.0  # A fixes some of B's mistakes on the same images
    result = compare(a, b, n_resamples=500)
    assert result.verdict == "win" and result.low > 0
    assert compare(b, a, n_resamples=500).verdict == "loss"
    assert all(p < 0.05 for p in result.mcnemar_p)
    assert result.difference == pytest.approx(100 * (a.mean() - b.mean()))


def test_noise_alone_is_a_tie_and_the_interval_covers_the_truth():
    rng = np.random.default_rng(2)
    shared = rng.random((3, 3000)) < 0.85
    flip_a = rng.random((3, 3000)) < 0.05  # independent 5% disagreement each, no true difference
    flip_b = rng.random((3, 3000)) < 0.05
    a = (shared ^ flip_a).astype(float)
    b = (shared ^ flip_b).astype(float)
    diff, low, high = paired_bootstrap(a, b, n_resamples=1000)
    assert low < 0 < high
    assert verdict(low, high) == "tie"


def test_the_bootstrap_is_deterministic_per_seed_and_checks_shapes():
    rng = np.random.default_rng(3)
    a = (rng.random((2, 300)) < 0.6).astype(float)
    b = (rng.random((2, 300)) < 0.6).astype(float)
    assert paired_bootstrap(a, b, n_resamples=300, seed=5) == paired_bootstrap(a, b, n_resamples=300, seed=5)
    with pytest.raises(ValueError, match="same seeds and images"):
        paired_bootstrap(a, b[:, :200])
    with pytest.raises(ValueError, match="0/1"):
        paired_bootstrap(a * 2, b)


def test_paired_seed_interval_is_a_t_interval_of_the_differences():
    from scipy import stats as scipy_stats

    from robustprune.evaluate.stats import paired_seed_interval

    a, b = [80.0, 82.0, 81.0], [78.0, 79.0, 80.5]
    result = paired_seed_interval(a, b)
    diff = np.array(a) - np.array(b)
    half = scipy_stats.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    assert result.difference == pytest.approx(diff.mean())
    assert (result.low, result.high) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert result.verdict == ("win" if diff.mean() - half > 0 else "tie")
    assert result.describe().startswith(f"{diff.mean():+.2f} [")
    one = paired_seed_interval([80.0], [79.0])
    assert one.verdict is None and one.describe() == "+1.00 (1 seed: no interval)"
    with pytest.raises(ValueError, match="one value per shared seed"):
        paired_seed_interval([1.0, 2.0], [1.0])


def test_describe_with_p_names_each_seeds_mcnemar_p():
    a = np.zeros((2, 200))
    b = np.zeros((2, 200))
    a[:, :40] = 1  # A right on 40 images B gets wrong: p far below 0.001
    result = compare(a, b, n_resamples=200)
    assert result.describe(with_p=True).endswith("(per seed +20.00 p=<0.001, +20.00 p=<0.001)")
    assert "p=" not in result.describe()


def _seeds_apart(gains: list[int], n_images: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """B right on the first 70% of the images; A fixes ``gains[s]`` more of B's mistakes in seed s."""
    b = np.zeros((len(gains), n_images))
    b[:, : int(0.7 * n_images)] = 1
    a = b.copy()
    for s, gain in enumerate(gains):
        a[s, int(0.7 * n_images) : int(0.7 * n_images) + gain] = 1
    return a, b


def test_a_pooled_win_with_spread_seeds_is_a_tie_under_both_rules():
    # per seed +0.5, +4.0, +7.5 points: every seed gains, so the pooled bootstrap (3 seeds resampled) excludes
    # zero, but the seed-level t-interval (2 degrees of freedom) is [-5.0, +12.0] and covers it
    a, b = _seeds_apart([20, 160, 300])
    result = compare(a, b, n_resamples=2000)
    assert result.verdict == "win"
    assert result.seed_verdict == "tie" and result.seed_low < 0 < result.seed_high
    mean, half = mean_ci(result.seed_differences)
    assert (result.seed_low, result.seed_high) == pytest.approx((mean - half, mean + half))
    assert result.both_rules_verdict == "tie"
    assert "; seeds [" in result.describe(both_rules=True) and "seeds [" not in result.describe()


def test_a_steady_gain_is_a_win_under_both_rules_and_its_reverse_a_loss():
    a, b = _seeds_apart([200, 210, 190])
    assert compare(a, b, n_resamples=1000).both_rules_verdict == "win"
    reverse = compare(b, a, n_resamples=1000)
    assert (reverse.verdict, reverse.seed_verdict, reverse.both_rules_verdict) == ("loss", "loss", "loss")


def test_a_pooled_bound_within_the_boundary_of_zero_is_marked_and_counted_as_a_tie():
    a, b = _seeds_apart([200, 210, 190])
    clear = compare(a, b, n_resamples=1000)
    assert not clear.at_boundary and clear.low > 0.1
    # the same comparison with a boundary wider than its lower bound: marked, counted as a tie
    marked = compare(a, b, n_resamples=1000, boundary=clear.low + 0.01)
    assert marked.at_boundary and marked.verdict == "win" and marked.seed_verdict == "win"
    assert marked.both_rules_verdict == "tie"
    assert "win at the Monte Carlo boundary; seeds" in marked.describe(both_rules=True)


def test_one_seed_has_no_seed_level_verdict_so_nothing_counts_under_both_rules():
    a, b = _seeds_apart([200])
    result = compare(a, b, n_resamples=500)
    assert result.verdict == "win" and result.seed_verdict is None
    assert result.both_rules_verdict == "tie"
    assert "seeds: 1 seed, no interval" in result.describe(both_rules=True)


def test_a_loss_whose_upper_bound_is_at_the_boundary_is_marked_too():
    a, b = _seeds_apart([200, 210, 190])
    loss = compare(b, a, n_resamples=1000)
    assert loss.verdict == "loss" and loss.high < -0.1 and not loss.at_boundary
    marked = compare(b, a, n_resamples=1000, boundary=-loss.high)  # a bound exactly at the boundary counts
    assert marked.at_boundary and marked.both_rules_verdict == "tie"
    assert "loss at the Monte Carlo boundary" in marked.describe(both_rules=True)
