"""One step's study, shared by every process of a search: the trial objective, the trial budget, the commit rule.

A step's budget is ``trials`` completed trials. Any number of processes (the coordinator and workers)
add trials until the completed plus running ones reach it; a trial whose process died is failed by
Optuna's heartbeat and queued again by ``RetryHeartbeatStaleTrialCallback`` (``storage.open_storage``),
so it is run by whichever process comes next. The commit is the best feasible completed trial among the
step's first ``trials`` completed trials by number, so every process that reads the study agrees on it,
whatever the timing of the workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping

import optuna
import torch

from robustprune.search.objective import Evaluator, fit_amounts, weighted_score
from robustprune.select import removed_count
from robustprune.structure import PruneSpace
from robustprune.targets import Target

#: Seconds between two looks at a step's study while this process waits for other processes' trials.
POLL_SECONDS = 1.0

State = optuna.trial.TrialState


@dataclasses.dataclass
class StepObjective:
    """Scores one trial of a step: the trial's direction, fitted to the step target from ``previous``.

    The candidate's cost is a constraint (feasible at <= 0); the proxies, amounts and cost are the
    trial's user attributes, so any process can commit from the storage alone.
    """

    space: PruneSpace
    evaluator: Evaluator
    config: object  # SearchConfig (resolved)
    previous: Mapping[str, float]
    target: Target
    say: Callable[[str], None] = lambda m: None
    check: Callable[[], None] = lambda: None  # raises when this process must add no more trials
    on_done: Callable[[dict | None], None] = lambda proxies: None

    def __call__(self, trial: optuna.Trial):
        self.check()
        space, config = self.space, self.config
        direction = {g.name: trial.suggest_float(f"g{i}", 0.0, 1.0) for i, g in enumerate(space.groups)}
        proposal, feasible = fit_amounts(
            space, self.previous, direction, config.max_increment, self.target, config.max_amount
        )
        counts = [g.size - removed_count(g.size, proposal[g.name]) for g in space.groups]
        macs, params = space.cost_of_counts(counts)
        with warnings.catch_warnings():  # a retried trial carries its original's (equal) constraint already
            warnings.simplefilter("ignore", UserWarning)
            trial.set_constraint("target", self.target.excess(space, counts))
        trial.set_user_attr("amounts", proposal)
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("params", params)
        if not feasible:
            self.say(f"  trial {trial.number}: cannot reach the step target within the per-step bound")
            self.on_done(None)
            return (0.0, 0.0) if config.multi_objective else -1e9
        _, _, proxies = self.evaluator.evaluate(proposal)
        value = weighted_score(proxies, config.weights)
        trial.set_user_attr("proxies", proxies)
        trial.set_user_attr("score", value)
        self.say(
            f"  trial {trial.number}: MACs {100 * macs / space.full_macs:.1f}%, fidelity {proxies['fidelity']:.3f},"
            f" robust {proxies['robust_fidelity']:.3f}, score {value:.4f}"
        )
        self.on_done({**proxies, "score": value})
        return (proxies["fidelity"], proxies["robust_fidelity"]) if config.multi_objective else value


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose process stopped beating (Optuna's heartbeat; they are queued again)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class optuna_quiet(contextlib.ContextDecorator):
    """Optuna's per-trial INFO lines off while robustprune runs trials (robustprune reports progress itself);
    the caller's verbosity is restored afterwards."""

    def __enter__(self) -> None:
        self.before = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(max(self.before, optuna.logging.WARNING))

    def __exit__(self, *exc) -> None:
        optuna.logging.set_verbosity(self.before)


#: A step gives up when this many trials per trial of its budget (and at least MIN_FAILURES) have failed: a
#: crashed worker's trial fails once and is retried; an objective that fails for every candidate would loop.
FAILURES_PER_TRIAL = 3
MIN_FAILURES = 10


def _trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False)


def open_slots(trials: list[optuna.trial.FrozenTrial], budget: int) -> int:
    """How many more trials may start: the budget less the completed and running ones (queued ones run first)."""
    taken = sum(t.state in (State.COMPLETE, State.RUNNING) for t in trials)
    return budget - taken


def _room(trials: list[optuna.trial.FrozenTrial], budget: int) -> bool:
    """Whether this process should start a trial: the budget has room, or a queued trial (a retry) blocks
    the commit (its number is below the commit set's last; see ``commit_set``) and must run."""
    if open_slots(trials, budget) > 0:
        return True
    return commit_set(trials, budget) is None and any(t.state == State.WAITING for t in trials)


def contribute(
    study: optuna.Study, objective: StepObjective, budget: int, stop: Callable[[], bool] = lambda: False
) -> int:
    """Run trials of ``study`` in this process while the step's budget has room; returns how many it ran.

    One trial per ``optimize`` call, so the room is counted again before each (other processes add
    trials too); Optuna pops a queued trial (a retry, an enqueued one) before sampling a new one.
    """
    ran = 0
    while not stop() and _room(trials := _trials(study), budget):
        failed = sum(t.state == State.FAIL for t in trials)
        if failed >= max(MIN_FAILURES, FAILURES_PER_TRIAL * budget):  # failed trials do not use up the budget
            raise RuntimeError(
                f"{failed} trials of {study.study_name} failed (a budget of {budget}); the first error is in the "
                "log above (e.g. a proxy or objective that is NaN for every candidate)"
            )
        try:
            study.optimize(objective, n_trials=1, gc_after_trial=False)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # this process missed its heartbeats: its trial was failed and queued for another process
        ran += 1
    return ran


def commit_set(trials: list[optuna.trial.FrozenTrial], budget: int) -> list[optuna.trial.FrozenTrial] | None:
    """The step's first ``budget`` completed trials by number, or None while that set can still change.

    It can change while fewer than ``budget`` trials completed, or while a trial numbered below the
    last of them is still running or queued (it would enter the set when it completes).
    """
    complete = sorted((t for t in trials if t.state == State.COMPLETE), key=lambda t: t.number)
    if len(complete) < budget:
        return None
    chosen = complete[:budget]
    last = chosen[-1].number
    if any(t.state in (State.RUNNING, State.WAITING) and t.number < last for t in trials):
        return None
    return chosen


def feasible(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """The trials that were scored and meet their step target."""
    return [
        t for t in trials if t.user_attrs.get("proxies") is not None and all(v <= 0 for v in t.constraints.values())
    ]


def best(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """The commit among feasible trials: the highest score, the lower number on a tie."""
    return max(trials, key=lambda t: (t.user_attrs["score"], -t.number))


def run_step_trials(
    study: optuna.Study,
    objective: StepObjective | None,
    budget: int,
    check: Callable[[], None] = lambda: None,
    decided: Callable[[], bool] = lambda: False,
) -> list[optuna.trial.FrozenTrial] | None:
    """Add trials to the step until its commit set is decided, and return that set.

    ``objective`` None only waits (and fails dead processes' trials). Between looks this process
    sleeps ``POLL_SECONDS``; ``decided()`` true (another process closed the step) returns None.
    """
    while True:
        check()
        if decided():
            return None
        if objective is not None:
            contribute(study, objective, budget, stop=decided)
        fail_stale(study)
        trials = _trials(study)
        chosen = commit_set(trials, budget)
        if chosen is not None:
            return chosen
        if objective is None or not _room(trials, budget):
            time.sleep(POLL_SECONDS)


def scores_to_json(scores: Mapping[str, torch.Tensor]) -> dict:
    """Channel scores as JSON (float32 and float64 values survive the round trip exactly)."""
    return {name: {"dtype": str(t.dtype).removeprefix("torch."), "values": t.tolist()} for name, t in scores.items()}


def scores_from_json(data: Mapping[str, dict]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(v["values"], dtype=getattr(torch, v["dtype"])) for name, v in data.items()}


def step_plan(target: Target, previous: Mapping[str, float], scores: Mapping[str, torch.Tensor]) -> dict:
    """What a worker needs to score step k's trials exactly as the coordinator does."""
    return {"target": target.to_dict(), "previous": dict(previous), "scores": scores_to_json(scores)}
