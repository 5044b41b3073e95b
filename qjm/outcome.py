"""What a job ended as: its final status, an error message, and its decoded result if any."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qiskit.providers import JobStatus

from qjm.records import JobRecord


@dataclass
class JobOutcome:
    """The kept, final state of one job.

    Attributes:
        status: the job's final status (DONE, ERROR or CANCELLED).
        record: the decoded result, or None when the backend served none.
        error: why the job or the fetch of its result failed, if it did.
    """

    status: JobStatus
    record: JobRecord | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The job ran and every one of its experiments succeeded."""
        return self.status == JobStatus.DONE and self.record is not None and self.record.success


_UNREAD = object()


class StoredOutcome(JobOutcome):
    """An outcome read back from the store: its status, error and state (done, partial, failed,
    cancelled; ``qjm.summary``) at once, its record only when first asked for (``load()``), so
    that statuses and reports of a retrieved set read no record.

    Attributes:
        state: the state the store holds for it, or None (kept by a qjm before store schema 4:
            then judged from the record).
    """

    def __init__(
        self,
        status: JobStatus,
        error: str | None,
        has_record: bool,
        state: str | None,
        load: Callable[[], JobRecord | None],
    ):
        self.status = status
        self.error = error
        self.state = state
        self._record: Any = _UNREAD if has_record else None
        self._load = load

    @property  # type: ignore[override]
    def record(self) -> JobRecord | None:
        if self._record is _UNREAD:
            self._record = self._load()
        return self._record

    @record.setter
    def record(self, value: JobRecord | None) -> None:
        self._record = value

    @property
    def loaded(self) -> bool:
        """Whether the record is in memory (or there is none)."""
        return self._record is not _UNREAD

    @property
    def ok(self) -> bool:
        if self.state is not None:
            return self.state == "done"
        return super().ok

    def __repr__(self) -> str:
        record = "<not read>" if self._record is _UNREAD else self._record
        return f"StoredOutcome(status={self.status}, state={self.state!r}, record={record})"
