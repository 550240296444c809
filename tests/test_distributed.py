"""A search shared by processes: a coordinator and 3 workers on PostgreSQL, and on a journal file.

The PostgreSQL server is ``$ROBUSTPRUNE_TEST_POSTGRES`` (a SQLAlchemy URL; .ci/run starts one), else one
this module starts with tests/pgserver.py where the server binaries are installed; without either, or
without psycopg, the PostgreSQL case skips and says why.

Five processes per storage take minutes on a busy 2-core machine, so the tests are in the default run
where a server is given (CI: .ci/run sets the variable), and marked slow elsewhere (``pytest -m slow``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from robustprune.search.steps import best, commit_set, feasible
from tests import pgserver

pytestmark = [] if os.environ.get("ROBUSTPRUNE_TEST_POSTGRES") else [pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
TRIALS, STEPS = 6, 2
State = optuna.trial.TrialState


@pytest.fixture(scope="module")
def postgres_url():
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed (pip install 'robustprune[distributed]')")
    url = os.environ.get("ROBUSTPRUNE_TEST_POSTGRES")
    if url:
        yield url
        return
    if pgserver.find_bin() is None:
        pytest.skip("no PostgreSQL: set ROBUSTPRUNE_TEST_POSTGRES to a server's URL, or install postgresql")
    folder = tempfile.mkdtemp(prefix="robustprune-pg-")  # not under pytest's 0700 folders: the server user reads it
    try:
        yield pgserver.start(folder)
    finally:
        pgserver.stop(folder)


PRELUDE = """
import os, sys, time
from pathlib import Path
from robustprune.search import steps, storage as storage_mod
storage_mod.HEARTBEAT_INTERVAL, storage_mod.GRACE_PERIOD, steps.POLL_SECONDS = 1, 5, 0.2
role, url, cache, folder, die_at = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
wait_for = sys.argv[6]
seen = [0]

def log(message):
    print(message, flush=True)
    if message.startswith("  trial"):  # inside a trial, before it returns: the trial is RUNNING
        seen[0] += 1
        if seen[0] == 1 and wait_for:  # hold this trial until the other process is inside one of its own
            deadline = time.time() + 300
            while not (folder / f"{wait_for}.in-trial").exists() and time.time() < deadline:
                time.sleep(0.1)
        if seen[0] == die_at:
            (folder / f"{role}.in-trial").write_text(str(os.getpid()))
            time.sleep(3600)  # killed here by the test
"""

COORDINATOR = """
import json
from robustprune import zoo
from robustprune.probes.probeset import ProbeConfig
from robustprune.probes.synthetic import SyntheticConfig
from robustprune.search import SearchConfig, search

probes = ProbeConfig(synthetic=SyntheticConfig(n=48, steps=10, batch_size=48), attack_steps=2, n_undesired=24)
config = SearchConfig(target_params=0.6, steps={steps}, trials={trials}, max_increment=0.25, probes=probes)
model, spec = zoo.load("mlp")
result = search(model, spec, config=config, storage=url, cache_dir=cache, log=log, model_ref="zoo:mlp")
(folder / "result.json").write_text(json.dumps({{"reached": result.target_reached,
    "steps": [[r.step, r.trial, r.trials] for r in result.history]}}))
"""

WORKER = """
from robustprune.search.worker import run_worker
report = run_worker(url, cache_dir=cache, log=log, wait=600)
"""


def _start(folder: Path, role: str, url: str, cache: Path, die_at: int = 0, wait_for: str = "") -> subprocess.Popen:
    body = COORDINATOR.format(steps=STEPS, trials=TRIALS) if role.startswith("coordinator") else WORKER
    script = folder / f"{role}.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log = open(folder / f"{role}.log", "w")  # noqa: SIM115 (closed when the test ends)
    return subprocess.Popen(
        [sys.executable, str(script), role, url, str(cache), str(folder), str(die_at), wait_for],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _tail(folder: Path, role: str) -> str:
    path = folder / f"{role}.log"
    return f"--- {role} ---\n" + (path.read_text()[-3000:] if path.exists() else "(no log)")


def _run_search(url: str, folder: Path, procs: dict[str, subprocess.Popen]) -> None:
    """Coordinator + 3 workers; kill -9 one worker inside its first trial and the coordinator inside its
    second, restart the coordinator; returns once the search ended.

    Ordered so that no race can skip a kill: the coordinator holds its first trial until worker3 is
    inside one (a worker that started late could otherwise find every trial taken and end cleanly),
    and workers 1 and 2 join once worker3 is inside its trial."""
    cache = folder / "cache"
    procs["coordinator"] = _start(folder, "coordinator", url, cache, die_at=2, wait_for="worker3")
    procs["worker3"] = _start(folder, "worker3", url, cache, die_at=1)
    logs = lambda: "\n".join(_tail(folder, r) for r in procs)  # noqa: E731
    killed: set[str] = set()
    deadline = time.time() + 900
    while killed != {"coordinator", "worker3"}:
        assert time.time() < deadline, "the processes never reached the trials to kill\n" + logs()
        for role in ("coordinator", "worker3"):
            if role not in killed and procs[role].poll() is not None:
                pytest.fail(f"{role} ended before it reached the trial to kill\n" + logs())
            if role not in killed and (folder / f"{role}.in-trial").exists():
                os.kill(procs[role].pid, signal.SIGKILL)
                procs[role].wait()
                killed.add(role)
                if role == "coordinator":  # rerun: it takes the search over and resumes it
                    procs["coordinator-2"] = _start(folder, "coordinator-2", url, cache)
        if (folder / "worker3.in-trial").exists() and "worker1" not in procs:
            procs |= {f"worker{i}": _start(folder, f"worker{i}", url, cache) for i in (1, 2)}
        for role, proc in procs.items():
            assert role in killed or proc.poll() in (None, 0), f"{role} failed\n" + logs()
        time.sleep(0.2)
    for role in ("coordinator-2", "worker1", "worker2"):
        try:
            procs[role].wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{role} did not finish\n" + logs())
        assert procs[role].returncode == 0, logs()


@pytest.fixture
def procs():
    """The test's processes, killed at the end whatever happened."""
    started: dict[str, subprocess.Popen] = {}
    yield started
    for proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _check_studies(storage, folder: Path) -> None:
    """Every step committed by the rule; every trial a killed process left running was failed and run again."""
    result = json.loads((folder / "result.json").read_text())
    assert result["reached"]
    names = optuna.get_all_study_names(storage)
    steps = sorted((n for n in names if "-step" in n), key=lambda n: int(n.rsplit("step", 1)[1]))
    assert len(steps) == len(result["steps"]) >= STEPS
    retried = 0
    for name, (k, trial, n_trials) in zip(steps, result["steps"], strict=True):
        study = optuna.load_study(study_name=name, storage=storage)  # what optuna-dashboard opens
        trials = study.get_trials(deepcopy=False)
        chosen = commit_set(trials, TRIALS)
        assert chosen is not None and len(chosen) == TRIALS == n_trials, f"step {k}: budget not met"
        assert study.user_attrs["committed"]["trial"] == trial == best(feasible(chosen)).number
        assert not any(t.state == State.RUNNING for t in trials), f"step {k}: a trial left running"
        for failed in (t for t in trials if t.state == State.FAIL):
            retries = [t for t in trials if failed.number in t.system_attrs.get("retry_history", [])]
            assert retries, f"step {k}: trial {failed.number} was lost"
            retried += 1
        params = [tuple(sorted(t.params.items())) for t in chosen]
        copies = [t for t in chosen if t.system_attrs.get("failed_trial") is not None]
        assert all(params.count(tuple(sorted(t.params.items()))) == 1 for t in copies), "a trial counted twice"
    assert retried >= 2, "the killed worker's and coordinator's trials were failed and queued again"
    live = ("coordinator-2", "worker1", "worker2")  # whichever live process polls first reports the stale trials
    assert any("was left running by a process that stopped" in _tail(folder, r) for r in live)


@pytest.fixture
def fresh_database(postgres_url):
    """A database of its own on the server (one shared between runs may hold other searches)."""
    import sqlalchemy

    name = f"robustprune_test_{os.getpid()}_{int(time.time())}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    yield sqlalchemy.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_coordinator_and_three_workers_survive_kill_9(kind, request, tmp_path, procs):
    if kind == "postgresql":
        url = storage = request.getfixturevalue("fresh_database")
    else:
        url = f"journal:{tmp_path / 'search.log'}"
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "search.log"))
        )
    _run_search(url, tmp_path, procs)
    _check_studies(storage, tmp_path)
