"""SearchResult and PruneResult share one interface: model, candidate, kept_fraction, save, report."""

import json

import pytest

from robustprune import zoo
from robustprune.baselines import PruneResult, baseline
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.pruned import PruningResult
from robustprune.search import SearchConfig, SearchResult, progressive, search
from robustprune.structure import load_pruned

TINY = SearchConfig(
    target_params=0.7,
    steps=1,
    trials=3,
    probes=ProbeConfig(synthetic=SyntheticConfig(n=24, steps=2, batch_size=24), attack_steps=1, n_undesired=8),
)
RECORDS: list = []  # what the search's callback got
INTERFACE = ("model", "candidate", "kept_fraction", "save", "report", "cost")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    model, spec = zoo.load("mlp")
    cache = tmp_path_factory.mktemp("probes")
    found = search(model, spec, TINY, cache_dir=cache, quiet=True, callbacks=[RECORDS.append])
    one_shot = baseline(model, spec, "l1_uniform", target_params=0.7)
    return found, one_shot


def test_both_results_are_pruning_results_with_the_same_interface(results):
    found, one_shot = results
    assert isinstance(found, SearchResult) and isinstance(one_shot, PruneResult)
    for result in results:
        assert isinstance(result, PruningResult)
        assert all(hasattr(result, name) for name in INTERFACE)
    assert (found.method, one_shot.method) == ("search", "l1_uniform")


def test_kept_fraction_is_the_pruned_models_cost(results):
    for result in results:
        params = sum(p.numel() for p in result.model.parameters())
        cost = result.cost()
        assert cost.params == params
        assert result.kept_fraction["params"] == pytest.approx(params / cost.original_params)
        assert result.kept_fraction["params"] <= 0.7 + 1e-9
    found, _ = results
    assert found.kept_fraction["params"] == pytest.approx(found.history[-1].kept_params)


def test_reports_share_their_keys_and_are_json(results):
    found, one_shot = results
    common = {"method", "kept_channels", "macs", "params", "original_macs", "original_params", "kept_fraction"}
    for result in results:
        report = json.loads(json.dumps(result.report()))
        assert common <= report.keys()
        assert report["kept_fraction"] == pytest.approx(result.kept_fraction)
        assert report["kept_channels"] == {name: len(keep) for name, keep in result.candidate.items()}
    assert found.report()["stop_reason"] == found.stop_reason  # each adds its own details
    assert one_shot.report()["target"] == {"macs": None, "params": 0.7}


def test_save_writes_a_run_folder_that_loads_with_the_same_cost(results, tmp_path):
    for result in results:
        folder = tmp_path / result.method
        written = result.save(folder, model_ref="zoo:mlp")
        assert written and all(path.is_file() for path in written)
        model, _spec, data = load_pruned(folder)
        assert sum(p.numel() for p in model.parameters()) == result.cost().params == data["params"]
    found, _ = results
    loaded = SearchResult.load(tmp_path / "search")
    assert loaded.kept_fraction == pytest.approx(found.kept_fraction)
    assert loaded.report()["kept_channels"] == found.report()["kept_channels"]


class _Captured(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """search()'s arguments as ProgressiveSearch receives them (no search runs)."""
    seen = {}

    def fake(model, spec, config, **kwargs):
        seen.update(config=config, **kwargs)
        raise _Captured

    monkeypatch.setattr(progressive, "ProgressiveSearch", fake)
    return seen


def _call(*args, **kwargs):
    with pytest.raises(_Captured):
        search(None, None, *args, **kwargs)


def test_search_takes_the_config_third_and_the_old_target_macs_forms(captured):
    _call(TINY, storage="sqlite:///x.db", cache_dir="c", callbacks=[print], exclude=("fc1",))
    assert captured["config"] == TINY
    assert (captured["storage"], captured["cache_dir"], captured["exclude"]) == ("sqlite:///x.db", "c", ("fc1",))
    assert list(captured["callbacks"]) == [print]
    _call(0.5)  # the third argument was target_macs before the config took its place
    assert captured["config"] == SearchConfig(target_macs=0.5)
    _call(target_macs=0.4, seed=3)
    assert captured["config"] == SearchConfig(target_macs=0.4, seed=3)
    _call(config=TINY, target_params=0.6)
    assert captured["config"] == SearchConfig(**{**TINY.__dict__, "target_params": 0.6})


def test_search_refuses_a_target_given_twice_or_a_config_of_another_type(captured):
    with pytest.raises(TypeError, match="twice"):
        search(None, None, 0.5, target_macs=0.4)
    with pytest.raises(TypeError, match="SearchConfig"):
        search(None, None, {"target_macs": 0.5})


def test_callbacks_get_each_committed_step(results):
    found, _ = results
    assert found.history and RECORDS == found.history
