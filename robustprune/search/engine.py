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

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, get_args

import optuna
import torch
from torch import nn

from robustprune.compensate import overrides_applied
from robustprune.criteria import CRITERIA, NEEDS_INPUTS, all_scores, rank_sum, taylor_scores
from robustprune.criteria.base import Criterion
from robustprune.probes.bn_statistics import bn_layers
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.proxies import PROXIES
from robustprune.search.objective import (
    COMPENSATIONS,
    DEFAULT_WEIGHTS,
    Evaluator,
    check_proxy_names,
    check_weights,
    weighted_score,
)
from robustprune.search.result import SearchResult, StepRecord
from robustprune.search.samplers import MAX_SEED, Sampler, make_sampler
from robustprune.search.schedule import default_steps
from robustprune.select import removed_last, uniform_candidate
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, UnsupportedModelError, masked
from robustprune.structure.analysis import consumer_columns
from robustprune.targets import Target

#: Probes for the search: 256 inversion images, 100 Adam steps (cached on disk), and adversarial probes at
#: eps 0.03, where the zoo models' robustness still differs. Evidence: docs/defaults.md, "probes".
SEARCH_PROBES = ProbeConfig(synthetic=SyntheticConfig(n=256, steps=100), eps=0.03)


#: rescore "auto" ranks again after each step when the target keeps at most this fraction of the cost:
#: the first ranking goes stale as more is cut (docs/defaults.md, "rescore").
RESCORE_AT_MOST = 0.6

#: Compensation "auto" for a model without BatchNorm but with layer or group norms (``SearchConfig.resolve``).
NO_BN_NORMED: tuple[str, ...] = ()


def _merge_applies(space: PruneSpace) -> bool:
    """Whether merging can move every group's pruned channels into survivors: no grouped conv or other layer that
    does not share input channels reads a group (``consumer_columns`` refuses those)."""
    try:
        for index in range(len(space.groups)):
            consumer_columns(space, index)
    except UnsupportedModelError:
        return False
    return True


def _has_layer_norms(model: nn.Module) -> bool:
    # an instance norm too: it normalizes each channel per input, which undoes merge compensation's rescaling
    return any(
        isinstance(m, nn.LayerNorm | nn.GroupNorm | nn.modules.instancenorm._InstanceNorm) for m in model.modules()
    )


#: A latency-targeted search prunes on when its found model, timed, is this far above the target
#: (half the 10% a latency target is held to; ``ProgressiveSearch.close_latency_loop``, docs/speed.md).
LATENCY_TOLERANCE = 0.05

#: Default schedule: no step removes more than this fraction of the original cost (``SearchConfig.resolve``).
STEP_FRACTION = 0.1
STEP_FRACTION_NO_BN = 0.05


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_floors(floors: Mapping[str, float]) -> None:
    """Every floor must be a finite value inside its proxy's range: one outside can never be met
    (every step would cross it) or never be crossed."""
    check_proxy_names(floors, "floors")
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
    sampler: Sampler = "tpe"
    multi_objective: bool = False  # True with the nsga2 sampler, a multi-objective method
    # "auto" (the default) picks by model: see ``resolve`` and docs/defaults.md
    importance: Importance = "auto"
    compensation: tuple[str, ...] | str = "auto"
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    floors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # the probes' seed follows ``seed`` unless the ProbeConfig fixes its own (``probe_config``)
    probes: ProbeConfig = dataclasses.field(default_factory=lambda: SEARCH_PROBES)
    seed: int = 0
    # True: each step's first trial is the even step (every group's amount grows by the same
    # increment), so no step commits a candidate that scores below it on the proxies. Off by default:
    # the proxies prefer the even step more often than real data does (docs/defaults.md).
    enqueue_uniform: bool = False
    # After each committed step, rank the channels again on the pruned candidate (Taylor against
    # the original model's predictions; removed channels stay removed: iterative pruning), on
    # the "synthetic" probes or on "synthetic+adversarial" ones; "off" keeps the first ranking.
    # Only input-based criteria (taylor_synthetic, taylor_l1) change; with importance "auto" it
    # applies when the choice is one of them. rescore "auto" (the default) is "synthetic" for deep
    # targets (at most ``RESCORE_AT_MOST`` of the cost kept) and "off" otherwise: see ``resolve``.
    rescore: Rescore = "auto"
    # Kept channels per group in multiples of this (or the whole group), e.g. 8 for SIMD-friendly widths.
    round_to: int = 1
    # Fraction of the original's latency to keep, predicted by a per-layer latency table measured on
    # this machine (robustprune.evaluate.lut) at ``latency_batch`` inputs and ``latency_threads`` threads.
    target_latency: float | None = None
    latency_batch: int = 1
    latency_threads: int | None = None
    # With a latency target: time the found model against the original; where it misses the target by
    # more than LATENCY_TOLERANCE, scale the table's prediction to that timing and prune on (more steps
    # to the same target), at most this many times. 0 trusts the table.
    latency_rounds: int = 2
    # Fit the channel ranking, rescoring and BN re-estimation on one half of the synthetic probes and score
    # candidates on the other half (``objective.fit_and_score_probes``); False fits and scores on all of them.
    split_probes: bool = False

    def __post_init__(self) -> None:
        _ = self.target  # validates the fractions and round_to
        if not _is_int(self.latency_batch) or self.latency_batch < 1:
            raise ValueError(f"latency_batch must be an integer >= 1, got {self.latency_batch!r}")
        if self.latency_threads is not None and (not _is_int(self.latency_threads) or self.latency_threads < 1):
            raise ValueError(f"latency_threads must be an integer >= 1 (or None), got {self.latency_threads!r}")
        if not _is_int(self.latency_rounds) or self.latency_rounds < 0:
            raise ValueError(f"latency_rounds must be an integer >= 0, got {self.latency_rounds!r}")
        if self.steps is not None and (not _is_int(self.steps) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1 (or None for the default schedule), got {self.steps!r}")
        if not _is_int(self.trials) or self.trials < 1:
            raise ValueError(f"trials per step must be an integer >= 1, got {self.trials!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")
        for name in ("multi_objective", "enqueue_uniform", "split_probes"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("max_increment", "max_amount"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), numbers.Real):
                raise ValueError(f"{name} must be a number, got {getattr(self, name)!r}")
        if not isinstance(self.probes, ProbeConfig):
            raise ValueError(f"probes must be a ProbeConfig, got {type(self.probes).__name__}")
        if self.split_probes and self.probes.synthetic.n < 2:
            raise ValueError(f"split_probes needs at least 2 synthetic probes, got {self.probes.synthetic.n}")
        if not 0 < self.max_increment <= 1:
            raise ValueError(f"max_increment must be in (0, 1], got {self.max_increment}")
        if not 0 < self.max_amount < 1:
            raise ValueError(f"max_amount must be in (0, 1), got {self.max_amount}")
        check_weights(self.weights)
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
        if self.sampler == "nsga2":  # NSGA-II ranks by Pareto fronts: two objectives, as docs/search.md says
            object.__setattr__(self, "multi_objective", True)
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
        the best criterion differs by model and target). Without BatchNorm nothing can be
        re-estimated; channels are ranked by merge saliency, and pruned channels are merged into
        their most similar survivor (Paoding) in a model without any norm layer, but left
        uncompensated (``NO_BN_NORMED``) in one with layer or group norms. Where a grouped conv reads a
        group, nothing can be merged: channels are ranked by l1 and left uncompensated.

        Steps (when not given): one per 10% of the original cost, and one per 5% without
        BatchNorm, where a search takes seconds. The evidence for each choice is in docs/defaults.md.
        """
        has_bn = bool(bn_layers(space.model))  # BN with running statistics: what re-estimation can fix
        # only asked where "auto" may merge: it walks every group's consumers
        mergeable = not has_bn and "auto" in (self.importance, self.compensation) and _merge_applies(space)
        importance = self.importance
        if importance == "auto" and not has_bn:
            # with BN, "auto" stays: ``_choose_criterion`` decides on the proxies; l1 reads weights only
            importance = "merge_saliency" if mergeable else "l1"
        compensation = self.compensation
        if compensation == "auto":
            merge = ("merge",) if mergeable else ()
            compensation = ("bn",) if has_bn else (NO_BN_NORMED if _has_layer_norms(space.model) else merge)
        steps = self.steps or default_steps(self.target, per_step=STEP_FRACTION if has_bn else STEP_FRACTION_NO_BN)
        rescore = self.rescore
        if rescore == "auto":
            rescorable = importance in ("auto", *RESCORED_CRITERIA)  # merge saliency, l1, ...: nothing to redo
            rescore = "synthetic" if self.target.deepest <= RESCORE_AT_MOST and rescorable else "off"
        # nothing fitted on the probes (a weight-only ranking, no BN or bias fit, no rescoring): the split would only
        # halve the scoring probes
        fits = importance in ("auto", *NEEDS_INPUTS) or bool({"bn", "bias"} & set(compensation)) or rescore != "off"
        return dataclasses.replace(
            self,
            importance=importance,
            compensation=compensation,
            steps=steps,
            rescore=rescore,
            probes=self.probe_config,
            split_probes=self.split_probes and fits,
        )

    @property
    def probe_config(self) -> ProbeConfig:
        """The probes this search is scored on, their seed fixed (the search's seed unless the probes give one)."""
        return self.probes.seeded(self.seed)

    @property
    def target(self) -> Target:
        return Target(
            macs=self.target_macs, params=self.target_params, latency=self.target_latency, round_to=self.round_to
        )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for name, default in _UNSET_FIELDS.items():  # absent at their defaults: older searches keep their identity
            if data[name] == default:
                del data[name]
        data["probes"] = self.probe_config.to_dict()
        data["weights"], data["floors"] = dict(self.weights), dict(self.floors)
        return data


#: Fields added after searches were first fingerprinted, left out of ``to_dict`` at these defaults.
_UNSET_FIELDS = {
    "round_to": 1,
    "target_latency": None,
    "latency_batch": 1,
    "latency_threads": None,
    "latency_rounds": 2,
    "split_probes": False,
}


#: "auto" picks among these; taylor_l1 is computed from the other two.
AUTO_CRITERIA = ("taylor_synthetic", "l1", "taylor_l1")
#: The rank sum is kept unless another criterion's uniform candidate scores more than
#: ``HEDGE_MARGIN`` higher on the proxies: a smaller lead is within the probe seeds' noise
#: (docs/defaults.md, "importance").
HEDGE_CRITERION = "taylor_l1"
HEDGE_MARGIN = 0.03


def pick_criterion(values: Mapping[str, float], margin: float = HEDGE_MARGIN) -> str:
    """The criterion ``auto`` uses given each one's proxy score: the best, unless it beats the hedge
    (``HEDGE_CRITERION``) by no more than ``margin``. A tie keeps the first of ``AUTO_CRITERIA``."""
    best = max(AUTO_CRITERIA, key=lambda c: (values[c], -AUTO_CRITERIA.index(c)))
    return HEDGE_CRITERION if values[best] - values[HEDGE_CRITERION] <= margin else best


def _choose_criterion(
    space, probes, inputs, config: SearchConfig, attack, target: Target | None = None, bn_pixels=None
) -> tuple[str, dict[str, float], dict[str, torch.Tensor]]:
    """The criterion whose uniform candidate at the final target scores best on the proxies
    (by more than ``HEDGE_MARGIN`` over the rank sum: ``pick_criterion``).

    Data-free like everything else: the same objective the steps maximize, on the same
    probes (``bn_pixels``: the inputs BN is re-estimated on, default the probes'). Returns the choice, every
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
        candidate = uniform_candidate(space, target or config.target, channel_scores[criterion])
        evaluator = Evaluator(
            space, probes, channel_scores[criterion], config.compensation, attack=attack, bn_pixels=bn_pixels
        )
        values[criterion] = weighted_score(evaluator.evaluate_candidate(candidate)[2], config.weights)
    choice = pick_criterion(values)
    return choice, values, channel_scores[choice]


#: criteria that ``SearchConfig.rescore`` ranks again after every step (they depend on the model's activations)
RESCORED_CRITERIA = ("taylor_synthetic", "taylor_l1")
Rescore = Literal["auto", "off", "synthetic", "synthetic+adversarial"]
RESCORE_INPUTS: tuple[str, ...] = get_args(Rescore)
#: ``SearchConfig.importance``: a criterion, or "auto" (chosen per model by ``resolve``)
Importance = Literal["auto", Criterion]


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


def _with_latency_model(config: SearchConfig, space: PruneSpace, cache_dir, say, quiet: bool) -> Target:
    """The search's target, with the latency table attached when it bounds latency (measured or cached)."""
    target = config.target
    if target.latency is None:
        return target
    from robustprune.evaluate.lut import build_latency_model

    table = build_latency_model(
        space, config.latency_batch, config.latency_threads, cache_dir=cache_dir, progress=say, quiet=quiet
    )
    say(f"latency model: original {table.measured_full_ms:.2f} ms at batch {config.latency_batch}")
    return dataclasses.replace(target, latency_model=table)


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


#: Called with each committed step's record, in order (an exception stops the search; a storage resumes it).
StepCallback = Callable[[StepRecord], None]


def search(
    model: nn.Module,
    spec: InputSpec,
    config: SearchConfig | float | None = None,
    target_params: float | None = None,
    *,
    storage: str | optuna.storages.BaseStorage | None = None,
    cache_dir=None,
    callbacks: Sequence[StepCallback] = (),
    target_macs: float | None = None,
    sampler: str | None = None,
    seed: int | None = None,
    **options,
) -> SearchResult:
    """Prune ``model`` to the target by progressive, Optuna-driven, proxy-scored steps.

    ``search(model, spec, SearchConfig(target_macs=0.5), storage=..., cache_dir=..., callbacks=[...])``.
    For compatibility the third argument may also be the MACs fraction to keep (it was ``target_macs``
    before the config took its place), and ``target_macs``, ``target_params``, ``sampler`` and ``seed``
    override the config's fields (``search_config``).

    The user's model is never modified (the search works on one private copy).
    ``storage`` (an Optuna storage URL such as ``sqlite:///search.db``, or a storage
    object) makes the search resumable: rerun the same call and it continues after the
    last committed step and the last completed trial. Its studies are named
    ``{study_name}-{fingerprint}-step{k}``, the fingerprint covering the model's weights, the
    input spec and the resolved config (seed and target included); a storage holding another
    search's ``study_name`` studies is refused (``StorageMismatchError``), and so is one where
    another live process runs this search (``StorageBusyError``; see ``robustprune.search.storage``).
    ``cache_dir`` caches the probes (and a latency table) on disk. ``callbacks`` get each committed
    ``StepRecord``. ``options`` are ``ProgressiveSearch``'s other keywords: ``study_name``, ``exclude``
    (module names whose channels stay whole), ``quiet``, ``log`` (a callable taking each progress line)
    and ``model_ref`` (``zoo:NAME``, ``torchvision:NAME``, a torch.export program file,
    ``package.module:factory``) with ``weights_ref`` (its state dict file): published in a persistent
    storage so that ``robustprune worker`` processes can load the model and add trials (docs/search.md,
    "Many machines"). A storage object resumes after a kill only with heartbeats (an ``RDBStorage``
    with ``heartbeat_interval``); a URL gets them.
    """
    from robustprune.search.progressive import ProgressiveSearch  # it builds on this module's config

    if config is not None and not isinstance(config, SearchConfig):
        if isinstance(config, bool) or not isinstance(config, int | float):
            raise TypeError(f"config must be a SearchConfig or a MACs fraction, got {type(config).__name__}")
        if target_macs is not None:
            raise TypeError("search() got the MACs target twice: as the third argument and as target_macs")
        config, target_macs = None, float(config)
    config = search_config(config, target_macs=target_macs, target_params=target_params, sampler=sampler, seed=seed)
    run = ProgressiveSearch(model, spec, config, storage=storage, cache_dir=cache_dir, callbacks=callbacks, **options)
    with run:  # holds the storage's owner claim until the search ends
        return run.resume()


def config_from_dict(data: Mapping) -> SearchConfig:
    """The SearchConfig whose ``to_dict()`` (JSON round trip included) is ``data``."""
    data = dict(data)
    probes = dict(data.pop("probes"))
    synthetic = SyntheticConfig(**probes.pop("synthetic"))
    compensation = data.pop("compensation")
    compensation = compensation if isinstance(compensation, str) else tuple(compensation)
    return SearchConfig(**data, compensation=compensation, probes=ProbeConfig(synthetic=synthetic, **probes))
