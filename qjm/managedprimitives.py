"""ManagedSampler and ManagedEstimator: a Sampler V2 / Estimator V2 that runs through qjm.

Any code that takes a ``BaseSamplerV2`` or ``BaseEstimatorV2`` gets qjm's splitting, parallel
fetch, store and merge without knowing it: ``run(pubs)`` runs the PUBs as one job set and returns a
``BasePrimitiveJob`` whose ``job_id()`` is the job set id and whose ``result()`` is the merged
``PrimitiveResult``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qiskit.primitives import BaseEstimatorV2, BasePrimitiveJob, BaseSamplerV2
from qiskit.providers import JobStatus
from qiskit.providers.jobstatus import JOB_FINAL_STATES


class StatusPredicates:
    """``BasePrimitiveJob``'s status questions, answered from ``status()``."""

    def done(self) -> bool:
        return self.status() == JobStatus.DONE

    def running(self) -> bool:
        return self.status() == JobStatus.RUNNING

    def cancelled(self) -> bool:
        return self.status() == JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        return self.status() in JOB_FINAL_STATES


class ManagedPrimitiveJob(StatusPredicates, BasePrimitiveJob):
    """The job of a :class:`ManagedSampler` / :class:`ManagedEstimator` run: a whole job set."""

    def __init__(self, job_set: Any):
        super().__init__(job_set.job_set_id())
        self._job_set = job_set

    def job_set(self) -> Any:
        """The :class:`~qjm.ManagedJobSet` behind this job."""
        return self._job_set

    def result(self, timeout: float | None = None) -> Any:
        """The merged ``PrimitiveResult`` (waits for every job; ``timeout`` in seconds).

        Raises:
            JobManagerTimeoutError: the deadline passed first.
            ManagedResultDataNotAvailable: a job failed (the message says which and why).
        """
        result = self._job_set.results(timeout=timeout).primitive_result()
        self._job_set.shutdown(wait=False)  # every result is kept: the threads can go
        return result

    def status(self) -> JobStatus:
        """DONE when every job is; ERROR or CANCELLED as soon as one is; else the least
        advanced status of the jobs."""
        statuses = self._job_set.statuses()
        if any(s is None or s == JobStatus.ERROR for s in statuses):
            return JobStatus.ERROR
        if any(s == JobStatus.CANCELLED for s in statuses):
            return JobStatus.CANCELLED
        if all(s == JobStatus.DONE for s in statuses):
            return JobStatus.DONE
        if any(s == JobStatus.RUNNING for s in statuses):
            return JobStatus.RUNNING
        order = [JobStatus.INITIALIZING, JobStatus.VALIDATING, JobStatus.QUEUED]
        return min((s for s in statuses if s in order), key=order.index, default=JobStatus.QUEUED)

    def cancel(self) -> None:
        self._job_set.cancel()


def _manager(manager: Any) -> Any:
    if manager is not None:
        return manager
    from qjm.jobmanager import JobManager

    return JobManager()


class ManagedSampler(BaseSamplerV2):
    """A Sampler V2 that runs its PUBs through qjm on another sampler.

    Args:
        sampler: the sampler that runs the jobs (any ``BaseSamplerV2``).
        manager: the :class:`~qjm.JobManager` whose store keeps the results (by default one on
            the default store, ``$QJM_HOME/jobsets.sqlite``).
        **limits: ``max_pubs_per_job``, ``max_executions_per_job``, ``max_shots_per_job``,
            ``max_workers``, ``name``, ``tags``: as for :meth:`JobManager.run`.
    """

    def __init__(self, sampler: Any, manager: Any = None, **limits: Any):
        self._sampler = sampler
        self._manager = _manager(manager)
        self._limits = dict(limits)

    @property
    def sampler(self) -> Any:
        return self._sampler

    @property
    def manager(self) -> Any:
        return self._manager

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> ManagedPrimitiveJob:
        options = {} if shots is None else {"shots": shots}
        job_set = self._manager.run(list(pubs), sampler=self._sampler, **self._limits, **options)
        return ManagedPrimitiveJob(job_set)


class ManagedEstimator(BaseEstimatorV2):
    """An Estimator V2 that runs its PUBs through qjm on another estimator.

    Args:
        estimator: the estimator that runs the jobs (any ``BaseEstimatorV2``).
        manager: the :class:`~qjm.JobManager` whose store keeps the results (by default one on
            the default store).
        **limits: ``max_pubs_per_job``, ``max_executions_per_job``, ``max_workers``, ``name``,
            ``tags``: as for :meth:`JobManager.run`.
    """

    def __init__(self, estimator: Any, manager: Any = None, **limits: Any):
        self._estimator = estimator
        self._manager = _manager(manager)
        self._limits = dict(limits)

    @property
    def estimator(self) -> Any:
        return self._estimator

    @property
    def manager(self) -> Any:
        return self._manager

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> ManagedPrimitiveJob:
        options = {} if precision is None else {"precision": precision}
        job_set = self._manager.run(
            list(pubs), estimator=self._estimator, **self._limits, **options
        )
        return ManagedPrimitiveJob(job_set)
