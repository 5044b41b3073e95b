"""What JobManager does for backends that sit behind a service: a busy service (retry after),
a payload limit per job, and jobs that hand over columnar results. Small real BackendV2
subclasses of tests/backends.py stand in for the service here; tests/test_remote.py runs the real one."""

from __future__ import annotations

import io
import threading
import time

import pytest
from backends import WrappedBackend, WrappedJob
from qiskit import QuantumCircuit, qpy
from qiskit.exceptions import QiskitError
from qiskit_aer import AerSimulator

import qjm
from qjm.exceptions import JobManagerTimeoutError
from qjm.records import decode_result


class Busy(QiskitError):
    def __init__(self, retry_after: float):
        super().__init__(f"busy, retry after {retry_after}")
        self.retry_after = retry_after


class BusyBackend(WrappedBackend):
    """Refuses the first ``busy`` run calls with a ``retry_after`` error, like an HTTP 429."""

    def __init__(self, busy: int, retry_after: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.busy = busy
        self.retry_after = retry_after
        self.refusals: list[float] = []
        self._busy_lock = threading.Lock()

    def run(self, run_input, **options):
        with self._busy_lock:
            if len(self.refusals) < self.busy:
                self.refusals.append(time.monotonic())
                raise Busy(self.retry_after)
        return super().run(run_input, **options)


def qpy_size(circuits) -> int:
    buffer = io.BytesIO()
    qpy.dump(list(circuits), buffer)
    return len(buffer.getvalue())


class PayloadLimitedBackend(WrappedBackend):
    """Accepts at most ``max_payload_bytes`` of QPY per job, like a service's 413."""

    def __init__(self, max_payload_bytes: int, **kwargs):
        super().__init__(**kwargs)
        self.max_payload_bytes = max_payload_bytes

    def payload_size(self, circuits, **run_options) -> int:
        return qpy_size(circuits)

    def run(self, run_input, **options):
        size = self.payload_size(run_input if isinstance(run_input, list) else [run_input])
        if size > self.max_payload_bytes:
            raise QiskitError(f"413: {size} bytes is over {self.max_payload_bytes}")
        return super().run(run_input, **options)


class ColumnarJob(WrappedJob):
    columnar_calls = 0

    def columnar_result(self):
        type(self).columnar_calls += 1
        return decode_result(self.inner_job.result())

    def _result(self, timeout):
        raise AssertionError("the manager should have used columnar_result()")


class ColumnarBackend(WrappedBackend):
    job_class = ColumnarJob

    def _make_job(self, inner_job, names):
        return ColumnarJob(self, inner_job, names)


def circuits(n: int, gates: int = 1) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qc = QuantumCircuit(2, 2, name=f"n{i}")
        for g in range(gates * (1 + i % 3)):
            qc.rx(0.01 * (g + i), 0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        out.append(qc)
    return out


def test_busy_backend_is_waited_for_not_failed(manager):
    backend = BusyBackend(busy=3, retry_after=0.1)
    job_set = manager.run(circuits(4), backend=backend, max_experiments_per_job=2, shots=10)
    results = job_set.results(timeout=30)
    assert results.success
    assert len(backend.refusals) == 3
    assert all(s is not None for s in job_set.statuses())


def test_waiting_on_a_busy_backend_counts_against_the_deadline(manager):
    backend = BusyBackend(busy=10**6, retry_after=0.2)
    job_set = manager.run(circuits(2), backend=backend, shots=10)
    t0 = time.monotonic()
    with pytest.raises(JobManagerTimeoutError, match="still being submitted"):
        job_set.results(timeout=0.5)
    assert time.monotonic() - t0 < 1.0
    job_set.cancel()  # stops the retries: the job is reported as never submitted
    assert job_set.statuses() == [None]
    assert "busy" in job_set.error_messages()


def test_jobs_are_split_by_payload_bytes(manager):
    circs = circuits(40, gates=20)
    limit = qpy_size(circs[:7])
    backend = PayloadLimitedBackend(max_payload_bytes=limit)
    job_set = manager.run(circs, backend=backend, max_experiments_per_job=30, shots=10)
    results = job_set.results(timeout=60)
    assert results.success, job_set.error_messages()
    jobs = job_set.managed_jobs()
    assert len(jobs) > 2  # 30 per job would be 2 jobs; the payload limit makes more
    assert all(mj.end_index - mj.start_index + 1 <= 30 for mj in jobs)
    assert [mj.start_index for mj in jobs[1:]] == [mj.end_index + 1 for mj in jobs[:-1]]
    for i in (0, 17, 39):
        job, k = job_set.job(i)
        assert results.get_counts(i) == job.result().get_counts(k)


def test_a_circuit_over_the_payload_limit_is_refused_before_submitting(manager):
    backend = PayloadLimitedBackend(max_payload_bytes=qpy_size(circuits(1)) + 10)
    with pytest.raises(ValueError, match="circuit 1 alone takes"):
        manager.run(circuits(1) + circuits(2, gates=400)[1:], backend=backend)
    assert backend.run_calls == 0


def test_columnar_results_are_used_without_decoding(manager):
    ColumnarJob.columnar_calls = 0
    backend = ColumnarBackend(inner=AerSimulator())
    job_set = manager.run(
        circuits(6), backend=backend, max_experiments_per_job=2, shots=50, seed_simulator=4
    )
    results = job_set.results()
    assert ColumnarJob.columnar_calls == 3
    direct = AerSimulator().run(circuits(6)[2:4], shots=50, seed_simulator=4).result()
    assert results.get_counts("n3") == direct.get_counts(1)


class BatchLookupBackend(WrappedBackend):
    """Looks many jobs up at once, like a service's ``GET /v1/jobs?id=...``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batch_lookups = 0

    def retrieve_jobs(self, job_ids):
        self.batch_lookups += 1
        return [self.retrieve_job(i) if i in self.job_ids() else None for i in job_ids]


def test_retrieved_set_reattaches_with_one_batch_lookup(tmp_path):
    store = tmp_path / "s.sqlite"
    backend = BatchLookupBackend(inner=AerSimulator())
    first = qjm.JobManager(store=store)
    job_set = first.run(circuits(6), backend=backend, max_experiments_per_job=2, shots=20)
    job_set.jobs()
    # a second manager (as in a new process) with nothing fetched yet
    second = qjm.JobManager(store=store)
    again = second.retrieve_job_set(job_set.job_set_id(), backend=backend, max_workers=3)
    results = again.results(timeout=30)
    assert results.success
    assert backend.batch_lookups == 1
    assert again._max_workers == 3
    for i in range(6):
        job, k = job_set.job(i)
        assert results.get_counts(i) == job.result().get_counts(k)


def test_retrieved_set_reattaches_job_by_job_on_the_pool(tmp_path):
    store = tmp_path / "s.sqlite"
    backend = WrappedBackend(inner=AerSimulator())
    job_set = qjm.JobManager(store=store).run(
        circuits(4), backend=backend, max_experiments_per_job=1, shots=20
    )
    job_set.jobs()
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), backend=backend)
    assert again.results(timeout=30).success
    assert [j.job_id() for j in again.jobs()] == [j.job_id() for j in job_set.jobs()]
