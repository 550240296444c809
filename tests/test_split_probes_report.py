"""benchmarks.split_probes: each search-type method with the split against itself without it, and the decision."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from benchmarks.split_probes import against_control, comparable, decision
from robustprune.bench import load_suite
from tests.test_ablation_report import _row


def _rows(method: str, correct: np.ndarray, target: float = 0.5, seeds=range(3)) -> list[dict]:
    return [{**_row(method, s, correct[s]), "target": target} for s in seeds]


def test_each_method_is_compared_with_itself_without_the_split_and_tallied():
    rng = np.random.default_rng(1)
    base = rng.random((3, 2000)) < 0.7
    better = base.copy()
    better[:, :300] = True  # the split fixes 300 images on every seed
    after = _rows("search", better) + _rows("progressive_uniform", base) + _rows("search", base, target=0.3)
    control = (
        _rows("search", base) + _rows("progressive_uniform", base) + _rows("search", better, target=0.3, seeds=[1])
    )
    control.append(_row("l1_uniform+bn", 0, better[0]))  # a baseline is not a search-type method: never compared
    lines, tally = against_control(after, control, n_resamples=300)
    rows = [line for line in lines if line.startswith("| cnn |")]
    assert [r.split(" | ")[1:4] for r in rows] == [
        ["0.3", "search", "1"],
        ["0.5", "search", "3"],
        ["0.5", "progressive_uniform", "3"],
    ]
    gain = 100 * (better.mean() - base.mean())
    assert f"| {gain:+.2f} [" in rows[1] and "win; seeds" in rows[1]
    assert "+0.00 [+0.00, +0.00] tie" in rows[2]
    # the one-seed pair (0.3) is shown but not counted
    assert tally[("search", "clean")] == Counter(win=1) and tally[("progressive_uniform", "pgd")] == Counter(tie=1)


def test_the_decision_waits_for_every_cell_then_applies_the_rule():
    def tally(clean, pgd):
        return {
            ("search", "clean"): Counter(dict(zip(("win", "tie", "loss"), clean, strict=True))),
            ("search", "pgd"): Counter(dict(zip(("win", "tie", "loss"), pgd, strict=True))),
        }

    assert "not yet" in decision(tally((3, 11, 0), (2, 12, 0)), (41, 42), 42, 14)
    assert "not yet" in decision(tally((3, 10, 0), (2, 11, 0)), (42, 42), 42, 14)  # 13 pairs counted
    assert "adopt split_probes" in decision(tally((3, 10, 1), (1, 12, 1)), (42, 42), 42, 14)
    assert "keep split_probes off" in decision(tally((1, 13, 0), (1, 13, 0)), (42, 42), 42, 14)  # +1: not enough
    assert "keep split_probes off" in decision(tally((5, 8, 1), (0, 13, 1)), (42, 42), 42, 14)  # PGD net -1
    assert "were not run" in decision(tally((5, 8, 1), (0, 13, 1)), (42, 42), 42, 14)  # says so in words
    assert "were not run" not in decision(tally((3, 10, 1), (1, 12, 1)), (42, 42), 42, 14)


def test_suites_that_differ_beyond_the_split_are_refused():
    split, control, before = load_suite("split_val"), load_suite("split_val_off"), load_suite("ablation_val")
    comparable([split, control, before])  # as packaged: comparable
    assert control.search == {"split_probes": False} and split.search == {"split_probes": True}
    with pytest.raises(SystemExit, match="differ beyond split_probes"):
        comparable([split, dataclasses.replace(control, search={"split_probes": False, "trials": 6})])
    with pytest.raises(SystemExit, match="differ beyond split_probes"):
        comparable([split, dataclasses.replace(before, paired={**before.paired, "n_pgd": 1000})])
