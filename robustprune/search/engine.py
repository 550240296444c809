"""The progressive, stochastic, robustness-scored search.

Step k asks for a little more compression than step k-1. Each step is one Optuna
study: a trial proposes the shape of the step (how much more each channel group
loses, bounded per step), the scale is solved so the candidate lands just under
the step's MAC/param target (reported to Optuna as a constraint), the candidate is
built with the importance criterion and compensated (BN re-estimation on synthetic
inputs, optional neuron merging), and scored by proxies on a cached ProbeSet. The
best feasible candidate is committed and the next step starts from it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable, Mapping

import optuna
import torch
from torch import nn

from robustprune._progress import bars_enabled, progress_bar, write_line
from robustprune.baselines import uniform_candidate
from robustprune.compensate import apply_overrides, overrides_applied
from robustprune.importance import CRITERIA, all_scores, rank_sum, removed_last, taylor_scores
from robustprune.probes.probeset import ProbeConfig, build_probes
from robustprune.probes.synthetic import SyntheticConfig, bn_layers
from robustprune.proxies import PROXIES
from robustprune.search.objective import (
    COMPENSATIONS,
    DEFAULT_WEIGHTS,
    Evaluator,
    check_weights,
    fit_amounts,
    meets_floors,
    weighted_score,
)
from robustprune.search.result import SearchResult, StepRecord, pareto_front
from robustprune.search.samplers import make_sampler
from robustprune.search.schedule import default_steps, step_targets
from robustprune.search.storage import open_step, owned_search, search_identity
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export, masked
from robustprune.targets import Target, removed_count

optuna.logging.set_verbosity(optuna.logging.WARNING)


#: Probes for the search: 256 inversion images, 100 Adam steps. Twice the images and steps
#: cost four times the generation time (about 20 minutes for resnet20 on 2 CPU cores)
#: for little change in the BN-statistics match; the probes are cached on disk either way.
#: Adversarial probes use eps 0.03: at the evaluation's default 0.1 every zoo model's PGD
#: accuracy is near zero (results/zoo.md), so 0.03 is where robustness still differs.
SEARCH_PROBES = ProbeConfig(synthetic=SyntheticConfig(n=256, steps=100), eps=0.03)


#: rescore "auto" ranks again after each step when the target keeps at most this fraction of the cost.
#: Why: the first ranking goes stale as more is cut. On the validation split (results/tune_rescore.md,
#: results/tune_rescore_2.md, results/tune_rescore_deep.md) rescoring at 50% MACs gained clean accuracy
#: on resnet20 (+4.3), cnn (+0.4) and mobilenetv2 (+0.6); at 70% it cost resnet20 1.3 clean points.
RESCORE_AT_MOST = 0.6

#: Compensation "auto" for a model without BatchNorm but with layer or group norms (``SearchConfig.resolve``).
NO_BN_NORMED: tuple[str, ...] = ()


def _has_layer_norms(model: nn.Module) -> bool:
    return any(isinstance(m, nn.LayerNorm | nn.GroupNorm) for m in model.modules())


#: Default schedule: no step removes more than this fraction of the original cost (``SearchConfig.resolve``).
STEP_FRACTION = 0.1
STEP_FRACTION_NO_BN = 0.05


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_floors(floors: Mapping[str, float]) -> None:
    """Every floor must be a finite value inside its proxy's range: one outside can never be met
    (every step would cross it) or never be crossed."""
    for name, value in floors.items():
        (low, high), _better = PROXIES[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"floor {name}={value!r} must be a finite number")
        if not low <= value <= high:
            raise ValueError(f"floor {name}={value:g} is outside the range of {name}, [{low:g}, {high:g}]")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that decides what the search commits (and so goes into its provenance)."""

    target_macs: float | None = None
    target_params: float | None = None
    steps: int | None = None  # default (``resolve``): one step per 10% of the original cost, 5% without BN
    trials: int = 24  # per step
    max_increment: float = 0.15  # most a group's removal fraction may grow in one step
    max_amount: float = 0.9  # no group loses more than this fraction of its channels
    sampler: str = "tpe"
    multi_objective: bool = False
    # "auto" (the default) picks by model, as chosen on the validation split
    # (results/tune_search.md, results/tune_search_mlp.md): see ``resolve``.
    importance: str = "auto"
    compensation: tuple[str, ...] | str = "auto"
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    floors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # the probes' seed follows ``seed`` unless the ProbeConfig fixes its own (``probe_config``)
    probes: ProbeConfig = dataclasses.field(default_factory=lambda: SEARCH_PROBES)
    seed: int = 0
    # True: each step's first trial is the even step (every group's amount grows by the same
    # increment), so no step commits a candidate that scores below it on the proxies. Off by
    # default: on the validation split it lowered accuracy in 3 of 4 cells and tied the 4th
    # (resnet20 at 50% MACs: 80.0% vs 82.4%; results/tune_uniform.md). The proxies prefer
    # the even step more often than real data does.
    enqueue_uniform: bool = False
    # After each committed step, rank the channels again on the pruned candidate (Taylor against
    # the original model's predictions; removed channels stay removed: iterative pruning), on
    # the "synthetic" probes or on "synthetic+adversarial" ones; "off" keeps the first ranking.
    # Only input-based criteria (taylor_synthetic, taylor_l1) change; with importance "auto" it
    # applies when the choice is one of them. rescore "auto" (the default) is "synthetic" for deep
    # targets (at most ``RESCORE_AT_MOST`` of the cost kept) and "off" otherwise: see ``resolve``.
    rescore: str = "auto"

    def __post_init__(self) -> None:
        Target(macs=self.target_macs, params=self.target_params)  # validates
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1 (or None for the default schedule), got {self.steps!r}")
        if not _is_int(self.trials) or self.trials < 1:
            raise ValueError(f"trials per step must be an integer >= 1, got {self.trials!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.probes, ProbeConfig):
            raise ValueError(f"probes must be a ProbeConfig, got {type(self.probes).__name__}")
        if not 0 < self.max_increment <= 1:
            raise ValueError(f"max_increment must be in (0, 1], got {self.max_increment}")
        if not 0 < self.max_amount < 1:
            raise ValueError(f"max_amount must be in (0, 1), got {self.max_amount}")
        check_weights(self.weights)
        check_weights({**self.floors, "fidelity": 1.0})
        check_floors(self.floors)
        if self.compensation != "auto":
            if isinstance(self.compensation, str):
                raise ValueError(f"compensation is 'auto' or a tuple of {', '.join(COMPENSATIONS)}")
            object.__setattr__(self, "compensation", tuple(self.compensation))
            unknown = set(self.compensation) - set(COMPENSATIONS)
            if unknown:
                raise ValueError(f"unknown compensation {sorted(unknown)}; choose from {', '.join(COMPENSATIONS)}")
            if {"merge", "bias"} <= set(self.compensation):
                raise ValueError("compensation 'merge' and 'bias' both rewrite what consumers read; choose one")
        if self.importance != "auto" and self.importance not in CRITERIA:
            raise ValueError(f"unknown importance {self.importance!r}; choose one of: auto, {', '.join(CRITERIA)}")
        make_sampler(self.sampler, self.seed, self.multi_objective)  # validates the name
        if self.rescore not in RESCORE_INPUTS:
            raise ValueError(f"rescore must be one of {', '.join(RESCORE_INPUTS)}, got {self.rescore!r}")
        if self.rescore not in ("off", "auto") and self.importance not in ("auto", *RESCORED_CRITERIA):
            raise ValueError(
                f"rescore ranks the channels again on the pruned model, which only changes input-based "
                f"criteria ({', '.join(RESCORED_CRITERIA)}); importance {self.importance!r} would ignore it"
            )

    def resolve(self, space: PruneSpace) -> SearchConfig:
        """The config with "auto" replaced by what it means for this model.

        With BatchNorm: BN re-estimation, and the criterion (Taylor on the synthetic probes,
        l1, or their rank sum) chosen on the proxies by the uniform candidate at the final target
        (``_choose_criterion``, the rank sum unless another clearly leads; none wins everywhere:
        Taylor on resnet20 at 50% MACs, l1 on mobilenetv2 at 50%, the rank sum on resnet20 at 70%;
        results/criterion_choice.md). Without BatchNorm
        nothing can be re-estimated; channels are ranked by merge saliency, and pruned channels
        are merged into their most similar survivor (Paoding) in a model without any norm layer
        (mlp at 50% params: 85.8% vs 72.4%), but left uncompensated (``NO_BN_NORMED``) in one with
        layer or group norms, where merging and bias correction both lost (convnext;
        docs/defaults.md).

        Steps (when not given): one per 10% of the original cost, and one per 5% without
        BatchNorm, where a search takes seconds: on the mlp the finer steps gained on both
        targets and both metrics on validation (results/tune_steps_mlp.md). With BN the finer
        schedule doubles the time and has not been validated.
        """
        has_bn = bool(bn_layers(space.model))  # BN with running statistics: what re-estimation can fix
        importance = self.importance
        if importance == "auto" and not has_bn:
            importance = "merge_saliency"  # with BN, "auto" stays: ``_choose_criterion`` decides on the proxies
        compensation = self.compensation
        if compensation == "auto":
            compensation = ("bn",) if has_bn else (NO_BN_NORMED if _has_layer_norms(space.model) else ("merge",))
        steps = self.steps or default_steps(self.target, per_step=STEP_FRACTION if has_bn else STEP_FRACTION_NO_BN)
        rescore = self.rescore
        if rescore == "auto":
            rescorable = importance in ("auto", *RESCORED_CRITERIA)  # merge saliency, l1, ...: nothing to redo
            rescore = "synthetic" if self.target.deepest <= RESCORE_AT_MOST and rescorable else "off"
        return dataclasses.replace(
            self,
            importance=importance,
            compensation=compensation,
            steps=steps,
            rescore=rescore,
            probes=self.probe_config,
        )

    @property
    def probe_config(self) -> ProbeConfig:
        """The probes this search is scored on, their seed fixed (the search's seed unless the probes give one)."""
        return self.probes.seeded(self.seed)

    @property
    def target(self) -> Target:
        return Target(macs=self.target_macs, params=self.target_params)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["probes"] = self.probe_config.to_dict()
        data["weights"], data["floors"] = dict(self.weights), dict(self.floors)
        return data


#: "auto" picks among these (results/criterion_choice.md); taylor_l1 is computed from the other two.
AUTO_CRITERIA = ("taylor_synthetic", "l1", "taylor_l1")
#: The rank sum is kept unless another criterion's uniform candidate scores more than
#: ``HEDGE_MARGIN`` higher on the proxies. Why: on the validation split (results/criterion_seeds.md,
#: 6 BN cells x 3 probe seeds) the rank sum's candidate is near the best one wherever the leads are
#: small, and a criterion's lead over it changes between probe seeds with a standard deviation of
#: 0.008-0.030 (median 0.023; cnn at 50% MACs: l1 - taylor_l1 = -0.011, -0.008, +0.004). A lead
#: within about one such deviation is noise; a clear one (resnet20 at 50%: Taylor +0.034 to +0.090)
#: is kept.
HEDGE_CRITERION = "taylor_l1"
HEDGE_MARGIN = 0.03


def pick_criterion(values: Mapping[str, float], margin: float = HEDGE_MARGIN) -> str:
    """The criterion ``auto`` uses given each one's proxy score: the best, unless it beats the hedge
    (``HEDGE_CRITERION``) by no more than ``margin``. A tie keeps the first of ``AUTO_CRITERIA``."""
    best = max(AUTO_CRITERIA, key=lambda c: (values[c], -AUTO_CRITERIA.index(c)))
    return HEDGE_CRITERION if values[best] - values[HEDGE_CRITERION] <= margin else best


def _choose_criterion(
    space, probes, inputs, config: SearchConfig, attack
) -> tuple[str, dict[str, float], dict[str, torch.Tensor]]:
    """The criterion whose uniform candidate at the final target scores best on the proxies
    (by more than ``HEDGE_MARGIN`` over the rank sum: ``pick_criterion``).

    Data-free like everything else: the same objective the steps maximize, on the same
    probes. Returns the choice, every
    criterion's objective value, and the chosen criterion's channel scores (so the search
    does not compute them again).
    """
    values, channel_scores = {}, {}
    for criterion in AUTO_CRITERIA:
        if criterion == "taylor_l1":  # the rank sum of the two already computed: no second Taylor pass
            channel_scores[criterion] = rank_sum(channel_scores["taylor_synthetic"], channel_scores["l1"])
        else:
            channel_scores[criterion] = all_scores(space, criterion, inputs=inputs, seed=config.seed)
        # the uniform baseline's own candidate: just under the target, not the plain uniform
        # fraction, which can overshoot by several percent of the cost on small models
        candidate = uniform_candidate(space, config.target, channel_scores[criterion])
        evaluator = Evaluator(space, probes, channel_scores[criterion], config.compensation, attack=attack)
        values[criterion] = weighted_score(evaluator.evaluate_candidate(candidate)[2], config.weights)
    choice = pick_criterion(values)
    return choice, values, channel_scores[choice]


#: criteria that ``SearchConfig.rescore`` ranks again after every step (they depend on the model's activations)
RESCORED_CRITERIA = ("taylor_synthetic", "taylor_l1")
RESCORE_INPUTS = ("auto", "off", "synthetic", "synthetic+adversarial")


def _rescore(evaluator: Evaluator, amounts, criterion: str, inputs, targets) -> dict[str, torch.Tensor]:
    """Channel scores for the next step, measured on the committed candidate (masked, compensated).

    Why: a channel's importance in the pruned model is not its importance in the original
    (its neighbours may be gone); iterative pruning ranks again after each cut. The removed
    channels are put last, so the next step's candidate only removes more.
    """
    space = evaluator.space
    candidate = evaluator.candidate(amounts)
    with overrides_applied(space.model, evaluator.overrides(candidate)), masked(space, candidate):
        taylor = taylor_scores(space, inputs, targets=targets)
    if criterion == "taylor_l1":
        taylor = rank_sum(taylor, all_scores(space, "l1"))
    return removed_last(taylor, candidate)


def _stale_message(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    return f"{study.study_name}: trial {trial.number} was left running by a process that stopped; marked failed"


def _excess(space: PruneSpace, target: Target, macs: int, params: int) -> float:
    """How far past the target (as a fraction of the original): <= 0 is feasible."""
    parts = []
    if target.macs is not None:
        parts.append(macs / space.full_macs - target.macs)
    if target.params is not None:
        parts.append(params / space.full_params - target.params)
    return max(parts)


def _midpoint(last: dict, target: Target, min_span: float = 0.01) -> Target | None:
    """A target halfway between the last committed one and ``target``, or None once steps get tiny."""
    mid = {}
    for name in ("macs", "params"):
        goal = getattr(target, name)
        if goal is None:
            mid[name] = None
            continue
        start = last.get(name) if last.get(name) is not None else 1.0
        if start - goal < 2 * min_span:
            return None
        mid[name] = (start + goal) / 2
    return Target(**mid)


def search_config(
    config: SearchConfig | None = None,
    *,
    target_macs: float | None = None,
    target_params: float | None = None,
    sampler: str | None = None,
    seed: int | None = None,
) -> SearchConfig:
    """The config :func:`search` runs: ``config`` (default ``SearchConfig()``) with the keyword overrides
    that are given. The probes follow an overridden seed unless the ProbeConfig fixes its own."""
    given = {"target_macs": target_macs, "target_params": target_params, "sampler": sampler, "seed": seed}
    overrides = {k: v for k, v in given.items() if v is not None}
    if config is None:
        return SearchConfig(**overrides)
    return dataclasses.replace(config, **overrides) if overrides else config


def search(
    model: nn.Module,
    spec: InputSpec,
    target_macs: float | None = None,
    target_params: float | None = None,
    *,
    config: SearchConfig | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str = "robustprune",
    exclude: tuple[str, ...] = (),
    cache_dir=None,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> SearchResult:
    """Prune ``model`` to the target by progressive, Optuna-driven, proxy-scored steps.

    The user's model is never modified (the search works on one private copy).
    ``storage`` (an Optuna storage URL such as ``sqlite:///search.db``, or a storage
    object) makes the search resumable: rerun the same call and it continues after the
    last committed step and the last completed trial. Its studies are named
    ``{study_name}-{fingerprint}-step{k}``, the fingerprint covering the model's weights, the
    input spec and the resolved config (seed and target included); a storage holding another
    search's ``study_name`` studies is refused (``StorageMismatchError``), and so is one where
    another live process runs this search (``StorageBusyError``; see ``robustprune.search.storage``).
    """
    config = search_config(config, target_macs=target_macs, target_params=target_params, sampler=sampler, seed=seed)
    with contextlib.ExitStack() as stack:  # holds the storage's owner claim until the search ends
        return _search(model, spec, config, storage, study_name, exclude, cache_dir, quiet, log, stack)


def _search(
    model: nn.Module,
    spec: InputSpec,
    config: SearchConfig,
    storage: str | optuna.storages.BaseStorage | None,
    study_name: str,
    exclude: tuple[str, ...],
    cache_dir,
    quiet: bool,
    log: Callable[[str], None] | None,
    stack: contextlib.ExitStack,
) -> SearchResult:
    """``search`` with its config resolved from the overrides, and ``stack`` holding the storage's owner claim."""
    say = log or ((lambda m: None) if quiet else write_line)
    bars = log is None and bars_enabled(quiet)
    trial_say = (lambda m: None) if bars else say  # with a bar, per-trial lines become its postfix
    start = time.time()
    work = copy.deepcopy(model).eval()
    space = PruneSpace(work, spec, exclude=exclude)
    say(
        f"prune space: {len(space)} channel groups, {space.full_macs / 1e6:.2f} M MACs, "
        f"{space.full_params / 1e3:.1f} k params; target {config.target.describe()}"
    )
    config = config.resolve(space)
    identity = search_identity(model, space, config)  # before the probes: a wrong storage fails at once
    storage, study_base, owner = stack.enter_context(
        owned_search(storage, study_name, identity, on_stale=lambda study, trial: say(_stale_message(study, trial)))
    )
    if storage is not None and not isinstance(storage, optuna.storages.InMemoryStorage):
        say(f"storage: this search's studies are {study_base}-step1, -step2, ...")
    probes = build_probes(work, spec, space.output_layer, config.probes, cache_dir=cache_dir, progress=say)
    attack = "fgsm" if config.weights.get("attack_robustness") else None
    synthetic_inputs = probes.inputs()[: len(probes.pixels["synthetic"])]
    criterion_scores: dict[str, float] = {}
    if config.importance == "auto":
        choice, criterion_scores, scores = _choose_criterion(space, probes, synthetic_inputs, config, attack)
        say(
            "criterion: "
            + ", ".join(f"{k} {v:.4f}" for k, v in criterion_scores.items())
            + f" on the proxies (uniform candidate at the target) -> {choice}"
        )
        # rescore ranks only input-based criteria again: with a data-free choice (l1) there is nothing to redo
        rescore = config.rescore if choice in RESCORED_CRITERIA else "off"
        config = dataclasses.replace(config, importance=choice, rescore=rescore)
    else:
        scores = all_scores(space, config.importance, inputs=synthetic_inputs, seed=config.seed)
    evaluator = Evaluator(space, probes, scores, config.compensation, attack=attack)
    if config.rescore != "off" and config.importance in RESCORED_CRITERIA:
        say(f"ranking channels again after each step on the pruned model ({config.rescore} probes)")
    n_steps = config.steps
    targets = step_targets(config.target, n_steps)
    directions = ["maximize", "maximize"] if config.multi_objective else ["maximize"]

    amounts = {g.name: 0.0 for g in space.groups}
    history: list[StepRecord] = []
    all_points: list[dict] = []
    stop_reason = "target reached"
    pending = list(targets)
    k = 0
    while pending:
        step_target = pending.pop(0)
        k += 1
        step_start = time.time()
        owner.check()
        sampler_k = make_sampler(config.sampler, seed=config.seed * 1000 + k, multi_objective=config.multi_objective)
        study = open_step(storage, study_base, k, identity, directions, sampler_k)
        if config.enqueue_uniform and "committed" not in study.user_attrs:
            # skip_if_exists: a resumed step does not get the even trial a second time
            study.enqueue_trial({f"g{i}": 1.0 for i in range(len(space.groups))}, skip_if_exists=True)
        previous = dict(amounts)
        done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        say(
            f"step {k}/{n_steps}: {step_target.describe()}"
            + (f" (resuming after {done} completed trials)" if done and "committed" not in study.user_attrs else "")
        )

        remaining = config.trials - done if "committed" not in study.user_attrs else 0
        bar = progress_bar(remaining, f"step {k}/{n_steps}", quiet=not bars, unit="trial")

        def objective(
            trial: optuna.Trial, previous=previous, step_target=step_target, k=k, bar=bar, evaluator=evaluator
        ):
            owner.check()  # taken over by another process: add no trial to its search
            direction = {g.name: trial.suggest_float(f"g{i}", 0.0, 1.0) for i, g in enumerate(space.groups)}
            proposal, feasible = fit_amounts(
                space, previous, direction, config.max_increment, step_target, config.max_amount
            )
            counts = [g.size - removed_count(g.size, proposal[g.name]) for g in space.groups]
            macs, params = space.cost_of_counts(counts)
            trial.set_constraint("target", _excess(space, step_target, macs, params))
            trial.set_user_attr("amounts", proposal)
            trial.set_user_attr("macs", macs)
            trial.set_user_attr("params", params)
            if not feasible:
                trial_say(f"  trial {trial.number}: cannot reach the step target within the per-step bound")
                bar.update(1)
                return (0.0, 0.0) if config.multi_objective else -1e9
            _, _, proxies = evaluator.evaluate(proposal)
            value = weighted_score(proxies, config.weights)
            trial.set_user_attr("proxies", proxies)
            trial.set_user_attr("score", value)
            trial_say(
                f"  trial {trial.number}: MACs {100 * macs / space.full_macs:.1f}%, fidelity {proxies['fidelity']:.3f},"
                f" robust {proxies['robust_fidelity']:.3f}, score {value:.4f}"
            )
            bar.set_postfix(fidelity=f"{proxies['fidelity']:.3f}", score=f"{value:.4f}", refresh=False)
            bar.update(1)
            return (proxies["fidelity"], proxies["robust_fidelity"]) if config.multi_objective else value

        if remaining > 0:
            try:
                study.optimize(objective, n_trials=remaining, gc_after_trial=False)
            finally:
                bar.close()
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        feasible_trials = [
            t for t in trials if t.user_attrs.get("proxies") is not None and all(v <= 0 for v in t.constraints.values())
        ]
        for t in feasible_trials:
            all_points.append(
                {
                    "step": k,
                    "trial": t.number,
                    "macs": t.user_attrs["macs"],
                    "params": t.user_attrs["params"],
                    "proxies": t.user_attrs["proxies"],
                    "score": t.user_attrs["score"],
                    "amounts": t.user_attrs["amounts"],
                }
            )
        if not feasible_trials:
            last = history[-1].target if history else {"macs": 1.0, "params": 1.0}
            midpoint = _midpoint(last, step_target)
            if midpoint is None:
                stop_reason = (
                    f"step {k}: no feasible candidate within the per-step bound (max_increment "
                    f"{config.max_increment}); use more steps or a larger max_increment"
                )
                say(stop_reason)
                break
            say(
                f"step {k}: no candidate reaches {step_target.describe()} within the per-step bound; "
                f"inserting an intermediate step at {midpoint.describe()}"
            )
            pending[:0] = [midpoint, step_target]
            n_steps += 1
            continue
        best = max(feasible_trials, key=lambda t: (t.user_attrs["score"], -t.number))
        crossed = meets_floors(best.user_attrs["proxies"], config.floors)
        if crossed:
            stop_reason = f"step {k} would cross a proxy floor: {'; '.join(crossed)}"
            say(f"stopping: {stop_reason}")
            break
        amounts = dict(best.user_attrs["amounts"])
        if "committed" not in study.user_attrs:
            owner.check()
            study.set_user_attr("committed", {"trial": best.number, "seconds": time.time() - step_start})
        seconds = study.user_attrs["committed"]["seconds"]
        record = StepRecord(
            step=k,
            target=dataclasses.asdict(step_target),
            amounts=amounts,
            proxies=best.user_attrs["proxies"],
            score=best.user_attrs["score"],
            macs=best.user_attrs["macs"],
            params=best.user_attrs["params"],
            kept_macs=best.user_attrs["macs"] / space.full_macs,
            kept_params=best.user_attrs["params"] / space.full_params,
            trials=len(trials),
            feasible_trials=len(feasible_trials),
            trial=best.number,
            seconds=seconds,
        )
        history.append(record)
        if config.rescore != "off" and config.importance in RESCORED_CRITERIA and pending:
            kinds = config.rescore.split("+")  # adversarial probes are answered with the original's answer on them
            inputs = torch.cat([probes.spec.normalize(probes.pixels[kind]) for kind in kinds])
            targets = torch.cat([probes.logits[kind].argmax(dim=1) for kind in kinds])
            scores = _rescore(evaluator, amounts, config.importance, inputs, targets)
            evaluator = dataclasses.replace(evaluator, scores=scores)
        say(
            f"step {k} committed trial {best.number}: MACs {100 * record.kept_macs:.1f}%, params "
            f"{100 * record.kept_params:.1f}%, fidelity {record.proxies['fidelity']:.3f}, "
            f"robust {record.proxies['robust_fidelity']:.3f} ({len(feasible_trials)}/{len(trials)} feasible, "
            f"{seconds:.0f}s)"
        )

    candidate = evaluator.candidate(amounts)
    overrides = evaluator.overrides(candidate)
    pruned = export(space, candidate, model=apply_overrides(work, overrides) if overrides else work)
    macs, params = space.cost(candidate)
    reached = bool(history) and history[-1].step == k and not pending
    if not history:
        stop_reason = stop_reason if stop_reason != "target reached" else "no step committed"
    say(
        f"done in {time.time() - start:.0f}s: {stop_reason}; MACs {100 * macs / space.full_macs:.1f}%, "
        f"params {100 * params / space.full_params:.1f}% of the original"
    )
    return SearchResult(
        model=pruned.eval(),
        space=space,
        candidate=candidate,
        amounts=amounts,
        history=history,
        front=pareto_front(all_points, space),
        config=config,
        stop_reason=stop_reason,
        target_reached=reached and stop_reason == "target reached",
        seconds=time.time() - start,
        probe_seconds=probes.seconds,
        criterion_scores=criterion_scores,
    )
