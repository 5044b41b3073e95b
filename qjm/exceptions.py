"""Exceptions raised by qjm. Every one is a :class:`qiskit.exceptions.QiskitError`."""

from __future__ import annotations

from qiskit.exceptions import QiskitError


class JobManagerError(QiskitError):
    """Base class for errors raised by the job manager."""


class JobManagerInvalidStateError(JobManagerError):
    """An operation was asked of a job set in a state that does not allow it."""


class JobManagerTimeoutError(JobManagerError):
    """The deadline of ``results()`` passed before every job had finished.

    Attributes:
        missing: list of ``(job_index, first_experiment, last_experiment)`` of the jobs still unfinished.
    """

    def __init__(self, *message: str, missing: list[tuple[int, int, int]] | None = None):
        super().__init__(*message)
        self.missing = list(missing or [])


class JobManagerJobNotFound(JobManagerError):
    """No job or experiment matches what was asked for."""


class ManagedResultDataNotAvailable(JobManagerError):
    """The data of an experiment is missing: its job failed, was cancelled or was never submitted."""


class JobManagerUnknownJobSet(JobManagerError):
    """No job set with that id is in the store."""


# The names of the old IBMQ job manager.
IBMQJobManagerError = JobManagerError
IBMQJobManagerInvalidStateError = JobManagerInvalidStateError
IBMQJobManagerTimeoutError = JobManagerTimeoutError
IBMQJobManagerJobNotFound = JobManagerJobNotFound
IBMQManagedResultDataNotAvailable = ManagedResultDataNotAvailable
IBMQJobManagerUnknownJobSet = JobManagerUnknownJobSet

__all__ = [
    "JobManagerError",
    "JobManagerInvalidStateError",
    "JobManagerTimeoutError",
    "JobManagerJobNotFound",
    "ManagedResultDataNotAvailable",
    "JobManagerUnknownJobSet",
    "IBMQJobManagerError",
    "IBMQJobManagerInvalidStateError",
    "IBMQJobManagerTimeoutError",
    "IBMQJobManagerJobNotFound",
    "IBMQManagedResultDataNotAvailable",
    "IBMQJobManagerUnknownJobSet",
]
