"""The ablation table: paired verdicts from per-image correctness stored in bench cells."""

import numpy as np
import pytest
import torch

from benchmarks.ablation import ablation_markdown, comparisons
from robustprune.evaluate.paired import pack


def _row(method: str, seed: int, correct: np.ndarray, clean: float | None = None) -> dict:
    per_image = {m: pack(torch.from_numpy(correct)) for m in ("clean", "pgd", "apgd")}
    accuracy = float(correct.mean()) if clean is None else clean
    return {
        "model": "cnn",
        "method": method,
        "target": 0.5,
        "target_kind": "macs",
        "seed": seed,
        "kept_macs": 0.49,
        "kept_params": 0.52,
        "prune_seconds": 1800.0 if method == "search" else 36.0,
        "per_image": per_image,
        "report": {
            "clean_accuracy": accuracy,
            "corruption_accuracy": 0.5,
            "ood_auroc": {"digits": 0.9, "flipped": 0.8, "noise": 0.7},
        },
    }


def _rows():
    rng = np.random.default_rng(0)
    base = rng.random((3, 2000)) < 0.7
    better = base.copy()
    better[:, :300] = True  # search fixes 300 images the others get wrong
    rows = []
    for seed in range(3):
        rows.append(_row("search", seed, better[seed]))
        rows.append(_row("progressive_uniform", seed, base[seed]))
        rows.append(_row("oneshot_search", seed, better[seed]))  # identical: a tie
        rows.append(_row("l1_uniform+bn", seed, base[seed]))
        rows.append(_row("global_magnitude+bn", seed, base[seed], clean=0.1))
    return rows


def test_verdicts_name_wins_ties_and_the_best_baseline():
    by_method = {}
    for row in _rows():
        by_method.setdefault(row["method"], []).append(row)
    lines = comparisons(by_method, n_resamples=300)
    assert len(lines) == 3  # progressive_uniform, oneshot_search, the best baseline (search_random absent)
    assert lines[0].startswith("| search vs progressive_uniform |") and "win" in lines[0]
    assert lines[1].startswith("| search vs oneshot_search |") and "+0.00 [+0.00, +0.00] tie" in lines[1]
    assert lines[2].startswith("| search vs best baseline (l1_uniform+bn) |")  # by mean clean, not global_magnitude


def test_the_markdown_has_a_table_per_cell():
    text = ablation_markdown(_rows(), "ablation_val", n_resamples=200)
    assert "## cnn at 0.5 of macs" in text
    assert text.count("| search vs ") == 3
    assert "| search | 49.0 | 52.0 |" in text  # kept MACs and params


def test_the_table_states_the_compute_each_method_used():
    rows = _rows()
    rows[0]["eval_seconds"] = 360.0  # search, seed 0: the only timed evaluation
    rows[1] |= {"pruned_in": {"prune_seconds": 3600.0}, "prune_seconds": 2.0}  # a reused model: its pruning's time
    text = ablation_markdown(rows, "ablation_val", n_resamples=50)
    assert "| search | 3 | 1.50 | 0.10 (1) |" in text
    assert "| progressive_uniform | 3 | 1.02 | - |" in text  # 3600 + 36 + 36 seconds
    assert "Pruning in all: 2.6 h." in text  # 1.50 + 1.02 + 3 x 0.03


def test_kept_params_are_left_blank_where_a_cell_lacks_them():
    rows = _rows()
    for row in rows:
        if row["method"] == "search" and row["seed"] == 1:
            del row["kept_params"]
    text = ablation_markdown(rows, "ablation_val", n_resamples=50)
    assert "| search | 49.0 | - |" in text and "| progressive_uniform | 49.0 | 52.0 |" in text


def test_part_of_restricts_the_cells_and_refuses_unknown_names():
    from benchmarks.ablation import part_of
    from robustprune.bench import load_suite

    suite = load_suite("ablation_val")
    part = part_of(suite, models=["mlp", "cnn"], seeds=[1])
    assert {c[0] for c in part.cells()} == {"mlp", "cnn"} and {c[3] for c in part.cells()} == {1}
    assert set(part.cells()) < set(suite.cells()) and part.targets == suite.targets
    assert part_of(suite).cells() == suite.cells()  # no filter: the whole grid, in its order
    with pytest.raises(SystemExit, match="no model resnet99"):
        part_of(suite, models=["resnet99"])


def test_a_method_with_more_finished_seeds_is_compared_on_the_shared_ones():
    by_method = {}
    for row in _rows():
        if row["method"] != "search" and row["seed"] > 0:  # a partial run: search has seeds 0-2, the others 0
            continue
        by_method.setdefault(row["method"], []).append(row)
    lines = comparisons(by_method, n_resamples=300)
    assert lines[0].startswith("| search vs progressive_uniform (seeds 0 only) |") and "win" in lines[0]
    assert lines[0].split("|")[2].strip() != "-"  # compared, not left out


def _original(correct: np.ndarray) -> dict:
    return {
        "model": "cnn",
        "per_image": {m: pack(torch.from_numpy(correct)) for m in ("clean", "pgd", "apgd")},
        "report": {"corruption_accuracy": 0.6, "ood_auroc": {"digits": 0.95, "flipped": 0.85, "noise": 0.75}},
    }


def test_the_table_shows_before_after_points_lost_and_every_metric_verdict():
    original = np.ones(2000, dtype=bool)
    original[:100] = False  # 95% clean before pruning
    text = ablation_markdown(_rows(), "ablation_val", originals={"cnn": _original(original)}, n_resamples=200)
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("| original (unpruned) |"))
    assert "| 100.0 | 100.0 | 95.00 ± 0.00 | 0.00 |" in row
    search = next(line for line in lines if line.startswith("| search |"))
    lost = float(search.split("|")[5])
    clean = float(search.split("|")[4].split("±")[0])
    assert lost == pytest.approx(95.00 - clean, abs=0.011)
    versus = next(line for line in lines if line.startswith("| search vs progressive_uniform |"))
    cells = [c.strip() for c in versus.strip("|").split("|")]
    assert len(cells) == 8  # clean, PGD, APGD with McNemar p; corruption and three AUROCs over seeds
    assert "p=" in cells[1] and "p=" not in cells[4]
    assert cells[4].startswith("+0.00 [+0.00, +0.00] tie")  # the rows share corruption and AUROC numbers
    glance = next(line for line in lines if line.startswith("| cnn | 0.5 of macs | 3 |"))
    assert glance.split("|")[4].strip() == "W / W" and glance.split("|")[5].strip() == "T / T"


def test_only_the_suites_cells_are_read(tmp_path):
    import json

    from benchmarks.ablation import finished_rows
    from robustprune.bench import load_suite

    suite = load_suite("ablation_val")
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "cnn__search__0.5__s0.json").write_text(json.dumps({"model": "cnn", "method": "search"}))
    (cells / "cnn__original.json").write_text(json.dumps({"clean_accuracy": 0.9}))  # the bench's summary file
    (cells / "cnn__search__0.9__s0.json").write_text(json.dumps({"model": "cnn"}))  # not a cell of this suite
    assert finished_rows(suite, tmp_path) == [{"model": "cnn", "method": "search"}]


def test_the_table_says_which_cells_reused_the_validation_models():
    from benchmarks.ablation import _reuse_note
    from robustprune.bench_tables import cell_sources

    prov = {"commit": "b" * 40 + "-dirty", "machine": "m", "torch": "t"}
    reused = {"pruned_in": {"commit": "a" * 40, "machine": "old"}, "report": {"provenance": prov}}
    again = {"pruned_again": "no saved model", "report": {"provenance": prov}}
    note = _reuse_note([reused, again, dict(again)])
    assert "1 cells evaluated the model the validation run saved" in note
    assert "2 pruned again at this run's commit: 2 because: no saved model" in note and "reproduce" not in note
    checked = _reuse_note([reused, again | {"reproduces_earlier": True}, again | {"reproduces_earlier": False}])
    assert "1 of 2 reproduce the clean predictions of their validation cell" in checked
    assert _reuse_note([{"report": {"provenance": prov}}]) == ""
    sources = cell_sources([reused, again])
    assert any("`bbbbbbb-dirty`" in s and "pruned earlier at `aaaaaaa` on old" in s for s in sources)
    assert any("pruned earlier" not in s for s in sources)


def test_the_table_says_where_its_cells_ran_and_which_blocks_mix_hosts():
    from benchmarks.ablation import _hosts_note

    def cell(seed: int, method: str, machine: str) -> dict:
        prov = {"commit": "c" * 40, "machine": f"{machine}, 2 cores, 1 torch threads", "torch": "t"}
        return {"model": "cnn", "target": 0.5, "seed": seed, "method": method, "report": {"provenance": prov}}

    rows = [cell(0, "search", "x86_64 A (AVX512)"), cell(0, "l1_uniform+bn", "x86_64 A (AVX2)")]
    rows += [cell(1, "search", "x86_64 A (AVX2)"), cell(1, "l1_uniform+bn", "x86_64 A (AVX2)")]
    note = _hosts_note(rows)
    assert "1 of 2 (model, target, seed) blocks mix named hosts" in note and "unknown" not in note
    assert "- 3 cells: commit `ccccccc`, x86_64 A (AVX2), 2 cores" in note
    assert "- 1 cells: commit `ccccccc`, x86_64 A (AVX512), 2 cores" in note
    old = _hosts_note([*rows, cell(2, "search", "x86_64 Linux")])  # before provenance named the CPU
    assert "1 of 3 (model, target, seed) blocks mix named hosts" in old and "1 blocks hold cells that do not" in old


def test_the_glance_table_counts_wins_ties_and_losses_per_rival():
    rows = _rows()
    rows += [dict(r, target=0.3) for r in rows]  # a second (model, target) pair with the same verdicts
    text = ablation_markdown(rows, "ablation_val", n_resamples=200)
    tally = next(line for line in text.splitlines() if line.startswith("| **wins-ties-losses**"))
    columns = [c.strip() for c in tally.split("|")[4:-1]]
    assert columns[0].startswith("2-0-0 / ")  # vs progressive_uniform: clean wins at both targets
    assert columns[1] == "0-2-0 / 0-2-0"  # vs oneshot_search: identical models tie
    assert columns[2] == ""  # no search_random cells


def _spread_rows() -> list[dict]:
    """Search gains 0.5, 4 and 7.5 points over progressive_uniform in seeds 0-2: a pooled win, a seed-level tie."""
    base = np.zeros((3, 4000), dtype=bool)
    base[:, :2800] = True
    better = base.copy()
    for seed, gain in enumerate((20, 160, 300)):
        better[seed, 2800 : 2800 + gain] = True
    rows = []
    for seed in range(3):
        rows.append(_row("search", seed, better[seed]))
        rows.append(_row("progressive_uniform", seed, base[seed]))
        rows.append(_row("l1_uniform+bn", seed, base[seed], clean=0.6))
        rows.append(_row("taylor_l1_uniform+bn", seed, better[seed], clean=0.8))
    return rows


def _table(text: str, title: str) -> list[list[str]]:
    section = text.split(f"## {title}\n")[1].split("\n## ")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]


def test_the_claims_count_holds_only_verdicts_both_rules_agree_on():
    text = ablation_markdown(_spread_rows(), "ablation_val", n_resamples=1000)
    pooled, both = _table(text, "Verdicts at a glance"), _table(text, "Verdicts under both rules")
    row = next(r for r in pooled if r[0] == "cnn")
    assert row[3] == "W / W"  # the frozen rule: a win on clean and PGD
    assert next(r for r in both if r[0] == "cnn")[3] == "(W) / (W)"  # a tie under both, named as a pooled win
    assert next(r for r in pooled if "wins-ties-losses" in r[0])[3] == "1-0-0 / 1-0-0"
    assert next(r for r in both if "wins-ties-losses" in r[0])[3] == "0-1-0 / 0-1-0"
    versus = next(line for line in text.splitlines() if line.startswith("| search vs progressive_uniform |"))
    assert "] win; seeds [" in versus and "] tie (per seed +0.50 p=" in versus


def test_the_test_table_takes_its_best_baseline_from_validation():
    rows = _spread_rows()
    own = ablation_markdown(rows, "ablation", n_resamples=100)
    assert "search vs best baseline (taylor_l1_uniform+bn)" in own and "chosen on this table's own images" in own
    chosen = ablation_markdown(rows, "ablation", n_resamples=100, chosen={("cnn", 0.5): "l1_uniform+bn"})
    assert "search vs best baseline (l1_uniform+bn)" in chosen and "taylor_l1_uniform+bn)" not in chosen
    assert "the one the validation run chose" in chosen
    with pytest.raises(SystemExit, match="global_magnitude"):
        ablation_markdown(rows, "ablation", n_resamples=100, chosen={("cnn", 0.5): "global_magnitude+bn"})


def test_best_baselines_are_chosen_per_model_and_target_by_mean_clean_accuracy():
    from benchmarks.ablation import best_baselines

    rows = _spread_rows()
    rows += [
        dict(r, target=0.3, report={**r["report"], "clean_accuracy": 1 - r["report"]["clean_accuracy"]}) for r in rows
    ]
    assert best_baselines(rows) == {("cnn", 0.5): "taylor_l1_uniform+bn", ("cnn", 0.3): "l1_uniform+bn"}


def test_the_test_summary_uses_the_validation_runs_best_baseline(tmp_path, monkeypatch):
    import json

    import benchmarks.ablation as ablation
    from robustprune._provenance import OUTPUTS_ENV, PINNED_COMMIT_ENV
    from robustprune.bench import cell_id

    for name in (OUTPUTS_ENV, PINNED_COMMIT_ENV):  # main() sets them for its process; restored after the test
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(ablation, "RESULTS", tmp_path)
    monkeypatch.setattr(ablation, "cell_sources", lambda rows: [])
    rng = np.random.default_rng(4)
    for split, best in (("ablation_val", "taylor_l1_uniform+bn"), ("ablation", "l1_uniform+bn")):
        cells = tmp_path / split / "cells"
        cells.mkdir(parents=True)
        for seed in range(3):
            for method in ("search", "progressive_uniform", "l1_uniform+bn", "taylor_l1_uniform+bn"):
                row = _row(method, seed, rng.random(300) < 0.7, clean=0.9 if method == best else 0.5)
                row["report"]["provenance"] = {"commit": "c" * 40, "machine": "m", "torch": "t"}
                (cells / f"{cell_id('cnn', method, 0.5, seed)}.json").write_text(json.dumps(row))
    (tmp_path / "ablation" / "originals").mkdir()
    (tmp_path / "ablation" / "originals" / "cnn.json").write_text(json.dumps(_original(rng.random(300) < 0.9)))
    ablation.main(["--split", "test", "--summarize-only"])
    table = (tmp_path / "ablation.md").read_text()
    assert "search vs best baseline (taylor_l1_uniform+bn)" in table  # validation's choice, not test's l1
    assert "the one the validation run chose" in table


def test_the_other_metrics_table_counts_apgd_corruption_and_auroc_and_names_losses():
    rows = _spread_rows()
    for row in rows:
        if row["method"] == "search":  # search loses 2-4 points of corruption accuracy in every seed
            row["report"] = {**row["report"], "corruption_accuracy": 0.46 - 0.01 * row["seed"]}
    text = ablation_markdown(rows, "ablation_val", n_resamples=500)
    table = _table(text, "Other metrics at a glance")
    assert table[0] == ["rival", "APGD", "corruption", "AUROC digits", "AUROC flipped", "AUROC noise"]
    progressive = next(r for r in table if r[0] == "progressive_uniform")
    assert progressive == [
        "progressive_uniform",
        "0-1-0",
        "0-0-1",
        "0-1-0",
        "0-1-0",
        "0-1-0",
    ]  # APGD: a pooled win only
    assert "- vs progressive_uniform, corruption: cnn 0.5" in text
    unchanged = ablation_markdown(_spread_rows(), "ablation_val", n_resamples=500)
    assert "Search loses none of these." in unchanged and "- vs " not in unchanged


def test_a_test_table_without_a_validation_choice_for_a_pair_stops_instead_of_choosing_on_test():
    rows = _spread_rows()
    for chosen in ({}, {("cnn", 0.3): "l1_uniform+bn"}):
        with pytest.raises(SystemExit, match="no best baseline chosen on validation for cnn at 0.5"):
            ablation_markdown(rows, "ablation", n_resamples=100, chosen=chosen)


def test_the_glance_tables_mark_bounds_at_the_monte_carlo_boundary(monkeypatch):
    import functools

    import benchmarks.ablation as ablation
    from robustprune.evaluate.stats import compare

    monkeypatch.setattr(ablation, "compare", functools.partial(compare, boundary=100.0))  # every bound is near zero
    text = ablation_markdown(_spread_rows(), "ablation_val", n_resamples=300)
    assert next(r for r in _table(text, "Verdicts at a glance") if r[0] == "cnn")[3] == "W* / W*"
    assert next(r for r in _table(text, "Verdicts under both rules") if r[0] == "cnn")[3] == "(W*) / (W*)"
    assert "win at the Monte Carlo boundary; seeds [" in text
