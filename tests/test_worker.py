"""The pieces of a shared search that need no second process: the commit rule, the journal heartbeat, the job."""

from __future__ import annotations

import json
import time

import optuna
import pytest

from robustprune import zoo
from robustprune.cli import main
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, StorageError, search
from robustprune.search import storage as storage_mod
from robustprune.search.engine import config_from_dict
from robustprune.search.steps import _room, best, commit_set, feasible
from robustprune.search.worker import run_worker

State = optuna.trial.TrialState
TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=32, steps=5, batch_size=32), attack_steps=2, n_undesired=16
)


def _trial(number: int, state: State, score: float | None = None, **system) -> optuna.trial.FrozenTrial:
    done = state == State.COMPLETE
    trial = optuna.trial.create_trial(
        state=state,
        value=score if done else None,
        user_attrs={"proxies": {"fidelity": 1.0}, "score": score} if done else {},
        system_attrs={"constraints": [0.0], **system},
    )
    trial.number = number
    return trial


def test_commit_set_is_the_first_budget_completed_trials_once_nothing_below_can_change():
    c, r, w, f = State.COMPLETE, State.RUNNING, State.WAITING, State.FAIL
    trials = [_trial(0, c, 0.1), _trial(1, f), _trial(2, c, 0.5), _trial(3, c, 0.3), _trial(4, c, 0.9)]
    chosen = commit_set(trials, 3)
    assert [t.number for t in chosen] == [0, 2, 3], "trial 4 is beyond the budget, trial 1 failed"
    assert best(feasible(chosen)).number == 2
    assert commit_set(trials, 5) is None, "fewer than 5 completed"
    assert commit_set([*trials[:3], _trial(3, r), trials[4]], 3) is None, "running trial 3 may enter the set"
    # a queued retry numbered below the set's last blocks the commit, and a process must run it
    queued = [_trial(0, c, 0.1), _trial(1, w), _trial(2, c, 0.5), _trial(3, c, 0.3)]
    assert commit_set(queued, 3) is None and _room(queued, 3)
    assert not _room([_trial(0, c, 0.1), _trial(1, r), _trial(2, c, 0.5)], 3), "the budget is taken"
    tie = [_trial(0, c, 0.5), _trial(1, c, 0.5)]
    assert best(feasible(commit_set(tie, 2))).number == 0, "a tie commits the lower number"


def test_a_journal_file_fails_a_silent_trial_and_queues_it_again(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_mod, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", 1)
    told = []
    storage = storage_mod.open_storage(f"journal:{tmp_path / 'j.log'}", on_stale=lambda s, t: told.append(t.number))
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # left running: its process "died"
    storage.record_heartbeat(trial._trial_id)
    time.sleep(2.2)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [State.FAIL, State.WAITING] and told == [0]
    assert study.trials[1].params == study.trials[0].params
    plain = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    assert len(optuna.load_study(study_name="s", storage=plain).trials) == 2, "plain Optuna opens the file"


def test_config_survives_the_job_round_trip():
    config = SearchConfig(target_macs=0.5, compensation=("bn",), floors={"fidelity": 0.5}, probes=TINY_PROBES)
    data = json.loads(json.dumps(config.to_dict()))
    assert config_from_dict(data).to_dict() == config.to_dict()


def test_worker_checks_the_search_and_ends_with_it(tmp_path):
    model, spec = zoo.load("mlp")
    url = f"journal:{tmp_path / 'search.log'}"
    config = SearchConfig(target_params=0.7, steps=1, trials=2, probes=TINY_PROBES, max_increment=0.4)
    result = search(model, spec, config=config, storage=url, cache_dir=tmp_path, quiet=True, model_ref="zoo:mlp")
    assert result.target_reached
    report = run_worker(url, cache_dir=tmp_path, log=lambda m: None, wait=5)
    assert report.status.startswith("done") and report.trials == {}, "joined after the end: nothing to add"
    with pytest.raises(StorageError, match="differs from the coordinator's.*model weights"):
        run_worker(url, model_ref="zoo:cnn", cache_dir=tmp_path, log=lambda m: None, wait=5)
    with pytest.raises(StorageError, match="no search named 'other'"):
        run_worker(url, "other", log=lambda m: None, wait=0)


def test_cli_worker_rejects_a_bad_storage_in_one_line(capsys):
    assert main(["worker", "--storage", "foo://bar"]) == 2
    err = capsys.readouterr().err
    assert "--storage 'foo://bar'" in err and err.count("\n") == 1


def test_schema_creation_races_are_retried_on_postgresql_and_sqlite():
    import sqlalchemy.exc

    from robustprune.search.storage import _creation_race

    duplicate = sqlalchemy.exc.ProgrammingError("CREATE TABLE", {}, Exception('relation "studies" already exists'))
    locked = sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("database is locked"))
    assert _creation_race(duplicate) and _creation_race(locked)
    denied = sqlalchemy.exc.OperationalError("connect", {}, Exception('password authentication failed for "u"'))
    assert not _creation_race(denied) and not _creation_race(ValueError("relation already exists"))
