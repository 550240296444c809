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
    lines = []
    report = run_worker(url, model_ref="zoo:cnn", cache_dir=tmp_path, log=lines.append, wait=5)
    assert report.status.startswith("done") and report.trials == {}, "joined after the end: nothing to add"
    assert "nothing to do" in lines[-1] and not any("joining" in line for line in lines)  # no model, no probes
    storage = storage_mod.open_storage(url)
    base = next(s.study_name for s in storage.get_all_studies() if s.study_name.endswith("-job"))[: -len("-job")]
    job_id = storage.get_study_id_from_name(f"{base}-job")
    storage.set_study_user_attr(job_id, "status", "running")  # as while the coordinator runs
    with pytest.raises(StorageError, match="differs from the coordinator's.*model weights.*--weights"):
        run_worker(url, model_ref="zoo:cnn", cache_dir=tmp_path, log=lambda m: None, wait=5)
    with pytest.raises(StorageError, match="no search named 'other'.*holds: robustprune; give --study"):
        run_worker(url, "other", log=lambda m: None, wait=0)
    with pytest.raises(StorageError, match="full name.*give --study robustprune"):
        run_worker(url, base, log=lambda m: None, wait=0)


def test_a_worker_stops_with_its_coordinator_and_says_when_one_is_gone(tmp_path, monkeypatch):
    from robustprune.search import worker as worker_mod
    from robustprune.search.job import publish_job, stop_job

    storage = storage_mod.open_storage(f"journal:{tmp_path / 'search.log'}")
    publish_job(storage, "rp-0123456789ab", {"model": "zoo:mlp"})
    lines = []
    watch = worker_mod._Coordinator(storage, "rp-0123456789ab", wait=0.0, say=lines.append)
    monkeypatch.setattr(worker_mod, "OWNER_LOOK_SECONDS", 0.0)
    watch.check()  # no live owner: said once, then the wait runs out
    assert len(lines) == 1 and "the coordinator" in lines[0] and "is gone" in lines[0]
    time.sleep(0.01)
    with pytest.raises(StorageError, match="was not rerun within 0s"):
        watch.check()
    stop_job(storage, "rp-0123456789ab", "interrupted")  # a coordinator stopped by Ctrl-C says so
    with pytest.raises(worker_mod._CoordinatorStopped):
        watch.check()


def test_every_process_scores_a_candidate_to_the_same_bits_whatever_the_weights_order():
    from robustprune.search.objective import DEFAULT_WEIGHTS, weighted_score

    proxies = {"fidelity": 0.511275, "robust_fidelity": 0.404934, "kl": 0.07838, "open_world": 0.030331}
    as_read_back = json.loads(json.dumps(DEFAULT_WEIGHTS, sort_keys=True))  # what a worker rebuilds from the job
    assert list(as_read_back) != list(DEFAULT_WEIGHTS)
    scores = {
        weighted_score(proxies, w) for w in (DEFAULT_WEIGHTS, as_read_back, dict(reversed(DEFAULT_WEIGHTS.items())))
    }
    assert len(scores) == 1


def test_a_journal_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a journal\n")
    for target in (tmp_path, tmp_path / "notes.txt"):
        assert main(["worker", "--storage", f"journal:{target}", "--wait", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "internal error" not in err
    for wait in ("-3", "nan"):
        with pytest.raises(SystemExit) as exc:
            main(["worker", "--storage", f"journal:{tmp_path / 'x.log'}", "--wait", wait])
        assert exc.value.code == 2


def test_storage_errors_hide_the_password(capsys):
    assert main(["worker", "--storage", "postgresql://alice:S3cretPassw0rd@127.0.0.1:1/rp", "--wait", "0"]) == 2
    err = capsys.readouterr().err
    assert "S3cretPassw0rd" not in err and "alice:***@" in err


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


def test_an_interrupted_coordinator_marks_its_job_stopped(tmp_path):
    from robustprune.search.job import job_status

    model, spec = zoo.load("mlp")
    url = f"journal:{tmp_path / 'search.log'}"
    config = SearchConfig(target_params=0.7, steps=2, trials=2, probes=TINY_PROBES, max_increment=0.4)

    def interrupt(_record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(model, spec, config=config, storage=url, cache_dir=tmp_path, quiet=True, callbacks=[interrupt])
    storage = storage_mod.open_storage(url)
    base = next(s.study_name for s in storage.get_all_studies() if s.study_name.endswith("-job"))[: -len("-job")]
    assert job_status(storage, base) == "stopped: interrupted"
    report = run_worker(url, cache_dir=tmp_path, log=lambda m: None, wait=0)  # a worker has nothing to wait for
    assert report.status == "stopped: interrupted" and report.trials == {}


def test_another_search_in_the_storage_is_named_by_the_setting_that_differs(tmp_path):
    model, spec = zoo.load("mlp")
    url = f"sqlite:///{tmp_path / 'search.db'}"
    config = SearchConfig(target_params=0.7, steps=1, trials=2, probes=TINY_PROBES, max_increment=0.4)
    for _ in range(2):  # a run and its rerun (which replaces the owner study)
        search(model, spec, config=config, storage=url, cache_dir=tmp_path, quiet=True)
    other = SearchConfig(target_params=0.7, steps=1, trials=2, probes=TINY_PROBES, max_increment=0.4, seed=1)
    with pytest.raises(storage_mod.StorageMismatchError) as exc:
        search(model, spec, config=other, storage=url, cache_dir=tmp_path, quiet=True)
    message = str(exc.value)
    assert "seed 0 there, 1 here" in message and "older" not in message and len(message) < 400


def test_a_storage_object_without_heartbeat_is_said_not_to_resume(tmp_path):
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.warns(UserWarning, match="no heartbeat"):
        storage_mod.open_storage(rdb)


def test_a_worker_says_which_file_of_the_search_this_machine_lacks(tmp_path):
    from robustprune.search.worker import _load

    spec = zoo.load("mlp")[1].to_dict()
    with pytest.raises(StorageError, match="model file .*net.pt2 is not on this machine: give --model"):
        _load({"model": str(tmp_path / "net.pt2"), "spec": spec}, None, None, False, "cpu")
    with pytest.raises(StorageError, match="weights file .*w.pt is not on this machine: give --weights"):
        _load({"model": "zoo:mlp", "weights": str(tmp_path / "w.pt"), "spec": spec}, None, None, False, "cpu")
    with pytest.raises(StorageError, match="user code: give --allow-code"):
        _load({"model": "mypkg.nets:build", "spec": spec}, None, None, False, "cpu")


def test_a_lost_database_ends_a_command_in_one_line_that_says_to_rerun(monkeypatch, capsys):
    import importlib

    import sqlalchemy.exc

    worker_mod = importlib.import_module("robustprune.search.worker")  # robustprune.search is the function

    def lost(*args, **kwargs):
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        except sqlalchemy.exc.OperationalError:
            raise UnboundLocalError("cannot access local variable 'updated_state'") from None  # Optuna 5.0's mask

    monkeypatch.setattr(worker_mod, "open_storage", lost)
    monkeypatch.setattr("robustprune.cli._common.check_storage", lambda url: None)
    assert main(["worker", "--storage", "postgresql://u@127.0.0.1:1/rp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lost the connection to the storage (server closed the connection)" in err
    assert "rerun the same command to resume" in err
