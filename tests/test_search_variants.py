"""Ablation variants of the search: each changes exactly one thing against the default."""

import pytest

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search, variant_config
from robustprune.structure import PruneSpace

TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=32, steps=5, batch_size=32), attack_steps=2, n_undesired=16
)


@pytest.fixture(scope="module")
def cnn():
    model, spec = zoo.load("cnn")
    return model, spec, PruneSpace(model, spec)


def _config(**kw) -> SearchConfig:
    return SearchConfig(**{"target_macs": 0.6, "trials": 4, "probes": TINY_PROBES, **kw})


def test_variants_change_only_their_own_setting(cnn):
    _, _, space = cnn
    base = _config()
    assert variant_config(base, "search", space) == base
    assert variant_config(base, "search_random", space) == _config(sampler="random")
    assert variant_config(base, "progressive_uniform", space) == _config(trials=1, enqueue_uniform=True)
    steps = base.resolve(space).steps
    assert steps > 1
    assert variant_config(base, "oneshot_search", space) == _config(steps=1, trials=steps * 4, max_increment=1.0)
    with pytest.raises(ValueError, match="unknown search variant"):
        variant_config(base, "greedy", space)


def test_progressive_uniform_commits_the_even_step_every_step(cnn, tmp_path):
    model, spec, space = cnn
    config = variant_config(_config(importance="l1", rescore="off"), "progressive_uniform", space)
    result = search(model, spec, config=config, cache_dir=tmp_path, quiet=True)
    assert result.target_reached and len(result.history) == config.resolve(space).steps
    previous = {g.name: 0.0 for g in space.groups}
    for record in result.history:
        assert record.trials == 1 and record.trial == 0
        growth = [record.amounts[g] - previous[g] for g in previous]
        # the even step: every group grows by the same amount, up to the max_amount cap and one channel of rounding
        uncapped = [d for g, d in zip(previous, growth, strict=True) if record.amounts[g] < config.max_amount - 1e-6]
        assert max(uncapped) - min(uncapped) <= max(1 / g.size for g in space.groups) + 1e-6
        previous = dict(record.amounts)


def test_oneshot_search_takes_one_step_with_the_whole_budget(cnn, tmp_path):
    model, spec, space = cnn
    config = variant_config(_config(importance="l1"), "oneshot_search", space)
    result = search(model, spec, config=config, cache_dir=tmp_path, quiet=True)
    assert result.target_reached and len(result.history) == 1
    assert result.history[0].trials == config.trials
    assert result.history[0].kept_macs <= 0.6 + 1e-9
