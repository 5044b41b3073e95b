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


class PurePythonKernelsWarning(RuntimeWarning):
    """A warning, not an error: qjm runs on its pure-Python merge kernels because the compiled
    extension ``qjm._merge`` is not built (results are the same, merging much slower). Build it
    (``pip install -e .`` in the checkout) or set ``QJM_PUREPYTHON=1`` to choose the pure-Python
    kernels on purpose, which silences it."""


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
    "PurePythonKernelsWarning",
    "IBMQJobManagerError",
    "IBMQJobManagerInvalidStateError",
    "IBMQJobManagerTimeoutError",
    "IBMQJobManagerJobNotFound",
    "IBMQManagedResultDataNotAvailable",
    "IBMQJobManagerUnknownJobSet",
]
