"""What a coordinator publishes in the storage for its workers: the search's job study, ``{base}-job``.

Its user attributes hold the model reference, the input spec, the resolved config, the criterion the
coordinator chose, and the probes' cache key and digest, so a worker with only the storage URL can
rebuild the identical search and check that it did. ``status`` turns to ``done`` when the search ends.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

from robustprune.probes.probeset import ProbeSet
from robustprune.search.storage import STUDY_SUFFIX, StorageError

JOB_ATTR = "job"
#: A job study's name: the search's --study name, its fingerprint (absent in older names), "-job".
_JOB_NAME = re.compile(r"^(?P<name>.+?)(?:-(?P<fp>[0-9a-f]{12}))?-job$")
STATUS_ATTR = "status"


def probes_digest(probes: ProbeSet) -> str:
    """SHA-256 of every probe's pixels and the original model's logits on them, in kind order."""
    sha = hashlib.sha256()
    for kind in sorted(probes.pixels):
        for tensor in (probes.pixels[kind], probes.logits[kind]):
            sha.update(f"{kind}|{tuple(tensor.shape)}|".encode())
            sha.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def publish_job(storage: BaseStorage, base: str, job: dict) -> None:
    """Create (or refresh, on resume) the job study of the search named ``base``."""
    name = f"{base}-job"
    try:
        study_id = storage.create_new_study([StudyDirection.MINIMIZE], name)
    except optuna.exceptions.DuplicatedStudyError:
        study_id = storage.get_study_id_from_name(name)
    storage.set_study_user_attr(study_id, JOB_ATTR, job)
    storage.set_study_user_attr(study_id, STATUS_ATTR, "running")


def finish_job(storage: BaseStorage, base: str, reason: str) -> None:
    study_id = storage.get_study_id_from_name(f"{base}-job")
    storage.set_study_user_attr(study_id, STATUS_ATTR, f"done: {reason}")


def stop_job(storage: BaseStorage, base: str, reason: str) -> None:
    """The coordinator ended without finishing (interrupted, an error): workers stop; a rerun publishes again."""
    study_id = storage.get_study_id_from_name(f"{base}-job")
    storage.set_study_user_attr(study_id, STATUS_ATTR, f"stopped: {reason}")


def job_status(storage: BaseStorage, base: str) -> str:
    return storage.get_study_user_attrs(storage.get_study_id_from_name(f"{base}-job")).get(STATUS_ATTR, "")


def find_job(
    storage: BaseStorage, study_name: str, wait: float | None = None, say: Callable[[str], None] = lambda m: None
) -> tuple[str, dict]:
    """The (base, job) of the search named ``study_name`` in ``storage``; waits up to ``wait`` seconds
    (None: for ever) for a coordinator to publish one."""
    if re.search(r"-[0-9a-f]{12}$", study_name):
        base = study_name.rpartition("-")[0]
        raise StorageError(
            f"{study_name!r} is a study's full name (the search name plus its fingerprint): give --study {base}"
        )
    deadline = None if wait is None else time.time() + wait
    told = False
    while True:
        jobs = []
        for study in storage.get_all_studies():
            prefix = f"{study_name}-"
            match = STUDY_SUFFIX.match(study.study_name[len(prefix) :]) if study.study_name.startswith(prefix) else None
            if match and match["kind"] == "job" and JOB_ATTR in study.user_attrs:
                jobs.append((study.study_name.removesuffix("-job"), study.user_attrs[JOB_ATTR]))
        if len(jobs) > 1:
            raise StorageError(f"the storage holds {len(jobs)} searches named {study_name!r}; give the study name")
        if jobs:
            return jobs[0]
        if deadline is not None and time.time() > deadline:
            raise StorageError(
                f"no search named {study_name!r} was published in the storage within {wait:g}s"
                f"{_others(storage, study_name)}"
            )
        if not told:
            say(f"waiting for a coordinator to publish a search named {study_name!r}{_others(storage, study_name)}")
            told = True
        time.sleep(1.0)


def _others(storage: BaseStorage, study_name: str) -> str:
    """The --study names of the searches the storage does hold (for a worker given the wrong one)."""
    names = set()
    for study in storage.get_all_studies():
        match = _JOB_NAME.match(study.study_name)
        if match and JOB_ATTR in study.user_attrs:
            names.add(match["name"])
    names.discard(study_name)
    return f" (the storage holds: {', '.join(sorted(names))}; give --study NAME)" if names else ""
