"""One job of a job set: its experiments, its backend job, and what it ended as."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from qiskit.providers import JobError, JobStatus, JobV1
from qiskit.providers.jobstatus import JOB_FINAL_STATES

from qjm.kinds import normalize_status
from qjm.outcome import JobOutcome
from qjm.plan import JobSpec


class ManagedJob:
    """A job of a :class:`~qjm.ManagedJobSet`: experiments ``start_index .. end_index``.

    Attributes:
        index: position of the job in its set.
        start_index: global index of its first experiment.
        end_index: global index of its last experiment (inclusive, as in the old job manager).
        part: the shot part this job runs (0 unless experiments were split by shots).
        shots: the shots of each experiment in this job when split by shots, else None.
        seed: the ``seed_simulator`` this job was given (None when the run had no seed).
        job: the backend's job, or None while it is being submitted, when submission failed,
            when a retrieved set could not reattach to the backend, or once its outcome is kept
            (``ManagedJobSet.jobs()`` gives it back: see :class:`KeptJob`).
        job_id: the backend's job id, once known.
        submit_error: why submission failed, if it did.
        outcome: the kept final state and result, once fetched.
        times: wall-clock times (``time.time()``) of the job's current attempt: ``submitted``
            (the backend returned the job), ``running`` (first seen RUNNING, if ever),
            ``finished`` (first seen in a final state), ``kept`` (its outcome committed). Kept
            in the store with the job's row (at submission and when kept, never per poll).
        seen_status: the last status a look at the job found (None before any look).
    """

    def __init__(self, spec: JobSpec):
        self.index = spec.index
        self.start_index = spec.start
        self.end_index = spec.stop - 1
        self.part = spec.part
        self.shots = spec.shots
        self.seed: int | None = None  # the seed_simulator this job was given, if any
        self.job: JobV1 | None = None
        # once its outcome is kept, a circuits job lets go of the backend's job (which may hold
        # the whole Result); a weak reference finds it while anyone else holds it
        self.job_ref: Any = None
        self.job_id: str | None = None
        self.submit_error: str | None = None
        self.fetch_error: str | None = None
        self.submit_waiting: str | None = None  # why a submission is waiting (a busy backend)
        self.stored_status: JobStatus | None = None  # last status the store knows (retrieved sets)
        self.outcome: JobOutcome | None = None
        self.submitted = threading.Event()  # set when submission has finished, either way
        self.fetch_future: Future | None = None
        self.fetch_lock = threading.Lock()  # one look at a time
        self.holds_slot = False  # counts against max_active_jobs
        self.status_seconds = 0.0  # how long the last status query took
        self.fetch_attempts = 0  # failed fetches of this job's final result
        self.persist_error: str | None = None  # why its kept result is not in the store
        self.uncertain = False  # retrieved: its submission may or may not have reached the backend
        self.never_started = False  # retrieved: its submission never began
        # retrieved: its target cannot look jobs up by id (local: it ended with its process)
        self.unreachable = False
        self.retry_at = 0.0  # monotonic time before which a failed fetch is not tried again
        # what happened to each attempt: (time, job id, None or what went wrong)
        self.history: list[tuple[float, str | None, str | None]] = []
        # when the current attempt was submitted, first seen running, seen final, kept
        self.times: dict[str, float] = {}
        self.seen_status: JobStatus | None = None

    def saw(self, status: JobStatus) -> None:
        """Note a status a look found: the first time RUNNING and the first time final (in
        memory; the times reach the store with the job's row)."""
        self.seen_status = status
        if status == JobStatus.RUNNING:
            self.times.setdefault("running", time.time())
        elif status in JOB_FINAL_STATES:
            self.times.setdefault("finished", time.time())

    @property
    def experiments(self) -> range:
        return range(self.start_index, self.end_index + 1)

    def status(self) -> JobStatus | None:
        """The job's status: final once fetched, INITIALIZING while being submitted, None if
        submission failed (or the job cannot be reached and the store knows no status)."""
        if self.outcome is not None:
            return self.outcome.status
        if not self.submitted.is_set():
            return JobStatus.INITIALIZING
        if self.job is None:
            return self.stored_status
        try:
            status = normalize_status(self.job.status())
        except Exception:  # noqa: BLE001 - a status query that fails says nothing final
            return None
        self.saw(status)
        return status

    def error_message(self) -> str | None:
        """Why this job failed, or None."""
        if self.submit_error:
            return f"submission failed: {self.submit_error}"
        if self.outcome is not None and not self.outcome.ok:
            return self.outcome.error or _record_error(self.outcome)
        if self.fetch_error:
            return f"result could not be fetched: {self.fetch_error}"
        if self.persist_error:
            return f"result kept in memory only, not persisted: {self.persist_error}"
        return None

    def __repr__(self) -> str:
        return (
            f"ManagedJob(index={self.index}, experiments={self.start_index}-{self.end_index}, "
            f"job_id={self.job_id!r}, status={self.status()})"
        )


def _record_error(outcome: JobOutcome) -> str:
    if outcome.record is None:
        return f"job ended as {outcome.status.name} without a result"
    record = outcome.record
    successes = getattr(record, "successes", None)  # only the failed ones are decoded
    which = (
        [i for i, ok in enumerate(successes().tolist()) if not ok]
        if successes is not None
        else [i for i, e in enumerate(record.experiments) if not e.success]
    )
    failed = [
        f"experiment {i} ({e.name or '?'}): {e.fields.get('status', 'failed')}"
        for i, e in ((i, record.experiments[i]) for i in which)
    ]
    head = f"job ended as {outcome.status.name}"
    status = outcome.record.fields.get("status")
    if status:
        head += f" ({status})"
    return head + ("; " + "; ".join(failed) if failed else "")


class KeptJob(JobV1):
    """A finished job as qjm kept it, standing in for a backend job that is gone: qjm lets go of
    a job once its outcome is kept (an ``AerJob`` holds its whole ``Result``), and a backend that
    cannot look its jobs up by id (a local simulator) cannot give it back. Its ``status()`` is the
    kept status and ``result()`` the kept result, rebuilt on each call (sharing nothing)."""

    def __init__(self, backend: Any, job_id: str, outcome: JobOutcome):
        super().__init__(backend, job_id)
        self._outcome = outcome

    def submit(self) -> None:
        raise JobError("a kept job cannot be submitted again: use ManagedJobSet.retry_failed()")

    def status(self) -> JobStatus:
        return self._outcome.status

    def result(self, timeout: float | None = None) -> Any:
        record = self._outcome.record
        if record is None:
            raise JobError(self._outcome.error or f"job ended as {self._outcome.status.name}")
        return record.to_result()

    def cancel(self) -> bool:
        return False
