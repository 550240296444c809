"""benchmarks.portfolio's rule 7 (results/PROTOCOL.md): which search becomes the default."""

import itertools

import pytest

from benchmarks.portfolio import decide


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
