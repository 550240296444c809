"""Hardware-friendly widths (round_to) and latency targets: what the cost model commits to (no timing asserts)."""

import dataclasses
import itertools
import json

import pytest
import torch
from torch import nn

import robustprune as rp
from robustprune.baselines import baseline
from robustprune.evaluate import latency_check, lut
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search.objective import fit_amounts
from robustprune.search.schedule import step_targets
from robustprune.select import removed_count
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace
from robustprune.targets import Target
from tests.helpers import randomize_norms

SPEC = InputSpec(shape=(3, 10, 10), mean=(0.5,), std=(0.25,), num_classes=4)


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1),
        nn.BatchNorm2d(12),
        nn.ReLU(),
        nn.Conv2d(12, 16, 3, padding=1, stride=2),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    return randomize_norms(model).eval()


@pytest.mark.parametrize("size,round_to", [(16, 8), (12, 8), (10, 4), (3, 8), (64, 1)])
def test_removed_count_keeps_multiples_and_never_removes_more(size, round_to):
    for k in range(101):
        amount = k / 100 * 0.99
        removed = removed_count(size, amount, round_to)
        kept = size - removed
        assert kept == size or kept % round_to == 0
        assert 1 <= kept <= size
        assert removed <= removed_count(size, amount)  # rounding keeps more, never less
        # monotone in the amount: the bisection over a step's scale stays valid
        assert removed >= removed_count(size, max(0.0, amount - 0.01), round_to)


@pytest.mark.parametrize("round_to", [4, 8])
def test_fit_amounts_lands_under_the_target_with_rounded_widths(round_to):
    space = PruneSpace(_model(), SPEC)
    target = Target(macs=0.6, round_to=round_to)
    direction = {g.name: 1.0 for g in space.groups}
    amounts, feasible = fit_amounts(space, {}, direction, 0.15, target)
    assert feasible
    counts = [g.size - removed_count(g.size, amounts[g.name]) for g in space.groups]
    assert all(c == g.size or c % round_to == 0 for c, g in zip(counts, space.groups, strict=True))
    assert target.met(space, counts)
    assert counts != [g.size for g in space.groups]  # something was pruned


def test_uniform_baseline_respects_round_to_and_the_target():
    model = _model()
    result = baseline(model, SPEC, "l1_uniform", target_macs=0.5, round_to=4)
    counts = result.space.kept_counts(result.candidate)
    assert all(c == g.size or c % 4 == 0 for c, g in zip(counts, result.space.groups, strict=True))
    assert result.kept_fraction["macs"] <= 0.5
    with pytest.raises(ValueError, match="uniform baselines"):
        baseline(model, SPEC, "global_magnitude", target_macs=0.5, round_to=4)


def test_new_config_fields_leave_existing_fingerprints_alone():
    plain = rp.SearchConfig(target_macs=0.5).to_dict()
    assert not {"round_to", "target_latency", "latency_batch", "latency_threads"} & set(plain)
    rounded = rp.SearchConfig(target_macs=0.5, round_to=8).to_dict()
    assert rounded["round_to"] == 8
    with pytest.raises(ValueError, match="round_to"):
        rp.SearchConfig(target_macs=0.5, round_to=0)
    with pytest.raises(ValueError, match="latency_batch"):
        rp.SearchConfig(target_latency=0.5, latency_batch=0)


def test_step_targets_carry_round_to_and_latency():
    steps = step_targets(Target(latency=0.5, round_to=4), 5)
    assert [round(t.latency, 6) for t in steps] == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert all(t.round_to == 4 and t.macs is None for t in steps)


def _fake_layer_ms(module: nn.Module, shape: tuple[int, ...], batch: int, device, runs: int) -> float:
    """A deterministic stand-in for timing one layer: proportional to its weights times its input's spatial size."""
    spatial = 1
    for n in shape[1:]:
        spatial *= n
    return 1e-4 + batch * spatial * sum(p.numel() for p in module.parameters()) * 1e-6


def _fake_whole_ms(space: PruneSpace, widths: dict, batch_size: int, runs: int) -> dict:
    """A deterministic stand-in for timing the whole model at each width: proportional to its MACs."""
    return {f: 0.01 + batch_size * space.cost_of_counts(counts)[0] * 1e-6 for f, counts in widths.items()}


@pytest.fixture(scope="module")
def table_and_space(tmp_path_factory):
    # the table's logic is tested on deterministic costs: real timings belong in benchmarks, not tests
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lut, "_time_ms", _fake_layer_ms)
        patch.setattr(lut, "_whole_model_ms", _fake_whole_ms)
        space = PruneSpace(_model(), SPEC)
        cache = tmp_path_factory.mktemp("lut")
        table = lut.build_latency_model(space, batch_size=2, threads=1, cache_dir=cache, runs=3, whole_runs=3)
        yield table, space, cache


def test_latency_table_is_monotone_and_one_at_full_width(table_and_space):
    table, space, _ = table_and_space
    sizes = [g.size for g in space.groups]
    assert table.fraction(sizes) == pytest.approx(1.0)
    grids = [sorted({1, s // 3, s // 2, s - 1, s}) for s in sizes]
    points = list(itertools.product(*grids))
    for a, b in itertools.combinations(points, 2):
        if all(x <= y for x, y in zip(a, b, strict=True)):
            assert table.predict_ms(a) <= table.predict_ms(b) + 1e-12
        if all(x >= y for x, y in zip(a, b, strict=True)):
            assert table.predict_ms(a) >= table.predict_ms(b) - 1e-12
    for t in table.tables:  # each layer's table is monotone on its own grid, the measured points kept
        for row in t.ms:
            assert list(row) == sorted(row)


def test_latency_table_is_cached_by_architecture_batch_and_threads(table_and_space, monkeypatch):
    table, space, cache = table_and_space
    monkeypatch.setattr(lut, "_measure", lambda *a, **k: pytest.fail("measured again despite the cache"))
    again = lut.build_latency_model(PruneSpace(_model(), SPEC), batch_size=2, threads=1, cache_dir=cache)
    assert again == table and again.meta["key"] == table.meta["key"]
    assert lut.LatencyModel.from_dict(json.loads(json.dumps(table.to_dict()))) == table
    called = []
    monkeypatch.setattr(lut, "_measure", lambda *a, **k: called.append(1) or table)
    lut.build_latency_model(space, batch_size=3, threads=1, cache_dir=cache)  # another batch: another table
    assert called


def test_latency_target_is_enforced_by_the_fit(table_and_space):
    table, space, _ = table_and_space
    goal = _reachable(table, space, 0.6)
    target = Target(latency=goal, latency_model=table)
    amounts, feasible = fit_amounts(space, {}, {g.name: 1.0 for g in space.groups}, 0.6, target)
    counts = [g.size - removed_count(g.size, amounts[g.name]) for g in space.groups]
    assert feasible and table.fraction(counts) <= goal
    assert target.excess(space, counts) <= 0
    with pytest.raises(ValueError, match="latency model"):
        Target(latency=goal).met(space, counts)


def _reachable(table, space, amount: float) -> float:
    """A latency fraction halfway between the original and every group losing ``amount`` (what the table allows)."""
    floor = table.fraction([g.size - removed_count(g.size, amount) for g in space.groups])
    assert floor < 1.0
    return (1.0 + floor) / 2


TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=16, steps=2, batch_size=16), attack_steps=1, n_undesired=8
)


def test_search_with_a_latency_target_commits_a_candidate_the_table_puts_under_it(table_and_space, monkeypatch):
    _, space, cache = table_and_space
    goal = _reachable(table_and_space[0], space, 0.25)
    config = rp.SearchConfig(
        target_latency=goal,
        latency_batch=2,
        latency_threads=1,
        steps=2,
        trials=3,
        probes=TINY_PROBES,
        round_to=2,
        latency_rounds=0,
    )
    monkeypatch.setattr(latency_check, "timed_fraction", lambda *a, **k: pytest.fail("timed with latency_rounds=0"))
    result = rp.search(_model(), SPEC, config=config, cache_dir=cache, quiet=True)
    table = lut.build_latency_model(result.space, batch_size=2, threads=1, cache_dir=cache)
    counts = result.space.kept_counts(result.candidate)
    assert result.target_reached
    assert table.fraction(counts) <= goal
    assert all(c == g.size or c % 2 == 0 for c, g in zip(counts, result.space.groups, strict=True))
    assert dataclasses.asdict(result.config)["target_latency"] == goal


def test_corrected_latency_matches_the_timing_and_keeps_the_table_monotone(table_and_space):
    table, space, _ = table_and_space
    sizes = [g.size for g in space.groups]
    half = [max(1, s // 2) for s in sizes]
    predicted = table.fraction(half)
    corrected = lut.CorrectedLatency.matching(table, predicted, predicted + 0.1)
    assert corrected.fraction(half) == pytest.approx(predicted + 0.1)
    assert corrected.fraction(sizes) == pytest.approx((predicted + 0.1) / predicted)  # proportional everywhere
    points = list(itertools.product(*[sorted({1, s // 3, s // 2, s}) for s in sizes]))
    for a, b in itertools.combinations(points, 2):
        if all(x <= y for x, y in zip(a, b, strict=True)):
            assert corrected.fraction(a) <= corrected.fraction(b) + 1e-12
    with pytest.raises(ValueError, match="predicted"):
        lut.CorrectedLatency.matching(table, 0.0, 0.5)


def _latency_search(cache, monkeypatch, timings: list[float], rounds: int = 2, goal: float = 0.8):
    """The tiny latency-targeted search with its post-search timings replaced by ``timings`` (deterministic)."""
    calls = []

    def fake(original, pruned, spec, batch, threads, runs=50):
        calls.append(pruned)
        return {"original_ms": {}, "pruned_ms": {}, "measured_fraction": timings[min(len(calls), len(timings)) - 1]}

    monkeypatch.setattr(latency_check, "timed_fraction", fake)
    config = rp.SearchConfig(
        target_latency=goal, latency_batch=2, latency_threads=1, steps=2, trials=3, probes=TINY_PROBES
    )
    config = dataclasses.replace(config, latency_rounds=rounds)
    messages: list[str] = []
    result = rp.search(_model(), SPEC, config=config, cache_dir=cache, log=messages.append)
    return result, calls, messages


def test_a_timed_miss_corrects_the_table_and_prunes_on_until_the_timing_lands(table_and_space, monkeypatch):
    table, _, cache = table_and_space
    result, calls, messages = _latency_search(cache, monkeypatch, [0.88, 0.82])  # a miss, then within 5%
    assert len(calls) == 2 and [r["measured_fraction"] for r in result.latency_rounds] == [0.88, 0.82]
    assert len(result.history) > 2 and result.latency_rounds[0]["after_step"] == 2  # it pruned on, in steps
    first, last = result.latency_rounds[0]["predicted_fraction"], result.latency_rounds[1]["predicted_fraction"]
    counts = result.space.kept_counts(result.candidate)
    assert table.fraction(counts) < first  # the table now predicts a faster model
    corrected = lut.CorrectedLatency.matching(table, first, 0.88)  # the prediction that now bounds it
    assert corrected.fraction(counts) <= 0.8 + 1e-9 and last == pytest.approx(corrected.fraction(counts))
    assert result.target_reached and any("missed by more than the tolerance" in m for m in messages)
    assert result.summary()["latency_rounds"][0]["measured_fraction"] == 0.88


def test_the_latency_loop_stops_after_its_rounds_and_where_no_width_reaches_the_target(table_and_space, monkeypatch):
    _, _, cache = table_and_space
    result, calls, _ = _latency_search(cache, monkeypatch, [0.9, 0.87, 0.85], rounds=2)
    assert len(calls) == 2 and len(result.history) > 3  # two corrections, more steps, no third timing
    result, calls, messages = _latency_search(cache, monkeypatch, [0.86, 0.87], rounds=3)
    assert len(calls) == 2 and any("did not make the model faster" in m for m in messages)  # no third round
    result, calls, messages = _latency_search(cache, monkeypatch, [1.02], rounds=2)
    assert len(calls) == 1 and len(result.history) == 2  # no faster than the original: keeps the model


def test_the_latency_loop_keeps_the_model_where_overhead_leaves_no_width_that_reaches_the_target(tmp_path, monkeypatch):
    with pytest.MonkeyPatch.context() as patch:  # a table with a large fixed overhead: pruning saves little
        patch.setattr(lut, "_time_ms", _fake_layer_ms)
        patch.setattr(lut, "_whole_model_ms", lambda *a: {f: 1.0 + ms for f, ms in _fake_whole_ms(*a).items()})
        table = lut.build_latency_model(PruneSpace(_model(), SPEC), batch_size=2, threads=1, cache_dir=tmp_path)
    deepest = table.fraction([1 for _ in PruneSpace(_model(), SPEC).groups])
    assert 0.8 < deepest < 0.92  # the table alone reaches 0.92
    result, calls, messages = _latency_search(tmp_path, monkeypatch, [0.99], rounds=2, goal=0.92)
    assert len(calls) == 1 and result.latency_rounds[0]["after_step"] == result.history[-1].step  # nothing after
    assert result.target_reached and any("no width reaches the target" in m for m in messages)
    with pytest.raises(ValueError, match="latency_rounds"):
        rp.SearchConfig(target_latency=0.5, latency_rounds=-1)


def args_list(tmp_path) -> list[str]:
    return ["search", "--model", "zoo:cnn", "--target-latency", "0.5", "--out", str(tmp_path / "r")]


def test_cli_flags_reach_the_config_and_bad_values_exit_2(tmp_path):
    from robustprune.cli import build_parser, main, search_config_from_args

    args = build_parser().parse_args(
        ["search", "--model", "zoo:cnn", "--target-latency", "0.5", "--latency-batch", "256", "--round-to", "8"]
        + ["--out", str(tmp_path / "r")]
    )
    config = search_config_from_args(args)
    assert (config.target_latency, config.latency_batch, config.round_to, config.target_macs) == (0.5, 256, 8, None)
    rounds = ["--latency-rounds", "0"]
    assert search_config_from_args(build_parser().parse_args([*args_list(tmp_path), *rounds])).latency_rounds == 0
    for bad in (["--round-to", "0"], ["--target-latency", "1.5"], ["--latency-rounds", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(["search", "--model", "zoo:cnn", "--target-macs", "0.5", *bad, "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
    base = ["baseline", "--model", "zoo:cnn", "--target-macs", "0.5", "--no-eval", "--out", str(tmp_path / "b")]
    assert main([*base, "--method", "global_magnitude", "--round-to", "4", "--quiet"]) == 2
