"""Shared Optuna storages: one search per storage, concurrent opening, dead processes' trials, live owners."""

import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import torch

from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, StorageBusyError, StorageError, StorageMismatchError, search
from robustprune.search import storage as storage_mod

REPO = Path(__file__).resolve().parents[1]
TINY_PROBES = ProbeConfig(
    synthetic=SyntheticConfig(kind="inversion", n=48, steps=10, batch_size=48), attack_steps=2, n_undesired=24
)


def tiny(**kw) -> SearchConfig:
    base = dict(target_params=0.6, steps=3, trials=5, probes=TINY_PROBES, max_increment=0.2)
    base.update(kw)
    return SearchConfig(**base)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("probes")


@pytest.fixture(scope="module")
def clean(cache_dir):
    """The tiny mlp search run alone, in memory: what every shared-storage run must reproduce."""
    model, spec = zoo.load("mlp")
    return search(model, spec, config=tiny(), cache_dir=cache_dir, quiet=True)


def step_study(storage, k: int) -> optuna.Study:
    (name,) = [n for n in optuna.get_all_study_names(storage) if n.endswith(f"-step{k}")]
    return optuna.load_study(study_name=name, storage=storage)


def test_study_names_carry_the_search_fingerprint_and_other_searches_are_refused(tmp_path, cache_dir, clean):
    model, spec = zoo.load("mlp")
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)
    assert [r.amounts for r in first.history] == [r.amounts for r in clean.history]
    names = optuna.get_all_study_names(storage)
    assert all(n.startswith("robustprune-") for n in names) and not any(n == "robustprune-step1" for n in names)

    with pytest.raises(StorageMismatchError, match=r"seed 0 there, 1 here") as info:
        search(model, spec, config=tiny(seed=1), storage=storage, cache_dir=cache_dir, quiet=True)
    assert "\n" not in str(info.value)
    with pytest.raises(StorageMismatchError, match="target_params 0.6 there, 0.5 here"):
        search(model, spec, config=tiny(target_params=0.5), storage=storage, cache_dir=cache_dir, quiet=True)
    other = zoo.build("mlp").eval()
    with pytest.raises(StorageMismatchError, match="model weights"):
        search(other, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)
    assert sorted(optuna.get_all_study_names(storage)) == sorted(names), "a refused search wrote nothing"

    again = search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)  # resumes: done
    assert [r.amounts for r in again.history] == [r.amounts for r in first.history]


def test_studies_of_an_older_robustprune_are_refused(tmp_path, cache_dir):
    storage = f"sqlite:///{tmp_path / 'old.db'}"
    optuna.create_study(study_name="robustprune-step1", storage=storage)
    model, spec = zoo.load("mlp")
    with pytest.raises(StorageMismatchError, match="older robustprune"):
        search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)


def test_weights_digest_sees_every_tensor_value():
    model = zoo.build("mlp")
    before = storage_mod.weights_digest(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert storage_mod.weights_digest(model) != before


def _open_many(barrier, folder: str, reps: int, errors) -> None:
    for i in range(reps):
        barrier.wait()
        try:
            storage_mod.open_storage(f"sqlite:///{folder}/new{i}.db").get_all_studies()
        except Exception as exc:  # what the test reports
            errors.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_two_processes_can_create_the_same_sqlite_file_at_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_open_many, args=(barrier, str(tmp_path), 8, errors)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert [w.exitcode for w in workers] == [0, 0]
    assert failures == []
    for i in range(8):  # every file holds one usable schema
        optuna.create_study(study_name="x", storage=f"sqlite:///{tmp_path}/new{i}.db")


CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from robustprune.search import storage as storage_mod
    from test_storage import tiny
    from robustprune import zoo
    from robustprune.search import search

    mode, storage, cache_dir, folder = sys.argv[1:5]
    folder = Path(folder)
    if mode == "kill":
        storage_mod.HEARTBEAT_INTERVAL, storage_mod.GRACE_PERIOD = 1, 2
    seen = []

    def log(message):
        seen.append(message)
        if mode == "kill" and message.startswith("  trial 1") and any(m.startswith("step 2/") for m in seen):
            os.kill(os.getpid(), signal.SIGKILL)  # dies with step 2's trial 1 RUNNING
        if mode == "pause" and message.startswith("  trial 0") and not (folder / "started").exists():
            (folder / "started").touch()
            deadline = time.time() + 300
            while not (folder / "go").exists() and time.time() < deadline:
                time.sleep(0.1)

    model, spec = zoo.load("mlp")
    result = search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, log=log)
    (folder / "amounts.json").write_text(json.dumps([r.amounts for r in result.history]))
    """
).format(tests=str(REPO / "tests"))


def _child(mode: str, storage: str, cache_dir, folder: Path) -> subprocess.Popen:
    script = folder / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), mode, storage, str(cache_dir), str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_killed_process_trial_is_failed_by_its_heartbeat_and_the_rerun_resumes(tmp_path, cache_dir, clean, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    child = _child("kill", storage, cache_dir, tmp_path)
    output, _ = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, output
    running = [t for t in step_study(storage, 2).trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(running) == 1
    (owner,) = [s for s in optuna.study.get_all_study_summaries(storage) if "-owner" in s.study_name]
    assert not storage_mod._alive(owner.user_attrs["owner"]), "a dead process on this host owns nothing"

    monkeypatch.setattr(storage_mod, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(storage_mod, "GRACE_PERIOD", 2)
    time.sleep(3)  # past the grace period: the killed trial's last heartbeat is stale
    messages = []
    model, spec = zoo.load("mlp")
    result = search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, log=messages.append)
    assert result.target_reached
    states = {t.number: t.state for t in step_study(storage, 2).trials}
    assert states[running[0].number] == optuna.trial.TrialState.FAIL
    assert any(f"trial {running[0].number} was left running by a process that stopped" in m for m in messages)
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states.values()) == tiny().trials
    committed_before_the_kill = {**dataclasses.asdict(clean.history[0]), "seconds": result.history[0].seconds}
    assert dataclasses.asdict(result.history[0]) == committed_before_the_kill


def test_second_process_refuses_a_live_search_and_leaves_it_undisturbed(tmp_path, cache_dir, clean):
    storage = f"sqlite:///{tmp_path / 'live.db'}"
    child = _child("pause", storage, cache_dir, tmp_path)
    deadline = time.time() + 300
    while not (tmp_path / "started").exists():
        assert child.poll() is None and time.time() < deadline, child.communicate()[0]
        time.sleep(0.2)
    model, spec = zoo.load("mlp")
    try:
        with pytest.raises(StorageBusyError, match="another process .* is running this search") as info:
            search(model, spec, config=tiny(), storage=storage, cache_dir=cache_dir, quiet=True)
        assert "\n" not in str(info.value)
        running = [t for t in step_study(storage, 1).trials if t.state == optuna.trial.TrialState.RUNNING]
        assert len(running) == 1, "the live process's trial was left alone"
    finally:
        (tmp_path / "go").touch()
        output, _ = child.communicate(timeout=600)
    assert child.returncode == 0, output
    amounts = json.loads((tmp_path / "amounts.json").read_text())
    assert amounts == [r.amounts for r in clean.history]


@pytest.mark.parametrize("url", ["foo://bar", "not a url", "sqlite:////no/such/folder/x.db"])
def test_bad_storage_url_is_one_line_before_any_work(url, cache_dir):
    model, spec = zoo.load("mlp")
    with pytest.raises(StorageError, match="cannot open storage") as info:
        search(model, spec, config=tiny(), storage=url, cache_dir=cache_dir / "unused", quiet=True)
    assert "\n" not in str(info.value)
    assert not (cache_dir / "unused").exists(), "no probes were built"


def test_a_postgresql_server_down_for_seconds_pauses_the_process_instead_of_ending_it(capsys):
    import importlib.util
    import tempfile
    import threading

    from tests import pgserver

    if importlib.util.find_spec("psycopg") is None or pgserver.find_bin() is None:
        pytest.skip("needs psycopg and the PostgreSQL server binaries (apt-get install postgresql)")
    folder = tempfile.mkdtemp(prefix="robustprune-pg-")  # not under pytest's 0700 folders: the server user reads it
    url = pgserver.start(folder)  # a server of its own: stopping the shared one would cut other tests
    back = threading.Timer(3.0, pgserver.up, args=(folder,))  # refused for 3 s, then up again
    try:
        study = optuna.create_study(storage=storage_mod.open_storage(url), study_name="down")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        pgserver.down(folder)
        back.start()
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)  # waits for the server
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert "storage unreachable" in capsys.readouterr().err  # said once, not silently stuck
    finally:
        if back.is_alive():
            back.join()
        pgserver.stop(folder)


def test_a_postgresql_restart_between_two_calls_does_not_end_the_process():
    import importlib.util
    import tempfile

    from tests import pgserver

    if importlib.util.find_spec("psycopg") is None or pgserver.find_bin() is None:
        pytest.skip("needs psycopg and the PostgreSQL server binaries (apt-get install postgresql)")
    folder = tempfile.mkdtemp(prefix="robustprune-pg-")  # not under pytest's 0700 folders: the server user reads it
    url = pgserver.start(folder)  # a server of its own: restarting the shared one would cut other tests
    try:
        study = optuna.create_study(storage=storage_mod.open_storage(url), study_name="restart")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)  # the pool now holds a connection
        pgserver.restart(folder)
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)  # reconnects, no closed connection
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    finally:
        pgserver.stop(folder)
