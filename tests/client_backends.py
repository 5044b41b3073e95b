"""A backend stand-in that sends a client library's ``backend.run`` calls through qjm.

Some Qiskit client libraries (mthree's calibration, for one) call ``backend.run`` themselves and
read ``job.result().get_counts()``. :class:`JobManagerBackend` lets such a library run unchanged
through qjm: its ``run`` hands the circuits to :meth:`qjm.JobManager.run` (split into jobs of at
most ``max_experiments_per_job`` circuits), and the returned job's ``result()`` is the job set's
:class:`qjm.ManagedResults`, so the library reads qjm's own counts. Every other attribute
(``configuration()``, ``name``, ``target``, ``options``, ...) is the wrapped backend's.
"""

from __future__ import annotations

from typing import Any

import qjm


class JobSetJob:
    """The job a :class:`JobManagerBackend` returns: one qjm job set seen as one job."""

    def __init__(self, job_set: qjm.ManagedJobSet) -> None:
        self.job_set = job_set

    def job_id(self) -> str:
        return self.job_set.job_set_id()

    def result(self, timeout: float | None = None) -> qjm.ManagedResults:
        return self.job_set.results(timeout=timeout)


class JobManagerBackend:
    """Wraps ``backend``; ``run(circuits, **options)`` goes through ``manager.run``.

    Args:
        backend: the backend that runs the circuits.
        manager: the job manager (a new one with an in-memory store when None).
        max_experiments_per_job: the chunk size qjm splits every run into.

    Attributes:
        job_sets: every job set this wrapper created, in order.
    """

    def __init__(
        self,
        backend: Any,
        manager: qjm.JobManager | None = None,
        max_experiments_per_job: int | None = None,
    ) -> None:
        self.backend = backend
        self.manager = manager if manager is not None else qjm.JobManager(store=":memory:")
        self.max_experiments_per_job = max_experiments_per_job
        self.job_sets: list[qjm.ManagedJobSet] = []

    def run(self, circuits: Any, **options: Any) -> JobSetJob:
        job_set = self.manager.run(
            circuits,
            backend=self.backend,
            max_experiments_per_job=self.max_experiments_per_job,
            **options,
        )
        self.job_sets.append(job_set)
        return JobSetJob(job_set)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper itself.
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)
