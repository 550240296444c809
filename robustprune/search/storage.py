"""The search's Optuna storage: safe to open from several processes, one search per storage, one owner at a time.

- Study names carry a fingerprint of everything that decides the search (model weights, input spec,
  prune space, resolved config), so a rerun resumes only the same search; a storage that holds another
  search's studies is refused (``StorageMismatchError``).
- One process at a time runs a search: it owns it through an owner study, created atomically (a study
  name is unique in every Optuna storage) and kept alive by a heartbeat. A second process finds a live
  owner and stops (``StorageBusyError``); an owner that stopped beating for ``GRACE_PERIOD`` seconds, or
  whose process is gone from this host, is taken over and its search resumed.
- Trials left RUNNING by a process that died are failed by Optuna's heartbeat (only those whose
  heartbeat is older than ``GRACE_PERIOD``), never just because they are RUNNING.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

import optuna
import torch
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # not exported by optuna.storages (journal.py too)
from optuna.study import StudyDirection
from torch import nn

from robustprune._progress import write_line

#: Seconds between heartbeats of a running trial and of a search's owner.
HEARTBEAT_INTERVAL = 10
#: A trial or owner whose last heartbeat is older than this (seconds) belongs to a process that died.
GRACE_PERIOD = 60
#: Opening a new SQLite file races on table creation; the loser retries this many times.
OPEN_ATTEMPTS = 20
#: A database server that refuses new connections (restarting, a network blip) is tried again for this long
#: (seconds) before a search or worker gives up; as long as the grace period, after which trials count as dead.
RECONNECT_SECONDS = GRACE_PERIOD


class StorageError(ValueError):
    """A storage that cannot be used for this search; the message says why (one line)."""


class StorageMismatchError(StorageError):
    """The storage holds the studies of another search (another model, spec or config)."""


class StorageBusyError(StorageError):
    """Another live process is running this search on the storage."""


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every tensor in ``model.state_dict()``: names, dtypes, shapes and values."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):  # a module's extra state: its repr
            sha.update(f"{name}|extra|{tensor!r}|".encode())
            continue
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def search_identity(model: nn.Module, space, config) -> dict:
    """What decides the search, in parts: model weights, input spec + prune space, and the resolved config."""
    return {
        "weights": weights_digest(model),
        "space": _digest(
            {
                "spec": space.spec.to_dict(),
                "exclude": sorted(space.excluded),
                "groups": [[g.name, g.size] for g in space.groups],
            }
        ),
        "config": json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str)),
    }


def fingerprint(identity: dict) -> str:
    """Twelve hex digits that name the search in its study names."""
    return _digest(identity)[:12]


def _differences(theirs: dict, ours: dict) -> str:
    """What differs between two ``search_identity`` dicts, shortest first (for a one-line message)."""
    parts = ["the model weights"] if theirs.get("weights") != ours.get("weights") else []
    parts += ["the input spec or prune space"] if theirs.get("space") != ours.get("space") else []
    config_a, config_b = _flat(theirs.get("config") or {}), _flat(ours.get("config") or {})
    for key in sorted(set(config_a) | set(config_b)):
        if key.endswith(".seed") and config_a.get("seed") != config_b.get("seed"):
            continue  # the probes' seed follows the search's: named once
        if config_a.get(key) != config_b.get(key):
            parts.append(f"{key} {json.dumps(config_a.get(key))} there, {json.dumps(config_b.get(key))} here")
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


def _flat(config: dict, prefix: str = "") -> dict:
    """Nested settings as dotted keys (``probes.synthetic.n``), so a difference names the one setting."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _describe(storage: str | BaseStorage) -> str:
    """The storage as messages name it (a URL without its password)."""
    if not isinstance(storage, str):
        return type(storage).__name__
    import sqlalchemy.engine

    try:
        return sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: opening it will say so
        return storage


#: A trial whose process died is queued again at most this many times (a trial that kills every process stops).
MAX_RETRY = 3


def database_url(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's psycopg2 driver; with only psycopg 3 installed, use that one."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def stale_callback(
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None,
) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """What a storage does with a trial failed by its heartbeat: tell ``on_stale``, then queue it again
    (Optuna's ``RetryHeartbeatStaleTrialCallback``: same parameters, a new number), so another process runs it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_stale is not None:
            on_stale(study, trial)
        retry(study, trial)

    return callback


def open_storage(
    storage: str | BaseStorage | None, on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None
) -> BaseStorage:
    """The storage a search runs on: a URL opens an RDBStorage with heartbeats, ``journal:PATH`` a journal
    file with heartbeats (``robustprune.search.journal``); a trial failed because its process died is
    queued again (``stale_callback``; ``on_stale`` is told of each). A storage object is used as given;
    None is in memory."""
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        beats = isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None
        if not beats and not isinstance(storage, InMemoryStorage):
            warnings.warn(
                f"the {type(storage).__name__} given has no heartbeat: a trial of a killed process stays RUNNING and "
                "a rerun waits for it; give a URL, or an RDBStorage with heartbeat_interval, for a resumable search",
                stacklevel=3,
            )
        return storage
    if not isinstance(storage, str):
        raise StorageError(f"storage must be an Optuna storage URL or object, got {type(storage).__name__}")
    from robustprune.search.journal import HeartbeatJournalStorage, journal_path

    callback = stale_callback(on_stale)
    storage = database_url(storage)
    path = journal_path(storage)
    if path is not None:
        if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise StorageError(f"cannot open storage {storage!r}: no folder for the journal file {path!r}")
        if os.path.isdir(path):
            raise StorageError(f"cannot open storage {storage!r}: {path} is a folder, not a journal file")
        try:
            return HeartbeatJournalStorage(
                path,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                heartbeat_stale_trial_callback=callback,
            )
        except Exception as exc:  # Optuna replays the file: a SQLite database or a text file fails to parse
            raise StorageError(
                f"cannot open storage {storage!r}: {path} is not an Optuna journal file ({exc.__class__.__name__})"
            ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        for attempt in range(OPEN_ATTEMPTS):
            try:
                opened = RDBStorage(
                    storage,
                    # a server restart between two calls reconnects (SQLAlchemy tests each pooled connection
                    # before use) instead of failing the next call on a closed connection
                    engine_kwargs=None if storage.startswith("sqlite") else {"pool_pre_ping": True},
                    heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                    heartbeat_stale_trial_callback=callback,
                )
                if not storage.startswith("sqlite"):  # opened: a server that is down from now on is waited for
                    reconnect_patiently(opened.engine, RECONNECT_SECONDS)
                return opened
            except Exception as exc:
                if attempt + 1 < OPEN_ATTEMPTS and _creation_race(exc):
                    time.sleep(0.05 * (attempt + 1))  # another process is creating the schema: let it finish
                    continue
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                if isinstance(exc, ImportError) and "psycopg" in str(exc):
                    reason = "PostgreSQL needs psycopg: pip install 'robustprune[distributed]'"
                raise StorageError(f"cannot open storage {_describe(storage)!r}: {reason}") from exc
    raise AssertionError("unreachable")


def reconnect_patiently(engine, seconds: float) -> None:
    """Make ``engine`` try a refused new connection again for up to ``seconds``, so that a database server
    restarting (or a network blip) pauses a search instead of ending it. Only connecting is retried: nothing
    was sent, so nothing can run twice. A cut in the middle of a call still fails it (resumable)."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        deadline, delay, told = time.monotonic() + seconds, 0.5, False
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                if not told:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    write_line(f"storage unreachable ({reason}); trying again for up to {seconds:.0f} s")
                    told = True
                time.sleep(delay)
                delay = min(2 * delay, 5.0)


def _creation_race(exc: Exception) -> bool:
    """Whether ``exc`` is what a process gets when another one creates the same new database at the same time."""
    import sqlalchemy.exc

    # PostgreSQL reports a table another process just created as ProgrammingError (DuplicateTable)
    races = sqlalchemy.exc.OperationalError | sqlalchemy.exc.IntegrityError | sqlalchemy.exc.ProgrammingError
    if not isinstance(exc, races):
        return False
    text = str(exc).lower()
    return "already exists" in text or "locked" in text or "unique constraint" in text or "duplicate" in text


#: What follows ``study_name-`` in a search's study names (without a fingerprint: an older robustprune's).
STUDY_SUFFIX = re.compile(r"^(?:(?P<fp>[0-9a-f]{12})-)?(?P<kind>step|owner|job)(?P<n>\d*)$")


def _parse(name: str, study_name: str) -> re.Match | None:
    """The fingerprint and kind of a ``study_name`` study, or None for any other study."""
    prefix = f"{study_name}-"
    return STUDY_SUFFIX.match(name[len(prefix) :]) if name.startswith(prefix) else None


def check_storage(storage: BaseStorage, study_name: str, identity: dict, where: str) -> None:
    """Refuse (StorageMismatchError) a storage holding ``study_name`` studies of another search."""
    ours = fingerprint(identity)
    for study in storage.get_all_studies():
        match = _parse(study.study_name, study_name)
        if not match or match["fp"] == ours:
            continue
        theirs = study.user_attrs.get("robustprune_search")
        if theirs is None and match["kind"] == "job":  # a job study holds the identity in its job
            theirs = (study.user_attrs.get("job") or {}).get("identity")
        if theirs is None and match["kind"] == "owner" and match["fp"]:
            continue  # an owner study created a moment ago: labelled next, and its other studies tell
        why = _differences(theirs, identity) if isinstance(theirs, dict) else "made by an older robustprune"
        raise StorageMismatchError(
            f"storage {where} holds another search's studies ({study.study_name}: {why}); "
            "use a new storage, or that search's exact model and settings to resume it"
        )


class SearchOwner:
    """This process's claim on one search in one storage: an owner study plus a heartbeat thread."""

    def __init__(self, storage: BaseStorage, study_name: str, identity: dict, where: str) -> None:
        self.storage, self.study_name, self.identity, self.where = storage, study_name, identity, where
        self.base = f"{study_name}-{fingerprint(identity)}"
        self.token = uuid.uuid4().hex
        self.study_id: int | None = None
        self.generation = -1
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _owners(self) -> dict[int, optuna.study.FrozenStudy]:
        found = {}
        for study in self.storage.get_all_studies():
            match = _parse(study.study_name, self.study_name)
            if match and match["kind"] == "owner" and study.study_name == f"{self.base}-owner{match['n']}":
                found[int(match["n"])] = study
        return found

    def acquire(self) -> None:
        owners = self._owners()
        if owners:
            latest = max(owners)
            info = self._owner_info(owners[latest])
            if _alive(info):
                raise StorageBusyError(
                    f"another process (pid {info.get('pid')} on {info.get('host')}) is running this search on "
                    f"storage {self.where} (heartbeat {time.time() - info.get('beat', 0):.0f}s ago); wait for it, "
                    f"or if it was killed, rerun after {GRACE_PERIOD}s"
                )
            self.generation = latest + 1
        else:
            self.generation = 0
        try:
            name = f"{self.base}-owner{self.generation}"
            self.study_id = self.storage.create_new_study([StudyDirection.MINIMIZE], name)
        except optuna.exceptions.DuplicatedStudyError:
            raise StorageBusyError(
                f"another process started this search on storage {self.where} at the same moment; wait for it"
            ) from None
        self.storage.set_study_user_attr(self.study_id, "robustprune_search", self.identity)
        self._beat()
        for study in owners.values():  # the dead owners' studies are no longer needed
            with contextlib.suppress(Exception):
                self.storage.delete_study(study._study_id)
        self._thread = threading.Thread(target=self._run, name="robustprune-owner-heartbeat", daemon=True)
        self._thread.start()

    def _owner_info(self, study: optuna.study.FrozenStudy) -> dict:
        """The owner's heartbeat record; an owner study that has none yet was created a moment ago: wait for it."""
        info = study.user_attrs.get("owner")
        for _ in range(10):
            if info:
                return info
            time.sleep(0.1)
            info = self.storage.get_study_user_attrs(study._study_id).get("owner")
        return info or {}  # still none: its process died between creating it and its first heartbeat

    def _beat(self, released: bool = False) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "beat": time.time()}
        self.storage.set_study_user_attr(self.study_id, "owner", {**info, "released": released})

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            with contextlib.suppress(Exception):  # a busy database: beat again next time
                if any(n > self.generation for n in self._owners()):
                    self.lost = True  # taken over (this process looked dead): stop before mixing trials in
                    return
                self._beat()

    def check(self) -> None:
        """StorageBusyError if another process took this search over (this one looked dead to it)."""
        if self.lost:
            raise StorageBusyError(
                f"another process took over this search on storage {self.where} (this one missed its heartbeats)"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.study_id is not None and not self.lost:
            with contextlib.suppress(Exception):
                self._beat(released=True)


def owner_info(storage: BaseStorage, base: str) -> dict:
    """The heartbeat record of the latest owner of the search ``base`` ({} when it has none)."""
    latest, info = -1, {}
    for study in storage.get_all_studies():
        stem, _, n = study.study_name.rpartition("-owner")
        if stem == base and n.isdigit() and int(n) > latest:
            latest, info = int(n), study.user_attrs.get("owner") or {}
    return info


def _alive(info: dict) -> bool:
    """Whether the owner described by ``info`` (an owner study's attribute) still runs."""
    if not info or info.get("released"):
        return False
    if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
        return False
    return time.time() - float(info.get("beat", 0)) < GRACE_PERIOD


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or cannot tell): assume alive
    return True


@contextlib.contextmanager
def owned_search(
    storage: str | BaseStorage | None,
    study_name: str,
    identity: dict,
    on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> Iterator[tuple[BaseStorage, str, SearchOwner]]:
    """Open ``storage``, check it holds no other search, and own this one while the block runs.

    Yields (storage, the step studies' name prefix, owner); the owner is released on exit.
    """
    where = _describe(storage) if storage is not None else "in memory"
    opened = open_storage(storage, on_stale=on_stale)
    check_storage(opened, study_name, identity, where)
    owner = SearchOwner(opened, study_name, identity, where)
    if storage is None:  # a private in-memory storage: no other process can see it, nothing to own
        yield opened, owner.base, owner
        return
    owner.acquire()
    try:
        check_storage(opened, study_name, identity, where)  # another search may have started at the same moment
        yield opened, owner.base, owner
    finally:
        owner.release()


def open_step(
    storage: BaseStorage,
    base: str,
    k: int,
    identity: dict,
    directions: list[str],
    sampler_for: Callable[[int], BaseSampler],
) -> optuna.Study:
    """Step ``k``'s study (created or resumed), its trials from dead processes failed by their heartbeat.

    ``sampler_for(n)`` makes the study's sampler, ``n`` the trials the study held when opened (0: a new step)."""
    study = optuna.create_study(
        study_name=f"{base}-step{k}", storage=storage, directions=directions, load_if_exists=True
    )
    study.sampler = sampler_for(len(study.get_trials(deepcopy=False)))
    if "robustprune_search" not in study.user_attrs:
        study.set_user_attr("robustprune_search", identity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return study
