"""A backend that serves given results: the reference side of the differential tests.

``ResultBackend`` is a real :class:`qiskit.providers.BackendV2` (not a mock) whose jobs are real
:class:`qiskit.providers.JobV1` objects.  It is built from a mapping of circuit name to the
``ExperimentResult`` that a circuit of that name should produce, plus the job-level fields of the
``Result`` (``backend_name``, ``backend_version``, ``date``, ``status``, ``header``, any extra
metadata).  ``run(circuits)`` makes a job whose ``result()`` is a fresh ``qiskit.result.Result``
holding deep copies of the experiment results of exactly the submitted circuits, in the submitted
order, so a job manager that splits the circuits into several jobs gets each job's own slice.

Bookkeeping: ``run_calls``, ``submitted`` (the circuit names of every job, in creation order),
``result_calls`` (every ``result()`` call on any job of this backend), ``retrieve_job(job_id)``
and ``job_ids()``.  Thread safe.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Mapping
from typing import Any

from qiskit.circuit import QuantumCircuit
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.result.models import ExperimentResult
from qiskit.transpiler import Target

__all__ = ["ResultBackend", "ResultJob"]

_SERIAL = itertools.count()


class ResultJob(JobV1):
    """A job of :class:`ResultBackend`: final at once, its result built on every ``result()``."""

    def __init__(self, backend: ResultBackend, job_id: str, circuit_names: list[str]):
        super().__init__(backend, job_id)
        self.circuit_names = list(circuit_names)
        self.result_calls = 0
        self._lock = threading.Lock()

    def submit(self) -> None:
        """Jobs are submitted by ``backend.run``; this is a no-op."""
        return None

    def status(self) -> JobStatus:
        return self._backend.job_status

    def cancel(self) -> bool:
        return False

    def result(self, timeout: float | None = None, **kwargs: Any) -> Result:
        with self._lock:
            self.result_calls += 1
        return self._backend._result_for(self.job_id(), self.circuit_names)


class ResultBackend(BackendV2):
    """A ``BackendV2`` whose jobs return the given experiment results.

    Args:
        experiments: circuit name -> the ``ExperimentResult`` of that circuit.
        backend_name: the backend's name, and the ``backend_name`` of every ``Result``.
        backend_version: likewise ``backend_version``.
        success: ``Result.success`` of every job; None: whether every experiment in the job
            succeeded.
        job_status: what ``status()`` of every job says (default DONE).
        date, status, header: the job-level ``Result`` fields.
        **result_metadata: extra ``Result`` fields (kept in ``Result._metadata``).
    """

    def __init__(
        self,
        experiments: Mapping[str, ExperimentResult],
        backend_name: str = "result_backend",
        backend_version: str = "0.1.0",
        success: bool | None = None,
        job_status: JobStatus = JobStatus.DONE,
        date: Any = None,
        status: Any = None,
        header: dict | None = None,
        **result_metadata: Any,
    ):
        super().__init__(name=backend_name, backend_version=backend_version)
        self._experiments = {name: copy.deepcopy(exp) for name, exp in experiments.items()}
        self._success = success
        self.job_status = job_status
        self._date = date
        self._status = status
        self._header = copy.deepcopy(header)
        self._result_metadata = copy.deepcopy(result_metadata)
        self._target = Target(num_qubits=1)
        self._lock = threading.Lock()
        self._jobs: dict[str, ResultJob] = {}
        self._serial = next(_SERIAL)
        self.run_calls = 0
        self.submitted: list[list[str]] = []
        self.result_calls = 0

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, memory=False)

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    def run(self, run_input: Any, **options: Any) -> ResultJob:
        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        names = []
        for circuit in circuits:
            if not isinstance(circuit, QuantumCircuit):
                raise TypeError(f"ResultBackend.run takes QuantumCircuits, got {circuit!r}")
            if circuit.name not in self._experiments:
                raise ValueError(
                    f"ResultBackend has no result for a circuit named {circuit.name!r}"
                )
            names.append(circuit.name)
        with self._lock:
            self.run_calls += 1
            job_id = f"result-backend-{self._serial}-job-{len(self._jobs)}"
            job = ResultJob(self, job_id, names)
            self._jobs[job_id] = job
            self.submitted.append(names)
        return job

    def retrieve_job(self, job_id: str) -> ResultJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise ValueError(f"ResultBackend has no job {job_id!r}")
        return job

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def _result_for(self, job_id: str, names: list[str]) -> Result:
        with self._lock:
            self.result_calls += 1
        results = [copy.deepcopy(self._experiments[name]) for name in names]
        success = self._success
        if success is None:
            success = all(getattr(exp, "success", False) for exp in results)
        return Result(
            backend_name=self.name,
            backend_version=self.backend_version,
            job_id=job_id,
            success=success,
            results=results,
            date=copy.deepcopy(self._date),
            status=copy.deepcopy(self._status),
            header=copy.deepcopy(self._header),
            **copy.deepcopy(self._result_metadata),
        )
