"""benchmarks.split_probes: each search-type method with the split against itself without it."""

import numpy as np

from benchmarks.split_probes import against_unsplit
from tests.test_ablation_report import _row


def test_each_method_is_compared_with_itself_without_the_split_and_tallied():
    rng = np.random.default_rng(1)
    base = rng.random((3, 2000)) < 0.7
    better = base.copy()
    better[:, :300] = True  # the split fixes 300 images on every seed
    after = [_row("search", s, better[s]) for s in range(3)] + [
        _row("progressive_uniform", s, base[s]) for s in range(3)
    ]
    before = [_row("search", s, base[s]) for s in range(3)] + [
        _row("progressive_uniform", s, base[s]) for s in range(3)
    ]
    before.append(_row("l1_uniform+bn", 0, better[0]))  # a baseline is not a search-type method: never compared
    lines = against_unsplit(after, before, n_resamples=300)
    rows = [line for line in lines if line.startswith("| cnn |")]
    assert [r.split(" | ")[2] for r in rows] == ["search", "progressive_uniform"]
    gain = 100 * (better.mean() - base.mean())
    assert f"| {gain:+.2f} [" in rows[0] and "win; seeds" in rows[0]
    assert "+0.00 [+0.00, +0.00] tie" in rows[1]
    assert "| search | 1-0-0 | 1-0-0 | 1-0-0 |" in lines
    assert "| progressive_uniform | 0-1-0 | 0-1-0 | 0-1-0 |" in lines


def test_a_method_missing_on_one_side_is_left_out():
    correct = np.ones((3, 100), dtype=bool)
    after = [_row("search", s, correct[s]) for s in range(3)]
    lines = against_unsplit(after, [_row("oneshot_search", s, correct[s]) for s in range(3)], n_resamples=50)
    assert not [line for line in lines if line.startswith("| cnn |")]
