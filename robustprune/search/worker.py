"""``robustprune worker``: a process that adds trials to a search a coordinator runs on a shared storage.

The worker reads the job the coordinator published (``robustprune.search.job``), loads the model,
checks it is the same search (the fingerprint of weights, spec and config), rebuilds the probes and
checks their digest, then follows the steps: for each step it reads the plan (target, committed
amounts, channel scores), adds trials until the step's budget is taken, and waits for the next step.
It never commits: the coordinator does (``ProgressiveSearch.commit``). A worker may join or leave at
any time; a trial it leaves running when killed is failed by its heartbeat and run again elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from torch import nn

from robustprune._progress import write_line
from robustprune.probes.probeset import build_probes
from robustprune.search.engine import config_from_dict
from robustprune.search.job import find_job, job_status, probes_digest
from robustprune.search.progressive import _stale_message, step_evaluator
from robustprune.search.samplers import make_sampler
from robustprune.search.steps import POLL_SECONDS, StepObjective, optuna_quiet, run_step_trials, scores_from_json
from robustprune.search.storage import (
    StorageError,
    _alive,
    _describe,
    _differences,
    fingerprint,
    open_storage,
    owner_info,
    search_identity,
)
from robustprune.spec import InputSpec
from robustprune.structure import PruneSpace
from robustprune.targets import Target


@dataclasses.dataclass
class WorkerReport:
    """What one worker did: trials it ran per step, and how the search ended."""

    base: str
    trials: dict[int, int]
    status: str
    seconds: float


#: Names that are model files (to be found on this machine), not ``package.module:factory`` references.
MODEL_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts")


def _load(job: dict, model_ref: str | None, weights: str | None, allow_code: bool, device: str) -> nn.Module:
    from robustprune.models import is_library_ref, load_model

    ref = model_ref or job.get("model")
    if not ref:
        raise StorageError(
            "the coordinator published no model reference (it was started from Python without model_ref=); "
            "give the model with --model"
        )
    weights = weights or job.get("weights")
    if Path(ref).is_file() or os.sep in ref or Path(ref).suffix in MODEL_FILE_SUFFIXES:  # a model file: data
        if not Path(ref).is_file():
            raise StorageError(f"the search's model file {ref} is not on this machine: give --model PATH (a copy)")
    elif not is_library_ref(ref) and not allow_code:
        raise StorageError(f"the search's model {ref!r} is user code: give --allow-code to import it on this worker")
    if weights and not Path(weights).is_file():
        raise StorageError(f"the search's weights file {weights} is not on this machine: give --weights PATH (a copy)")
    spec = InputSpec.from_dict(job["spec"])
    model, _ = load_model(ref, weights=weights, spec=spec, device=device)
    return model


#: How often (seconds) a waiting worker looks at the coordinator's heartbeat.
OWNER_LOOK_SECONDS = 10.0


class _CoordinatorStopped(Exception):
    """The coordinator published that it stopped (interrupted, an error): the worker stops too."""


class _Coordinator:
    """What a worker watches while it works and waits: the job's status and the coordinator's heartbeat.

    ``check()`` raises _CoordinatorStopped once the coordinator said it stopped. A coordinator that died
    without saying so (kill -9, a lost machine) is reported once; the worker waits for it to be rerun, up
    to ``wait`` seconds (None: for ever), then gives up with a StorageError."""

    def __init__(self, storage, base: str, wait: float | None, say: Callable[[str], None]) -> None:
        self.storage, self.base, self.wait, self.say = storage, base, wait, say
        self.looked = 0.0
        self.gone_since: float | None = None

    def check(self) -> None:
        status = job_status(self.storage, self.base)
        if status.startswith("stopped"):
            raise _CoordinatorStopped(status)
        now = time.time()
        if now - self.looked < OWNER_LOOK_SECONDS:
            return
        self.looked = now
        info = owner_info(self.storage, self.base)
        if _alive(info) or status.startswith("done"):
            if self.gone_since is not None:
                self.say("worker: the coordinator is back")
            self.gone_since = None
            return
        if self.gone_since is None:
            self.gone_since = now
            beat = f", last heartbeat {now - float(info['beat']):.0f}s ago" if info.get("beat") else ""
            bound = f" for up to {self.wait:g}s" if self.wait is not None else " (--wait bounds this)"
            self.say(
                f"worker: the coordinator (pid {info.get('pid')} on {info.get('host')}{beat}) is gone; "
                f"waiting for it to be rerun{bound}"
            )
        elif self.wait is not None and now - self.gone_since > self.wait:
            raise StorageError(
                f"the coordinator of {self.base} stopped and was not rerun within {self.wait:g}s; rerun its "
                "search command to resume, then the workers"
            )


@optuna_quiet()
def run_worker(
    storage: str,
    study_name: str = "robustprune",
    *,
    model_ref: str | None = None,
    weights: str | None = None,
    allow_code: bool = False,
    cache_dir=None,
    device: str = "cpu",
    wait: float | None = None,
    log: Callable[[str], None] | None = None,
) -> WorkerReport:
    """Add trials to the search named ``study_name`` on ``storage`` until it ends; returns what this worker did.

    ``model_ref``/``weights`` override the published ones (the model must still be the same: its weights
    are checked); ``wait`` bounds the wait for a coordinator to publish the search (None: for ever).
    """
    say = log or write_line
    start = time.time()
    opened = open_storage(storage, on_stale=lambda study, trial: say(_stale_message(study, trial)))
    base, job = find_job(opened, study_name, wait=wait, say=say)
    status = job_status(opened, base)
    if not status.startswith("running"):  # before the model and the probes, which take minutes
        say(f"worker: the search {base} has ended ({status}); nothing to do")
        return WorkerReport(base=base, trials={}, status=status, seconds=time.time() - start)
    say(f"worker: joining {base} on {_describe(storage)}")
    model = _load(job, model_ref, weights, allow_code, device)
    spec = InputSpec.from_dict(job["spec"])
    space = PruneSpace(model, spec, exclude=tuple(job.get("exclude", ())))
    config = config_from_dict(job["config"]).resolve(space)
    if config.target_latency is not None:  # the latency table is measured on the coordinator's machine only
        raise StorageError("a latency-targeted search runs on one machine: its latency table is this host's timing")
    identity = search_identity(model, space, config)
    if f"{study_name}-{fingerprint(identity)}" != base:
        why = _differences(job["identity"], identity) or "the prune space"
        hint = "; give the coordinator's model with --model and --weights" if "model weights" in why else ""
        raise StorageError(f"this worker's search differs from the coordinator's: {why}{hint}")
    probes = build_probes(model, spec, space.output_layer, config.probes, cache_dir=cache_dir, progress=say)
    if probes_digest(probes) != job["probes"]["digest"]:
        raise StorageError(
            "this worker's probes differ from the coordinator's (floating point differs between these machines); "
            "copy the coordinator's probe cache file (cache key " + job["probes"]["cache_key"][:12] + ") here"
        )
    config = dataclasses.replace(config, importance=job["importance"], rescore=job["rescore"])
    seed = random.SystemRandom().randrange(2**31)  # equal seeds in two workers would propose equal trials
    ran: dict[int, int] = {}
    k = 1
    coordinator = _Coordinator(opened, base, wait, say)
    try:
        while (study := _wait_for_step(opened, base, k, coordinator.check)) is not None:
            if "committed" not in study.user_attrs:
                sampler = make_sampler(config.sampler, seed=seed + k, multi_objective=config.multi_objective)
                ran[k] = _work_step(
                    opened, base, k, study.study_name, sampler, space, probes, config, say, coordinator.check
                )
            k += 1
    except _CoordinatorStopped:
        pass
    status = job_status(opened, base)
    say(f"worker: the search ended ({status}); this worker ran {sum(ran.values())} trials")
    return WorkerReport(base=base, trials=ran, status=status, seconds=time.time() - start)


def _work_step(storage, base: str, k: int, name: str, sampler, space, probes, config, say, check) -> int:
    """Add trials to step k (scored on the coordinator's plan) until its budget is taken; returns how many."""
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    plan = study.user_attrs["plan"]
    target = Target(**plan["target"])
    scores = scores_from_json(plan["scores"])
    evaluator = step_evaluator(space, probes, scores, config)
    count = [0]

    def on_done(_proxies) -> None:
        count[0] += 1

    objective = StepObjective(space, evaluator, config, plan["previous"], target, say, on_done=on_done)
    say(f"step {k}: {target.describe()}")
    run_step_trials(study, objective, config.trials, check=check, decided=lambda: _closed(storage, base, k))
    return count[0]


def _step_id(storage, base: str, k: int) -> int | None:
    try:
        return storage.get_study_id_from_name(f"{base}-step{k}")
    except KeyError:
        return None


def _closed(storage, base: str, k: int) -> bool:
    """Whether step k is decided (committed, or the next step or the end was published)."""
    study_id = _step_id(storage, base, k)
    if study_id is not None and "committed" in storage.get_study_user_attrs(study_id):
        return True
    following = _step_id(storage, base, k + 1)
    return (following is not None and "plan" in storage.get_study_user_attrs(following)) or _done(storage, base)


def _done(storage, base: str) -> bool:
    return job_status(storage, base).startswith("done")


def _wait_for_step(storage, base: str, k: int, check: Callable[[], None]) -> optuna.Study | None:
    """Step k's study once the coordinator planned it; None when the search ended first."""
    while True:
        check()
        study_id = _step_id(storage, base, k)
        if study_id is not None:
            attrs = storage.get_study_user_attrs(study_id)
            if "plan" in attrs or "committed" in attrs:
                return optuna.load_study(study_name=f"{base}-step{k}", storage=storage)
        if _done(storage, base):
            return None
        time.sleep(POLL_SECONDS)
