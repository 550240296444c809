import dataclasses

import optuna
import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, SearchResult, search
from robustprune.search.objective import fit_amounts
from robustprune.search.samplers import SAMPLERS
from robustprune.search.schedule import step_targets
from robustprune.structure import PruneSpace
from robustprune.targets import Target

TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=48, steps=10, batch_size=48), attack_steps=2, n_undesired=24
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("probes")


def step_study(storage, k: int) -> str:
    """The name of step ``k``'s study: the only one in ``storage`` that ends so."""
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.endswith(f"-step{k}")]
    return name


def tiny(**kw) -> SearchConfig:
    base = dict(target_params=0.6, steps=3, trials=5, probes=TINY_PROBES, max_increment=0.2)
    base.update(kw)
    return SearchConfig(**base)


@pytest.fixture(scope="module")
def mlp_result(cache_dir):
    model, spec = zoo.load("mlp")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = search(model, spec, config=tiny(), cache_dir=cache_dir, quiet=True)
    return model, spec, before, result


def test_schedule_is_progressive():
    targets = step_targets(Target(macs=0.5), 5)
    assert [round(t.macs, 6) for t in targets] == [0.9, 0.8, 0.7, 0.6, 0.5]


def test_committed_steps_meet_their_targets(mlp_result):
    _, _, _, result = mlp_result
    assert result.target_reached and len(result.history) == 3
    for record in result.history:
        assert record.kept_params <= record.target["params"] + 1e-9
        assert record.kept_params >= record.target["params"] - 0.05, "lands just under, not far below"
    final = sum(p.numel() for p in result.model.parameters())
    assert final == result.history[-1].params


def test_increments_respect_the_bound(mlp_result):
    _, _, _, result = mlp_result
    previous = {name: 0.0 for name in result.amounts}
    for record in result.history:
        for name, amount in record.amounts.items():
            assert previous[name] - 1e-12 <= amount <= previous[name] + 0.2 + 1e-9
        previous = record.amounts


def test_user_model_untouched_and_result_is_new(mlp_result):
    model, _, before, result = mlp_result
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.model is not model
    assert result.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_same_seed_same_result(mlp_result, cache_dir):
    model, spec, _, first = mlp_result
    again = search(model, spec, config=tiny(), cache_dir=cache_dir, quiet=True)
    assert again.candidate == first.candidate
    assert [r.amounts for r in again.history] == [r.amounts for r in first.history]


def test_save_and_load_roundtrip(mlp_result, tmp_path):
    _, _, _, result = mlp_result
    result.save(tmp_path, model_ref="zoo:mlp")
    assert {p.name for p in tmp_path.iterdir()} >= {"pruned.pt", "spec.json", "history.json", "front.json"}
    loaded = SearchResult.load(tmp_path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.model(x), result.model(x))
    assert [s.amounts for s in loaded.history] == [s.amounts for s in result.history]


def test_fit_amounts_lands_under_target_and_respects_bound():
    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    previous = {g.name: 0.1 for g in space.groups}
    direction = {g.name: (i + 1) / len(space) for i, g in enumerate(space.groups)}
    target = Target(macs=0.7)
    amounts, feasible = fit_amounts(space, previous, direction, 0.15, target)
    assert feasible
    counts = [g.size - int(amounts[g.name] * g.size + 1e-9) for g in space.groups]
    assert target.met(space, counts)
    assert all(0.1 <= amounts[n] <= 0.25 + 1e-12 for n in amounts)
    _, feasible = fit_amounts(space, previous, direction, 0.01, Target(macs=0.3))
    assert not feasible


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs(sampler, cache_dir):
    model, spec = zoo.load("mlp")
    config = tiny(sampler=sampler, steps=1, trials=3, target_params=0.8, multi_objective=sampler == "nsga2")
    result = search(model, spec, config=config, cache_dir=cache_dir, quiet=True)
    assert result.history and result.history[-1].kept_params <= 0.8 + 1e-9


def test_multi_objective_front_is_non_dominated(cache_dir):
    model, spec = zoo.load("mlp")
    result = search(
        model, spec, config=tiny(sampler="nsga2", multi_objective=True, trials=6), cache_dir=cache_dir, quiet=True
    )
    points = [(p["compression"], p["proxies"]["fidelity"], p["proxies"]["robust_fidelity"]) for p in result.front]
    assert points
    for a in points:
        for b in points:
            assert not (all(x >= y for x, y in zip(b, a, strict=True)) and b != a), f"{b} dominates {a}"


def test_floor_stops_the_search_and_says_why(cache_dir):
    model, spec = zoo.load("mlp")
    # any pruning moves the outputs (KL > 0), so a KL ceiling of 0 stops the first step; a floor outside
    # a proxy's range (fidelity 1.01) is refused by SearchConfig instead
    result = search(model, spec, config=tiny(floors={"kl": 0.0}), cache_dir=cache_dir, quiet=True)
    assert not result.target_reached
    assert "floor" in result.stop_reason and "kl" in result.stop_reason
    assert result.history == []


def test_resume_continues_without_repeating_trials(cache_dir, tmp_path):
    model, spec = zoo.load("mlp")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = tiny(trials=4)

    class Interrupt(Exception):
        pass

    seen = []

    def killer(message: str) -> None:
        seen.append(message)
        if message.startswith("  trial 1") and any(m.startswith("step 2/") for m in seen):
            raise Interrupt  # dies in step 2 after two completed trials

    with pytest.raises(Interrupt):
        search(model, spec, config=config, storage=storage, cache_dir=cache_dir, log=killer)
    step1 = optuna.load_study(study_name=step_study(storage, 1), storage=storage)
    step2 = optuna.load_study(study_name=step_study(storage, 2), storage=storage)
    assert "committed" in step1.user_attrs
    done_before = [t.params for t in step2.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done_before) == 1  # trial 0 completed; trial 1 died while logging
    messages = []
    result = search(model, spec, config=config, storage=storage, cache_dir=cache_dir, log=messages.append)
    assert result.target_reached
    assert any("resuming after 1 completed trials" in m for m in messages)
    assert not any(
        m.startswith("  trial")
        for m in messages[: messages.index(next(m for m in messages if m.startswith("step 2/")))]
    )
    step2 = optuna.load_study(study_name=step_study(storage, 2), storage=storage)
    complete = [t for t in step2.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4 and complete[0].params == done_before[0]
    # the resumed sampler continues instead of replaying its stream: no completed trial's amounts come again
    assert len({tuple(sorted(t.params.items())) for t in step2.trials}) == len(step2.trials)
    assert dataclasses.asdict(result.history[0]) is not None


def test_enqueue_uniform_starts_each_step_with_the_even_step_and_never_commits_below_it(cache_dir):
    model, spec = zoo.load("mlp")
    storage = optuna.storages.InMemoryStorage()
    result = search(model, spec, config=tiny(enqueue_uniform=True), storage=storage, cache_dir=cache_dir, quiet=True)
    previous = {name: 0.0 for name in result.amounts}
    for record in result.history:
        study = optuna.load_study(study_name=step_study(storage, record.step), storage=storage)
        first = study.trials[0]
        assert set(first.params.values()) == {1.0}
        grown = {round(first.user_attrs["amounts"][n] - previous[n], 9) for n in previous}
        assert len(grown) == 1, "every group grows by the same increment"
        assert record.score >= first.user_attrs["score"]
        previous = record.amounts
    storage = optuna.storages.InMemoryStorage()
    search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)
    first = optuna.load_study(study_name=step_study(storage, 1), storage=storage).trials[0]
    assert set(first.params.values()) != {1.0}, "by default the sampler proposes the first trial"


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
        SearchConfig(target_macs=1.2)
    with pytest.raises(ValueError, match="unknown proxies"):
        SearchConfig(target_macs=0.5, weights={"accuracy": 1.0})
    with pytest.raises(ValueError, match="unknown sampler"):
        from robustprune.search.samplers import make_sampler

        make_sampler("anneal", 0)


def test_infeasible_step_is_split_and_target_still_reached(cache_dir):
    model, spec = zoo.load("mlp")
    messages = []
    # 20% of the params per step needs > 15% of the dominant first layer's neurons: split into smaller steps
    result = search(model, spec, config=tiny(steps=2, max_increment=0.15), cache_dir=cache_dir, log=messages.append)
    assert result.target_reached, result.stop_reason
    assert any("inserting an intermediate step" in m for m in messages)
    assert len(result.history) > 2
    assert result.history[-1].kept_params <= 0.6 + 1e-9
    previous = {name: 0.0 for name in result.amounts}
    for record in result.history:
        assert all(record.amounts[n] <= previous[n] + 0.15 + 1e-9 for n in previous)
        previous = record.amounts


def test_cli_search_defaults_are_the_library_defaults():
    from robustprune.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["search"]
    defaults = {a.dest: a.default for a in sub._actions}
    config = SearchConfig(target_macs=0.5)
    assert defaults["importance"] == config.importance
    assert defaults["trials"] == config.trials
    assert defaults["compensation"] == config.compensation == "auto"
    assert defaults["sampler"] == config.sampler
    assert defaults["rescore"] == config.rescore


def test_auto_settings_resolve_by_batchnorm():
    from robustprune.structure import PruneSpace

    for name, importance, compensation in (
        ("resnet20", "auto", ("bn",)),  # with BN the criterion is chosen on the proxies at search time
        ("mlp", "merge_saliency", ("merge",)),
        ("convnext", "merge_saliency", ()),  # no BN, LayerNorm: neither merging nor bias correction helped
    ):
        model, spec = zoo.load(name)
        resolved = SearchConfig(target_macs=0.5).resolve(PruneSpace(model, spec))
        assert (resolved.importance, resolved.compensation) == (importance, compensation)
    explicit = SearchConfig(target_macs=0.5, importance="l1", compensation=()).resolve(PruneSpace(model, spec))
    assert (explicit.importance, explicit.compensation) == ("l1", ())
    with pytest.raises(ValueError, match="compensation"):
        SearchConfig(target_macs=0.5, compensation="bn")


def test_auto_settings_without_norms_fall_back_to_l1_where_a_grouped_conv_reads_a_group(cache_dir):
    from robustprune.spec import InputSpec

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, groups=4),  # reads the first conv's channels in 4 blocks: no merging
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )
    spec = InputSpec(shape=(1, 12, 12), mean=(0.5,), std=(0.5,), num_classes=10)
    resolved = SearchConfig(target_macs=0.6).resolve(PruneSpace(model, spec))
    assert (resolved.importance, resolved.compensation) == ("l1", ())
    explicit = SearchConfig(target_macs=0.6, compensation=("merge",)).resolve(PruneSpace(model, spec))
    assert explicit.compensation == ("merge",)  # asked for: refused with its reason when the search runs
    result = search(model, spec, config=tiny(target_params=None, target_macs=0.6), cache_dir=cache_dir, quiet=True)
    assert result.target_reached and result.history[-1].kept_macs <= 0.6 + 1e-9


def test_auto_criterion_is_the_better_uniform_candidate_on_the_proxies():
    from robustprune.search.engine import AUTO_CRITERIA, _choose_criterion, pick_criterion
    from robustprune.search.objective import Evaluator, weighted_score
    from robustprune.select import uniform_amount_for, uniform_counts
    from robustprune.structure import PruneSpace

    def uniform_cost(space, target):
        counts = uniform_counts(space, uniform_amount_for(space, target))
        return space.cost_of_counts(counts)[0] / space.full_macs

    model, spec = zoo.load("cnn")
    config = SearchConfig(target_macs=0.5, probes=TINY_PROBES).resolve(PruneSpace(model, spec))
    space = PruneSpace(model, spec)
    from robustprune.probes.probeset import build_probes

    probes = build_probes(model, spec, space.output_layer, config.probes)
    inputs = probes.inputs()[: len(probes.pixels["synthetic"])]
    choice, values, chosen_scores = _choose_criterion(space, probes, inputs, config, None)
    assert set(values) == set(AUTO_CRITERIA) and choice == pick_criterion(values)
    from robustprune.criteria import all_scores
    from robustprune.select import uniform_candidate

    for criterion in AUTO_CRITERIA:  # each value is the proxy score of that criterion's uniform candidate
        scores = all_scores(space, criterion, inputs=inputs)
        if criterion == choice:
            assert all(torch.allclose(scores[k], chosen_scores[k]) for k in scores)
        # the candidate scored is the uniform baseline's own (just under the target)
        candidate = uniform_candidate(space, config.target, scores)
        assert space.cost(candidate)[0] / space.full_macs > uniform_cost(space, config.target), "tighter"
        _, _, proxies = Evaluator(space, probes, scores, ("bn",)).evaluate_candidate(candidate)
        assert weighted_score(proxies, config.weights) == pytest.approx(values[criterion])
    result = search(model, spec, config=dataclasses.replace(config, trials=2, steps=1), quiet=True)
    assert result.config.importance == choice and result.criterion_scores == pytest.approx(values)


def test_auto_criterion_keeps_the_rank_sum_unless_another_leads_by_more_than_the_margin():
    from robustprune.search.engine import HEDGE_MARGIN, pick_criterion

    base = {"taylor_synthetic": 1.0, "l1": 1.0, "taylor_l1": 1.0}
    assert pick_criterion(base) == "taylor_l1"  # a tie: the hedge
    small = HEDGE_MARGIN / 2
    assert pick_criterion({**base, "l1": 1.0 + small}) == "taylor_l1"
    assert pick_criterion({**base, "l1": 1.0 + 2 * HEDGE_MARGIN}) == "l1"
    assert pick_criterion({**base, "taylor_synthetic": 1.0 + 3 * HEDGE_MARGIN, "l1": 1.0 + 2 * HEDGE_MARGIN}) == (
        "taylor_synthetic"
    )
    assert pick_criterion({**base, "taylor_l1": 0.5}) == "taylor_synthetic"  # the hedge far behind: the first best
    assert pick_criterion({**base, "l1": 1.0 + small}, margin=0.0) == "l1"  # margin 0: plain maximum


def test_rescore_ranks_again_on_the_pruned_candidate_and_keeps_removed_channels_removed():
    from robustprune.criteria import all_scores
    from robustprune.probes.probeset import build_probes
    from robustprune.search.engine import _rescore
    from robustprune.search.objective import Evaluator

    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    probes = build_probes(model, spec, space.output_layer, TINY_PROBES)
    inputs = probes.inputs()[: len(probes.pixels["synthetic"])]
    targets = probes.logits["synthetic"].argmax(dim=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluator = Evaluator(space, probes, all_scores(space, "taylor_synthetic", inputs=inputs), ("bn",))
    first = {g.name: 0.3 for g in space.groups}
    cand = evaluator.candidate(first)
    rescored = _rescore(evaluator, first, "taylor_synthetic", inputs, targets)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "overrides restored"
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()), "no hooks left behind"
    changed = False
    for g in space.groups:
        kept = list(cand[g.name])
        removed = sorted(set(range(g.size)) - set(kept))
        assert (rescored[g.name][removed] == -1).all() and (rescored[g.name][kept] >= 0).all()
        old = torch.argsort(evaluator.scores[g.name][kept], stable=True)
        changed |= not torch.equal(old, torch.argsort(rescored[g.name][kept], stable=True))
    assert changed, "ranks measured on the pruned candidate differ from the original's somewhere"
    again = dataclasses.replace(evaluator, scores=rescored)
    assert again.candidate(first) == cand, "the committed candidate is unchanged under the new scores"
    more = again.candidate({g.name: 0.5 for g in space.groups})
    assert all(set(more[n]) <= set(cand[n]) for n in cand), "the next step only removes more"


def test_rescore_search_is_deterministic_and_meets_its_targets(cache_dir):
    model, spec = zoo.load("cnn")
    config = tiny(target_params=None, target_macs=0.6, importance="taylor_synthetic", rescore="synthetic", trials=3)
    first = search(model, spec, config=config, cache_dir=cache_dir, quiet=True)
    lines: list[str] = []
    again = search(model, spec, config=config, cache_dir=cache_dir, log=lines.append)
    assert first.target_reached and first.candidate == again.candidate
    assert any("ranking channels again" in line for line in lines), "the log says that it rescores"
    assert all(r.kept_macs <= r.target["macs"] + 1e-9 for r in first.history)
    lines.clear()
    plain_config = dataclasses.replace(config, rescore="off")
    plain = search(model, spec, config=plain_config, cache_dir=cache_dir, log=lines.append)
    assert not any("ranking channels again" in line for line in lines)
    assert [r.amounts for r in plain.history][0] == [r.amounts for r in first.history][0], "step 1 is the same"
    with pytest.raises(ValueError, match="rescore"):
        SearchConfig(target_macs=0.5, importance="l1", rescore="synthetic")
    with pytest.raises(ValueError, match="rescore must be one of"):
        SearchConfig(target_macs=0.5, rescore="yes")
    with_adversarial = dataclasses.replace(config, rescore="synthetic+adversarial")
    adversarial = search(model, spec, config=with_adversarial, cache_dir=cache_dir, quiet=True)
    assert adversarial.target_reached


def test_default_steps_are_finer_without_batchnorm_and_an_explicit_count_is_kept():
    from robustprune.structure import PruneSpace

    mlp, mlp_spec = zoo.load("mlp")
    cnn, cnn_spec = zoo.load("cnn")
    assert SearchConfig(target_params=0.5).resolve(PruneSpace(mlp, mlp_spec)).steps == 10  # one per 5%
    assert SearchConfig(target_params=0.7).resolve(PruneSpace(mlp, mlp_spec)).steps == 6
    assert SearchConfig(target_macs=0.5).resolve(PruneSpace(cnn, cnn_spec)).steps == 5  # one per 10%
    assert SearchConfig(target_params=0.5, steps=2).resolve(PruneSpace(mlp, mlp_spec)).steps == 2


def test_rescore_auto_ranks_again_only_for_deep_targets():
    from robustprune.search.engine import RESCORE_AT_MOST
    from robustprune.structure import PruneSpace

    model, spec = zoo.load("cnn")
    space = PruneSpace(model, spec)
    assert SearchConfig(target_macs=0.5).rescore == "auto"
    assert SearchConfig(target_macs=0.5).resolve(space).rescore == "synthetic"
    assert SearchConfig(target_macs=RESCORE_AT_MOST).resolve(space).rescore == "synthetic"
    assert SearchConfig(target_macs=0.7).resolve(space).rescore == "off"
    assert SearchConfig(target_macs=0.9, target_params=0.5).resolve(space).rescore == "synthetic"  # the deeper one
    assert SearchConfig(target_macs=0.5, rescore="off").resolve(space).rescore == "off"  # explicit wins
    SearchConfig(target_macs=0.5, importance="l1")  # auto with a criterion rescoring cannot change: no error
    mlp, mlp_spec = zoo.load("mlp")  # merge saliency: rescoring would change nothing
    assert SearchConfig(target_params=0.5).resolve(PruneSpace(mlp, mlp_spec)).rescore == "off"


def test_a_frozen_model_is_searched_and_ranked_by_taylor(tmp_path):
    import robustprune as rp
    from robustprune.probes.probeset import ProbeConfig
    from robustprune.probes.synthetic import SyntheticConfig

    model, spec = rp.zoo.load("cnn")
    model.requires_grad_(False)  # Taylor, synthesis and attacks take gradients w.r.t. inputs, not weights
    probes = ProbeConfig(synthetic=SyntheticConfig(n=8, steps=2, batch_size=8), attack_steps=1, n_undesired=4)
    config = rp.SearchConfig(target_macs=0.8, steps=1, trials=2, importance="taylor_synthetic", probes=probes)
    result = rp.search(model, spec, config=config, cache_dir=tmp_path, quiet=True)
    assert result.target_reached and result.history[-1].kept_macs <= 0.8 + 1e-9
    assert not any(p.requires_grad for p in model.parameters())


def test_the_nsga2_sampler_makes_each_step_two_objective():
    # docs/search.md: `--sampler nsga2` (or `--multi-objective`) makes each step two-objective
    assert SearchConfig(target_macs=0.5, sampler="nsga2").multi_objective
    assert not SearchConfig(target_macs=0.5, sampler="tpe").multi_objective


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": {"fidelity": float("nan")}}, "weight 'fidelity' must be a finite number"),
        ({"weights": {"fidelity": "1"}}, "must be a finite number"),
        ({"target_macs": torch.tensor(0.5)}, "target macs must be a number"),
        ({"target_macs": "0.5"}, "target macs must be a number"),
        ({"seed": 5_000_000}, r"seed must be an integer in \[0, 4294966\]"),
        ({"multi_objective": "no"}, "multi_objective must be True or False"),
        ({"max_increment": None}, "max_increment must be a number"),
    ],
)
def test_values_of_the_wrong_kind_are_refused_when_the_config_is_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(**{"target_macs": 0.5, **kwargs})


def test_a_step_whose_trials_all_fail_gives_up_instead_of_looping():
    from robustprune.search import steps

    study = optuna.create_study(direction="maximize")
    with pytest.raises(RuntimeError, match="trials of .* failed"):
        steps.contribute(study, lambda trial: float("nan"), budget=2)
    assert len(study.trials) == steps.MIN_FAILURES


def test_a_target_out_of_reach_is_refused_before_any_probe(cache_dir, monkeypatch):
    from robustprune.search import progressive
    from robustprune.targets import UnreachableTargetError

    model, spec = zoo.load("mlp")
    monkeypatch.setattr(progressive, "build_probes", lambda *a, **k: pytest.fail("probes built for nothing"))
    with pytest.raises(UnreachableTargetError, match="out of reach: with every group at max_amount 0.2"):
        search(model, spec, config=tiny(target_params=0.3, max_amount=0.2), cache_dir=cache_dir, quiet=True)


def test_a_candidate_of_tensor_or_numpy_indices_prunes_as_its_integers():
    import numpy as np

    from robustprune.structure import export, masked

    model, spec = zoo.load("mlp")
    space = PruneSpace(model, spec, exclude="1")  # one module's name, not its characters
    assert space.excluded == {"1"}
    ints = {g.name: list(range(g.size // 2)) for g in space.groups}
    for kind in (torch.tensor, np.array):
        other = {name: kind(keep) for name, keep in ints.items()}
        x = torch.rand(3, *spec.shape)
        with torch.no_grad():
            pruned = export(space, ints)(x)
            assert torch.equal(export(space, other)(x), pruned)
            with masked(space, other):
                assert torch.allclose(space.model(x), pruned, atol=1e-5)
    name = space.groups[0].name
    with pytest.raises(ValueError, match="distinct"):
        space.cost({name: torch.tensor([0, 0, 1])})
    with pytest.raises(ValueError, match="must be integers"):
        space.cost({name: torch.tensor([0.0, 1.0])})


def test_paoding_leaves_the_callers_random_stream_alone():
    import robustprune as rp

    model, spec = zoo.load("mlp")
    torch.manual_seed(0)
    rp.baseline(model, spec, "paoding", target_params=0.7)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_optuna_is_quiet_during_a_search_only(cache_dir, monkeypatch):
    from robustprune.search import progressive

    seen = []
    contribute = progressive.run_step_trials

    def spy(*args, **kwargs):
        seen.append(optuna.logging.get_verbosity())
        return contribute(*args, **kwargs)

    monkeypatch.setattr(progressive, "run_step_trials", spy)
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        model, spec = zoo.load("mlp")
        search(model, spec, config=tiny(steps=1, trials=2), cache_dir=cache_dir, quiet=True)
        assert seen and set(seen) == {optuna.logging.WARNING}  # no per-trial INFO lines amid the progress
        assert optuna.logging.get_verbosity() == optuna.logging.INFO  # the caller's level, restored
    finally:
        optuna.logging.set_verbosity(before)
