"""What a job ended as: its final status, an error message, and its decoded result if any."""

from __future__ import annotations

from dataclasses import dataclass

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
