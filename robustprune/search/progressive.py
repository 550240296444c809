"""``ProgressiveSearch``: the search as a sequence of steps, each run, committed and rescored in turn.

A step is one Optuna study. ``run_step`` adds this process's trials to it until its trial budget is
taken (workers add theirs to the same study, ``robustprune.search.worker``); ``commit`` picks the
step's candidate by the commit rule (``robustprune.search.steps``) and records it once; ``rescore``
ranks the channels again on the committed candidate; ``resume`` runs the steps still pending after
those already committed in the storage. ``search()`` is ``with ProgressiveSearch(...) as run: run.resume()``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Sequence

import optuna
import torch
from torch import nn

from robustprune._progress import bars_enabled, progress_bar, write_line
from robustprune.compensate import apply_overrides
from robustprune.criteria import all_scores
from robustprune.probes.cache import cache_key
from robustprune.probes.probeset import ProbeSet, build_probes
from robustprune.search import engine
from robustprune.search.engine import RESCORED_CRITERIA, SearchConfig
from robustprune.search.job import finish_job, probes_digest, publish_job, stop_job
from robustprune.search.objective import Evaluator, fit_and_score_probes, meets_floors
from robustprune.search.result import SearchResult, StepRecord, pareto_front
from robustprune.search.samplers import make_sampler, step_seed
from robustprune.search.schedule import default_steps, step_targets
from robustprune.search.steps import (
    State,
    StepObjective,
    best,
    feasible,
    optuna_quiet,
    run_step_trials,
    step_plan,
)
from robustprune.search.storage import open_step, owned_search, search_identity
from robustprune.select import removed_count, uniform_counts
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace, export
from robustprune.targets import KINDS, Target, UnreachableTargetError


def _stale_message(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    return (
        f"{study.study_name}: trial {trial.number} was left running by a process that stopped; marked failed "
        "and queued again"
    )


def midpoint(last: dict, target: Target, min_span: float = 0.01) -> Target | None:
    """A target halfway between the last committed one and ``target``, or None once steps get tiny."""
    mid = {}
    for name in KINDS:
        goal = getattr(target, name)
        if goal is None:
            mid[name] = None
            continue
        start = last.get(name) if last.get(name) is not None else 1.0
        if start - goal < 2 * min_span:
            return None
        mid[name] = (start + goal) / 2
    return target.scaled(mid)


def attack_of(config: SearchConfig) -> str | None:
    """The attack the robustness proxy needs (only when it is weighted)."""
    return "fgsm" if config.weights.get("attack_robustness") else None


def step_evaluator(
    space: PruneSpace, probes: ProbeSet, scores: dict[str, torch.Tensor], config: SearchConfig
) -> Evaluator:
    """What every process of a search scores trials with: the score probes, BN re-estimated on the fit probes
    (``fit_and_score_probes``), the channel ranking ``scores``."""
    fit, scoring = fit_and_score_probes(probes, config.split_probes)
    return Evaluator(
        space, scoring, scores, config.compensation, attack=attack_of(config), bn_pixels=fit.pixels["synthetic"]
    )


class ProgressiveSearch:
    """One search: its prune space, probes, channel scores and committed steps, in one process.

    Use as a context manager (it owns the search's storage while open; see ``robustprune.search.storage``).
    Extension points: a step's target comes from ``self.pending`` (``step_targets`` of the config's
    target); a trial's cost and feasibility from ``StepObjective`` (``steps.excess``); what a step
    commits from ``commit``'s rule over the trials' user attributes; ``callbacks`` get each committed
    step's ``StepRecord`` (``resume``).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: InputSpec,
        config: SearchConfig,
        *,
        storage: str | optuna.storages.BaseStorage | None = None,
        study_name: str = "robustprune",
        exclude: tuple[str, ...] = (),
        cache_dir=None,
        quiet: bool = False,
        log: Callable[[str], None] | None = None,
        model_ref: str | None = None,
        weights_ref: str | None = None,
        callbacks: Sequence[Callable[[StepRecord], None]] = (),
    ) -> None:
        self.model, self.spec, self.config = model, spec, config
        self.callbacks = tuple(callbacks)
        self.storage_arg, self.study_name, self.exclude = storage, study_name, exclude
        self.cache_dir, self.model_ref, self.weights_ref = cache_dir, model_ref, weights_ref
        self.say = log or ((lambda m: None) if quiet else write_line)
        self.bars = log is None and bars_enabled(quiet)
        self.trial_say = (lambda m: None) if self.bars else self.say  # with a bar, per-trial lines become its postfix
        self._stack = contextlib.ExitStack()

    # -- setup -------------------------------------------------------------------------------------------
    def __enter__(self) -> ProgressiveSearch:
        try:
            self._stack.enter_context(optuna_quiet())
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and getattr(self, "published", False):  # workers stop instead of waiting
                reason = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else f"error ({exc_type.__name__})"
                with contextlib.suppress(Exception):
                    stop_job(self.storage, self.base, reason)
        finally:
            self._stack.close()

    def _setup(self) -> None:
        say, config = self.say, self.config
        self.start = time.time()
        self.work = copy.deepcopy(self.model).eval()
        # torch-pruning's tracing and grouping can take minutes on a large model, with nothing else to show
        say("prune space: tracing the model and grouping its channels (torch-pruning), then checking an export")
        space = self.space = PruneSpace(self.work, self.spec, exclude=self.exclude)
        say(
            f"prune space ({time.time() - self.start:.0f}s): {len(space)} channel groups, "
            f"{space.full_macs / 1e6:.2f} M MACs, {space.full_params / 1e3:.1f} k params; "
            f"target {config.target.describe()}"
        )
        config = config.resolve(space)
        self.identity = search_identity(self.model, space, config)  # before the probes: a wrong storage fails at once
        # the final target, with the latency table attached when it bounds latency (measured or cached)
        self.target = engine._with_latency_model(config, space, self.cache_dir, say, quiet=not self.bars)
        deepest = uniform_counts(space, config.max_amount, self.target.round_to)  # every group at max_amount
        if not self.target.met(space, deepest):
            raise UnreachableTargetError(
                f"target {self.target.describe()} is out of reach: with every group at max_amount "
                f"{config.max_amount} (and widths rounded to {self.target.round_to}) the model keeps more; "
                "ask for a larger fraction, raise max_amount, or exclude fewer modules"
            )
        self.storage, self.base, self.owner = self._stack.enter_context(
            owned_search(
                self.storage_arg,
                self.study_name,
                self.identity,
                on_stale=lambda study, trial: say(_stale_message(study, trial)),
            )
        )
        self.persistent = self.storage_arg is not None and not isinstance(self.storage, optuna.storages.InMemoryStorage)
        if self.persistent:
            say(f"storage: this search's studies are {self.base}-step1, -step2, ...")
        self.probes = build_probes(
            self.work, self.spec, space.output_layer, config.probes, cache_dir=self.cache_dir, progress=say
        )
        self.config = self._choose(config, self.probes)
        self.targets = step_targets(self.target, self.config.steps)
        self.pending: list[Target] = list(self.targets)
        self.n_steps = self.config.steps
        self.k = 0
        self.amounts = {g.name: 0.0 for g in space.groups}
        self.history: list[StepRecord] = []
        self.all_points: list[dict] = []
        self.latency_rounds: list[dict] = []  # the found model timed after the steps (close_latency_loop)
        self.position: dict = {"macs": 1.0, "params": 1.0}  # the last committed target (or the timed latency)
        self.stop_reason = "target reached"
        self.stopped = False
        self.published = False
        if self.persistent:
            publish_job(self.storage, self.base, self._job())
            self.published = True

    def _choose(self, config: SearchConfig, probes: ProbeSet) -> SearchConfig:
        """The config with the criterion "auto" chose; sets the evaluator on the first channel scores."""
        attack = attack_of(config)
        self.fit_probes, scoring = fit_and_score_probes(probes, config.split_probes)
        synthetic_inputs = self.fit_probes.inputs()[: len(self.fit_probes.pixels["synthetic"])]
        bn_pixels = self.fit_probes.pixels["synthetic"]
        self.criterion_scores: dict[str, float] = {}
        if config.importance == "auto":
            choice, self.criterion_scores, scores = engine._choose_criterion(
                self.space, scoring, synthetic_inputs, config, attack, self.target, bn_pixels=bn_pixels
            )
            self.say(
                "criterion: "
                + ", ".join(f"{k} {v:.4f}" for k, v in self.criterion_scores.items())
                + f" on the proxies (uniform candidate at the target) -> {choice}"
            )
            # rescore ranks only input-based criteria again: with a data-free choice (l1) there is nothing to redo
            rescore = config.rescore if choice in RESCORED_CRITERIA else "off"
            config = dataclasses.replace(config, importance=choice, rescore=rescore)
        else:
            scores = all_scores(self.space, config.importance, inputs=synthetic_inputs, seed=config.seed)
        self.evaluator = step_evaluator(self.space, probes, scores, config)
        if self.rescores(config):
            self.say(f"ranking channels again after each step on the pruned model ({config.rescore} probes)")
        return config

    @staticmethod
    def rescores(config: SearchConfig) -> bool:
        return config.rescore != "off" and config.importance in RESCORED_CRITERIA

    def _job(self) -> dict:
        """What a worker needs to rebuild this search (``robustprune.search.job``)."""
        return {
            "model": self.model_ref,
            "weights": self.weights_ref,
            "spec": self.spec.to_dict(),
            "exclude": sorted(self.exclude),
            "config": self.identity["config"],
            "identity": self.identity,
            "importance": self.config.importance,
            "rescore": self.config.rescore,
            "probes": {
                "cache_key": cache_key(self.model, self.spec, self.config.probes.synthetic),
                "digest": probes_digest(self.probes),
            },
        }

    # -- steps -------------------------------------------------------------------------------------------
    def run_step(self, target: Target) -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
        """Open the next step's study and add this process's trials until its budget is taken.

        Returns the study and the step's commit set (its first ``trials`` completed trials by number).
        """
        config, space = self.config, self.space
        self.k += 1
        k = self.k
        self.step_start = time.time()
        self.owner.check()
        directions = ["maximize", "maximize"] if config.multi_objective else ["maximize"]
        study = open_step(
            self.storage,
            self.base,
            k,
            self.identity,
            directions,
            lambda n: make_sampler(
                config.sampler, seed=step_seed(config.seed, k, n), multi_objective=config.multi_objective
            ),
        )
        committed = "committed" in study.user_attrs
        if config.enqueue_uniform and not committed:
            # skip_if_exists: a resumed step does not get the even trial a second time
            study.enqueue_trial({f"g{i}": 1.0 for i in range(len(space.groups))}, skip_if_exists=True)
        done = len(study.get_trials(deepcopy=False, states=(State.COMPLETE,)))
        self.say(
            f"step {k}/{self.n_steps}: {target.describe()}"
            + (f" (resuming after {done} completed trials)" if done and not committed else "")
        )
        if committed:  # decided before: the set it was decided on
            complete = study.get_trials(deepcopy=False, states=(State.COMPLETE,))
            return study, sorted(complete, key=lambda t: t.number)[: config.trials]
        if self.persistent:
            study.set_user_attr("plan", step_plan(target, self.amounts, self.evaluator.scores))
        bar = progress_bar(max(config.trials - done, 0), f"step {k}/{self.n_steps}", quiet=not self.bars, unit="trial")

        def on_done(proxies: dict | None) -> None:
            if proxies is not None:
                bar.set_postfix(fidelity=f"{proxies['fidelity']:.3f}", score=f"{proxies['score']:.4f}", refresh=False)
            bar.update(1)

        objective = StepObjective(
            space, self.evaluator, config, dict(self.amounts), target, self.trial_say, self.owner.check, on_done
        )
        try:
            chosen = run_step_trials(study, objective, config.trials, check=self.owner.check)
        finally:
            bar.close()
        return study, chosen

    def commit(self, study: optuna.Study, target: Target, trials: list[optuna.trial.FrozenTrial]) -> StepRecord | None:
        """Decide the step: commit its best feasible trial (recorded once in the study), or split the step
        when none is feasible, or stop when the best would cross a floor. Returns the record, if committed."""
        config, space, k = self.config, self.space, self.k
        feasible_trials = feasible(trials)
        for t in feasible_trials:
            attrs = {a: t.user_attrs[a] for a in ("macs", "params", "proxies", "score", "amounts")}
            self.all_points.append({"step": k, "trial": t.number, **attrs})
        if not feasible_trials:
            last = self.position
            mid = midpoint(last, target)
            if mid is None:
                self.stop_reason = (
                    f"step {k}: no feasible candidate within the per-step bound (max_increment "
                    f"{config.max_increment}); use more steps or a larger max_increment, unless the target is "
                    f"out of reach: no group may lose more than max_amount {config.max_amount} of its channels"
                )
                self.say(self.stop_reason)
                self.stopped = True
                return None
            self.say(
                f"step {k}: no candidate reaches {target.describe()} within the per-step bound; "
                f"inserting an intermediate step at {mid.describe()}"
            )
            self.pending[:0] = [mid, target]
            self.n_steps += 2  # this step's number is spent; the midpoint and the target come after it
            return None
        chosen = best(feasible_trials)
        crossed = meets_floors(chosen.user_attrs["proxies"], config.floors)
        if crossed:
            self.stop_reason = f"step {k} would cross a proxy floor: {'; '.join(crossed)}"
            self.say(f"stopping: {self.stop_reason}")
            self.stopped = True
            return None
        self.amounts = dict(chosen.user_attrs["amounts"])
        if "committed" not in study.user_attrs:
            self.owner.check()
            study.set_user_attr("committed", {"trial": chosen.number, "seconds": time.time() - self.step_start})
        seconds = study.user_attrs["committed"]["seconds"]
        attrs = chosen.user_attrs
        record = StepRecord(
            step=k,
            target=target.to_dict(),
            amounts=self.amounts,
            proxies=attrs["proxies"],
            score=attrs["score"],
            macs=attrs["macs"],
            params=attrs["params"],
            kept_macs=attrs["macs"] / space.full_macs,
            kept_params=attrs["params"] / space.full_params,
            trials=len(trials),
            feasible_trials=len(feasible_trials),
            trial=chosen.number,
            seconds=seconds,
        )
        self.history.append(record)
        self.position = dict(record.target)
        self.say(
            f"step {k} committed trial {chosen.number}: MACs {100 * record.kept_macs:.1f}%, params "
            f"{100 * record.kept_params:.1f}%, fidelity {record.proxies['fidelity']:.3f}, "
            f"robust {record.proxies['robust_fidelity']:.3f} ({len(feasible_trials)}/{len(trials)} feasible, "
            f"{seconds:.0f}s)"
        )
        return record

    def rescore(self) -> None:
        """Rank the channels again on the committed candidate (iterative pruning; ``engine._rescore``)."""
        kinds = self.config.rescore.split("+")  # adversarial probes are answered with the original's answer on them
        probes = self.fit_probes
        inputs = torch.cat([probes.spec.normalize(probes.pixels[kind]) for kind in kinds])
        targets = torch.cat([probes.logits[kind].argmax(dim=1) for kind in kinds])
        scores = engine._rescore(self.evaluator, self.amounts, self.config.importance, inputs, targets)
        self.evaluator = dataclasses.replace(self.evaluator, scores=scores)

    def resume(self) -> SearchResult:
        """Run the steps still pending; steps already committed in the storage are read back, not rerun.
        With a latency target, the found model is then timed and the search corrected (``close_latency_loop``)."""
        self._run_pending()
        self.close_latency_loop()
        return self.result()

    def _run_pending(self) -> None:
        while self.pending and not self.stopped:
            target = self.pending.pop(0)
            study, trials = self.run_step(target)
            record = self.commit(study, target, trials)
            if record is not None:
                for callback in self.callbacks:
                    callback(record)
            if record is not None and self.rescores(self.config) and self.pending:
                self.rescore()

    def close_latency_loop(self) -> None:
        """Time the found model against the original; where it misses the latency target by more than
        ``LATENCY_TOLERANCE``, scale the table's prediction to the timing (``CorrectedLatency``) and
        prune on from the timed fraction to the same target; at most ``config.latency_rounds`` times."""
        from robustprune.evaluate.latency_check import timed_fraction
        from robustprune.evaluate.lut import CorrectedLatency

        config = self.config
        for _ in range(config.latency_rounds if self.target.latency is not None else 0):
            if self.stopped or self.pending or not self.history:
                return
            candidate, pruned = self._export()
            predicted = self.target.latency_model.fraction(self.space.kept_counts(candidate))
            timed = timed_fraction(self.model, pruned, self.spec, config.latency_batch, config.latency_threads)
            measured = timed["measured_fraction"]
            self.latency_rounds.append({"after_step": self.k, "predicted_fraction": predicted, **timed})
            missed = measured > self.target.latency * (1 + engine.LATENCY_TOLERANCE)
            self.say(
                f"latency: measured {100 * measured:.1f}% of the original, predicted {100 * predicted:.1f}% "
                f"(target {100 * self.target.latency:.0f}%)" + ("; missed by more than the tolerance" if missed else "")
            )
            if not missed:
                return
            if measured >= 1.0 or (
                len(self.latency_rounds) > 1 and measured >= self.latency_rounds[-2]["measured_fraction"]
            ):
                self.say("latency: pruning (on) did not make the model faster; keeping this model")
                return
            corrected = CorrectedLatency.matching(self.target.latency_model, predicted, measured)
            deepest = [g.size - removed_count(g.size, config.max_amount, config.round_to) for g in self.space.groups]
            if corrected.fraction(deepest) > self.target.latency:  # overhead-bound: no width would reach it
                self.say("latency: corrected by this timing, no width reaches the target; keeping this model")
                return
            self.target = target = dataclasses.replace(self.target, latency_model=corrected)
            # on to the target from where the timing put the model, no step taking more than the schedule's
            n = default_steps(Target(latency=target.latency / measured), per_step=engine.STEP_FRACTION)
            self.position = {**self.position, "latency": measured}
            fractions = {kind: getattr(target, kind) for kind in KINDS}
            self.pending = [
                target.scaled({**fractions, "latency": measured - (measured - target.latency) * i / n})
                for i in range(1, n + 1)
            ]
            self.n_steps += n
            if self.rescores(config):
                self.rescore()
            self._run_pending()

    def _export(self) -> tuple[dict, nn.Module]:
        """The last committed candidate and its physically pruned model (compensation applied)."""
        candidate = self.evaluator.candidate(self.amounts)
        overrides = self.evaluator.overrides(candidate)
        return candidate, export(
            self.space, candidate, model=apply_overrides(self.work, overrides) if overrides else self.work
        )

    def result(self) -> SearchResult:
        """The pruned model of the last committed step, and the search's record."""
        space = self.space
        candidate, pruned = self._export()
        macs, params = space.cost(candidate)
        reached = bool(self.history) and self.history[-1].step == self.k and not self.pending
        if not self.history and self.stop_reason == "target reached":
            self.stop_reason = "no step committed"
        self.say(
            f"done in {time.time() - self.start:.0f}s: {self.stop_reason}; MACs {100 * macs / space.full_macs:.1f}%, "
            f"params {100 * params / space.full_params:.1f}% of the original"
        )
        if self.persistent:
            finish_job(self.storage, self.base, self.stop_reason)
        return SearchResult(
            model=pruned.eval(),
            space=space,
            candidate=candidate,
            amounts=self.amounts,
            history=self.history,
            front=pareto_front(self.all_points, space),
            config=self.config,
            stop_reason=self.stop_reason,
            target_reached=reached and self.stop_reason == "target reached",
            seconds=time.time() - self.start,
            probe_seconds=self.probes.seconds,
            criterion_scores=self.criterion_scores,
            latency_rounds=self.latency_rounds,
        )
