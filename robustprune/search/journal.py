"""A JournalStorage file with Optuna's trial heartbeat, for machines that share a file system but no database.

Optuna 5.0's ``JournalStorage`` does not implement ``BaseHeartbeat`` (optuna/optuna#6615), so a killed
process's trial would stay RUNNING for ever. This subclass implements Optuna's own heartbeat interface
on the journal, so Optuna's ``HeartbeatThread``, ``fail_stale_trials`` and
``RetryHeartbeatStaleTrialCallback`` work on it exactly as on an RDBStorage: a running trial's
heartbeat is a trial system attribute (``HEARTBEAT_ATTR``, seconds since the epoch).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "robustprune:heartbeat"
PREFIX = "journal:"


def journal_path(url: str) -> str | None:
    """The file of a ``journal:PATH`` (or ``journal:///PATH``) storage string, else None."""
    if not url.startswith(PREFIX):
        return None
    path = url[len(PREFIX) :]
    return path[2:] if path.startswith("///") else path


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """``JournalStorage(JournalFileBackend(path))`` whose running trials beat like an RDBStorage's."""

    def __init__(
        self,
        path: str,
        *,
        heartbeat_interval: int,
        grace_period: int,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(JournalFileBackend(path))
        self.path = path
        self._heartbeat_interval, self._grace_period = heartbeat_interval, grace_period
        self._stale_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # the trial may have been finished meanwhile (by its own tell, or failed by another process)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, KeyError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # a retried trial inherits its original's heartbeat: its own start counts as a beat too
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            last = max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
            if now - last > self._grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback
