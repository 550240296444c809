"""benchmarks/recover/: recipes, cell names and the results table, on synthetic cells (no training)."""

import dataclasses

import numpy as np
import pytest

from benchmarks.recover.cells import GRIDS, RECIPES, budget_tag, recipe_config, recover_cell_id
from benchmarks.recover.table import recover_markdown
from robustprune.evaluate.paired import pack
from robustprune.recover import RecoverConfig


def test_recipes_add_one_thing_each():
    names = ("kd", "kd+feat", "kd+feat+sp", "kd+feat+sp+op", "full")
    kd, feat, sp, op, full = (recipe_config(r, 0, {}) for r in names)
    assert kd.feature_weight == kd.sp_weight == 0 and kd.expand == 1 and kd.adv_fraction == 0
    assert feat.feature_weight > 0 and feat.sp_weight == 0
    assert sp.sp_weight > 0 and sp.expand == 1
    assert op.expand > 1 and op.adv_fraction == 0
    assert full.adv_fraction > 0 and full.expand == op.expand and full.sp_weight == op.sp_weight
    assert recipe_config("default", 2, {"steps": 7}) == RecoverConfig(steps=7, seed=2)  # the library default
    assert recipe_config("full", 2, {"steps": 7}) == dataclasses.replace(full, steps=7, seed=2)
    assert recipe_config("full_fresh", 0, {}).inputs == "fresh"
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("magic", 0, {})
    assert set(GRIDS["val"]["recipes"]) <= set(RECIPES) and GRIDS["test"]["recipes"] == ["default", "default_real550"]


def test_cell_names_keep_budgets_and_start_points_apart():
    assert recover_cell_id("resnet20", 0.5, 0, "kd") == "resnet20__0.5__s0__kd"
    tag = budget_tag({"steps": 200, "batch_size": 64})
    assert tag == "batch_size64-steps200"
    assert recover_cell_id("resnet20", 0.5, 1, "kd", tag, "l1_uniform") == (
        "resnet20__0.5__s1__from_l1_uniform__kd__batch_size64-steps200"
    )


def _row(stage, clean, pgd, seed=0, recipe=None, draw=0):
    rng = np.random.default_rng(draw)
    report = {"corruption_accuracy": 0.7, "ood_auroc": {"digits": 0.8, "flipped": 0.7, "noise": 0.9}}
    row = {"model": "m", "target": 0.5, "seed": seed, "stage": stage, "report": report}
    row["per_image"] = {"clean": pack(rng.random(400) < clean), "pgd": pack(rng.random(200) < pgd)}
    if recipe:
        row.update(recipe=recipe, budget="", recover={"seconds": 12.0})
    return row


def test_table_reports_before_after_and_paired_verdicts():
    rows = [_row("original", 0.99, 0.95)]
    for seed in (0, 1):
        rows += [_row("before", 0.6, 0.4, seed, draw=seed), _row("after", 0.9, 0.7, seed, "kd", draw=seed + 10)]
        rows += [_row("after", 0.9, 0.7, seed, "kd+feat", draw=seed + 20)]
    text = recover_markdown(rows, "val", n_resamples=500)
    assert "## m at 0.5 of the cost, from the default search (seeds 0, 1)" in text
    lines = text.splitlines()
    kd_vs_before = next(line for line in lines if line.startswith("| kd vs before"))
    assert kd_vs_before.count("win") == 2  # +30 points on both metrics
    chain = next(line for line in lines if line.startswith("| kd+feat vs kd |"))
    assert "tie" in chain
    assert next(line for line in lines if line.startswith("| kd vs original")).count("loss") == 2
    table = [line for line in lines if line.startswith("| before |") or line.startswith("| kd |")]
    assert len(table) == 2 and "± " in table[0]  # two seeds: an interval
