"""SearchConfig.split_probes: the ranking, rescoring and BN re-estimation are fitted on one half of the
synthetic probes, and candidates are scored on the other half, in every process of a search."""

import dataclasses

import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig, build_probes
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, engine, progressive
from robustprune.search.engine import config_from_dict
from robustprune.search.objective import fit_and_score_probes
from robustprune.search.progressive import ProgressiveSearch, step_evaluator
from robustprune.structure import PruneSpace

TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=32, steps=5, batch_size=32), attack_steps=2, n_undesired=16
)


@pytest.fixture(scope="module")
def cnn():
    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    return model, spec, space, build_probes(model, spec, space.output_layer, TINY_PROBES)


def _config(**kw) -> SearchConfig:
    return SearchConfig(**{"target_macs": 0.6, "trials": 3, "probes": TINY_PROBES, "split_probes": True, **kw})


def test_the_split_gives_disjoint_halves_with_their_adversarial_versions(cnn):
    *_, probes = cnn
    fit, score = fit_and_score_probes(probes, True)
    syn, adv = probes.pixels["synthetic"], probes.pixels["adversarial"]
    assert torch.equal(fit.pixels["synthetic"], syn[:16]) and torch.equal(score.pixels["synthetic"], syn[16:])
    assert torch.equal(fit.pixels["adversarial"], adv[:16]) and torch.equal(score.pixels["adversarial"], adv[16:])
    assert torch.equal(fit.logits["synthetic"], probes.logits["synthetic"][:16])
    assert torch.equal(score.pixels["undesired"], probes.pixels["undesired"])
    same = fit_and_score_probes(probes, False)
    assert same[0] is probes and same[1] is probes


def test_config_checks_and_records_the_setting():
    with pytest.raises(ValueError, match="split_probes must be True or False"):
        SearchConfig(target_macs=0.5, split_probes=1)
    assert "split_probes" not in SearchConfig(target_macs=0.5).to_dict()  # older searches keep their fingerprint
    one = ProbeConfig(synthetic=SyntheticConfig(n=1))
    with pytest.raises(ValueError, match="at least 2 synthetic probes, got 1"):  # before minutes of synthesis
        SearchConfig(target_macs=0.5, split_probes=True, probes=one)
    config = SearchConfig(target_macs=0.5, split_probes=True)
    assert config.to_dict()["split_probes"] is True
    assert config_from_dict(config.to_dict()).split_probes is True


def test_every_process_scores_on_the_score_half_with_bn_fitted_on_the_other(cnn):
    _, _, space, probes = cnn
    scores = {g.name: torch.rand(g.size, generator=torch.Generator().manual_seed(0)) for g in space.groups}
    evaluator = step_evaluator(space, probes, scores, _config().resolve(space))
    assert torch.equal(evaluator.probes.pixels["synthetic"], probes.pixels["synthetic"][16:])
    assert torch.equal(evaluator.bn_inputs, probes.spec.normalize(probes.pixels["synthetic"][:16]))
    whole = step_evaluator(space, probes, scores, _config(split_probes=False).resolve(space))
    assert whole.probes is probes
    assert torch.equal(whole.bn_inputs, probes.spec.normalize(probes.pixels["synthetic"]))


def test_criterion_choice_and_rescoring_fit_on_the_fit_half(cnn, monkeypatch, tmp_path):
    model, spec, _, probes = cnn
    seen = {}
    choose, rescore = engine._choose_criterion, engine._rescore

    def spy_choose(space, scoring, inputs, config, attack, target=None, bn_pixels=None):
        seen["choose"] = (scoring, inputs, bn_pixels)
        return choose(space, scoring, inputs, config, attack, target, bn_pixels=bn_pixels)

    def spy_rescore(evaluator, amounts, criterion, inputs, targets):
        seen.setdefault("rescore", []).append(inputs)
        return rescore(evaluator, amounts, criterion, inputs, targets)

    monkeypatch.setattr(engine, "_choose_criterion", spy_choose)
    monkeypatch.setattr(engine, "_rescore", spy_rescore)
    with ProgressiveSearch(model, spec, _config(steps=1), quiet=True, cache_dir=tmp_path) as run:  # importance auto
        syn = run.probes.pixels["synthetic"]
    scoring, inputs, bn_pixels = seen["choose"]
    assert torch.equal(scoring.pixels["synthetic"], syn[16:])
    assert torch.equal(inputs, spec.normalize(syn[:16])) and torch.equal(bn_pixels, syn[:16])
    config = _config(target_macs=0.5, steps=2, importance="taylor_synthetic", rescore="synthetic")
    with ProgressiveSearch(model, spec, config, quiet=True, cache_dir=tmp_path) as run:
        result = run.resume()
    assert result.target_reached
    assert seen["rescore"] and all(torch.equal(x, spec.normalize(syn[:16])) for x in seen["rescore"])


def test_the_split_changes_what_the_search_scores(cnn, tmp_path):
    """Not a silent no-op: the same seed commits differently scored candidates with and without it."""
    model, spec, *_ = cnn
    config = _config(importance="l1", rescore="off", steps=1)
    split = ProgressiveSearch(model, spec, config, quiet=True, cache_dir=tmp_path)
    whole = ProgressiveSearch(
        model, spec, dataclasses.replace(config, split_probes=False), quiet=True, cache_dir=tmp_path
    )
    with split as a:
        ra = a.resume()
    with whole as b:
        rb = b.resume()
    assert ra.history[0].score != rb.history[0].score


def test_the_split_applies_only_where_something_is_fitted_on_the_probes(cnn):
    _, _, space, _ = cnn
    mlp, mlp_spec = zoo.load("mlp")
    # the mlp: a weight-only ranking (merge saliency) and merging: the split would only halve the scoring probes
    assert not SearchConfig(target_params=0.5, split_probes=True).resolve(PruneSpace(mlp, mlp_spec)).split_probes
    assert _config().resolve(space).split_probes  # BN: the criterion choice's Taylor pass and BN re-estimation
    weight_only = _config(importance="l1", compensation=("merge",), rescore="off")
    assert not weight_only.resolve(space).split_probes
    assert _config(importance="l1", compensation=("bn",), rescore="off").resolve(space).split_probes
    assert _config(importance="l1", compensation=("bias",), rescore="off").resolve(space).split_probes
    assert not _config(split_probes=False).resolve(space).split_probes


def test_an_explicit_ranking_and_the_criterion_choices_bn_fit_on_the_fit_half(cnn, monkeypatch, tmp_path):
    model, spec, _, _ = cnn
    seen = {"bn": []}
    ranks, evaluator = progressive.all_scores, engine.Evaluator

    def spy_scores(space, criterion, inputs=None, seed=0):
        seen["inputs"] = inputs
        return ranks(space, criterion, inputs=inputs, seed=seed)

    def spy_evaluator(*args, bn_pixels=None, **kwargs):
        seen["bn"].append(bn_pixels)
        return evaluator(*args, bn_pixels=bn_pixels, **kwargs)

    monkeypatch.setattr(progressive, "all_scores", spy_scores)
    monkeypatch.setattr(engine, "Evaluator", spy_evaluator)
    with ProgressiveSearch(model, spec, _config(steps=1), quiet=True, cache_dir=tmp_path) as run:  # auto
        syn = run.probes.pixels["synthetic"]
    assert len(seen["bn"]) == 3 and all(torch.equal(b, syn[:16]) for b in seen["bn"])  # one per criterion
    config = _config(steps=1, importance="taylor_synthetic", rescore="off")
    with ProgressiveSearch(model, spec, config, quiet=True, cache_dir=tmp_path):
        pass
    assert torch.equal(seen["inputs"], spec.normalize(syn[:16]))


def test_a_worker_scores_on_the_same_halves_as_its_coordinator(cnn, tmp_path, monkeypatch):
    from robustprune.search import storage as storage_mod
    from robustprune.search import worker
    from robustprune.search.job import find_job
    from robustprune.search.samplers import make_sampler

    model, spec, space, _ = cnn
    url = f"journal:{tmp_path / 'search.log'}"
    config = _config(steps=1, trials=2, importance="l1", rescore="off")
    with ProgressiveSearch(model, spec, config, storage=url, cache_dir=tmp_path, quiet=True) as run:
        syn = run.probes.pixels["synthetic"]
        run.resume()
        coordinator_bn = run.evaluator.bn_inputs
    opened = storage_mod.open_storage(url)
    base, job = find_job(opened, "robustprune", wait=0)
    job_config = dataclasses.replace(config_from_dict(job["config"]).resolve(space), importance=job["importance"])
    assert job_config.split_probes
    probes = build_probes(model, spec, space.output_layer, job_config.probes, cache_dir=tmp_path)
    seen = {}

    def capture(study, objective, budget, check, decided):
        seen["evaluator"] = objective.evaluator

    monkeypatch.setattr(worker, "run_step_trials", capture)
    sampler = make_sampler("tpe", seed=1)
    worker._work_step(
        opened, base, 1, f"{base}-step1", sampler, space, probes, job_config, lambda m: None, lambda: None
    )
    assert torch.equal(seen["evaluator"].probes.pixels["synthetic"], syn[16:])
    assert torch.equal(seen["evaluator"].bn_inputs, coordinator_bn)
