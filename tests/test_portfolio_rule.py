"""benchmarks.portfolio's rule 7 (results/PROTOCOL.md): which search becomes the default."""

import itertools
import json

import numpy as np
import pytest
import torch

from benchmarks.portfolio import decide, rule_7
from robustprune.bench import cell_id
from robustprune.evaluate.paired import pack


def _beats(one: bool, port_search: bool, port_one: bool) -> dict:
    return {
        ("oneshot_search", "search"): one,
        ("portfolio", "search"): port_search,
        ("portfolio", "oneshot_search"): port_one,
    }


@pytest.mark.parametrize(
    ("one", "port_search", "port_one", "default"),
    [
        (False, False, False, "search"),  # nothing beats the search: it stays
        (True, False, False, "oneshot_search"),
        (True, True, False, "oneshot_search"),  # the portfolio does not beat the one-shot search (same cost)
        (False, True, False, "portfolio"),
        (False, True, True, "portfolio"),
        (True, True, True, "portfolio"),  # beats both
        (False, False, True, "search"),  # beating the one-shot search alone does not unseat the default
    ],
)
def test_rule_7_outcomes(one, port_search, port_one, default):
    assert decide(_beats(one, port_search, port_one)) == default


def test_every_case_has_an_outcome_and_the_uncovered_one_says_so():
    outcomes = {case: decide(_beats(*case)) for case in itertools.product([False, True], repeat=3)}
    assert outcomes[(True, False, True)].startswith("undecided")
    assert sum(o.startswith("undecided") for o in outcomes.values()) == 1


def _cell(model: str, method: str, target: float, seed: int, correct, split: str = "val") -> dict:
    per_image = {m: pack(torch.as_tensor(correct)) for m in ("clean", "pgd")}
    settings = {"eval": {"split": split}}
    return {
        "model": model,
        "method": method,
        "target": target,
        "seed": seed,
        "per_image": per_image,
        "suite_settings": settings,
    }


def test_rule_7_pools_only_the_validation_grid(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.6
    better = base | (rng.random(400) < 0.5)  # the one-shot search is right wherever the search is, and more
    cells = tmp_path / "cells"
    cells.mkdir()
    rows = [
        _cell("cnn", "search", 0.5, 0, base),
        _cell("cnn", "oneshot_search", 0.5, 0, better),
        _cell("cnn", "search", 0.7, 0, better),  # 0.7 is not in the rule's grid
        _cell("cnn", "oneshot_search", 0.7, 0, base),
        _cell("mlp", "search", 0.5, 1, better, split="test"),  # a test cell never enters the decision
        _cell("mlp", "oneshot_search", 0.5, 1, base, split="test"),
    ]
    for r in rows:
        (cells / f"{cell_id(r['model'], r['method'], r['target'], r['seed'])}.json").write_text(json.dumps(r))
    text = "\n".join(rule_7([], tmp_path))
    line = next(x for x in text.splitlines() if x.startswith("| oneshot_search vs search |"))
    assert line.split("|")[2].strip() == "1"  # one cell: cnn 0.5 seed 0
    assert float(line.split("|")[3].split("[")[0]) > 0
    assert "Outcome on 1 of 42" in text and "the portfolio on 0 of them" in text and "provisional" in text
