"""JobManager and ManagedJobSet against real simulators and the fault backends of tests/backends.py."""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np
import pytest
from backends import (
    HandoverBackend,
    OnceBackend,
    PartialFailBackend,
    SlowBackend,
    SubmitFailBackend,
    WrappedBackend,
)
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.exceptions import QiskitError
from qiskit.providers import JobStatus
from qiskit.providers.basic_provider import BasicSimulator
from qiskit_aer import AerSimulator

import qjm
from qjm.exceptions import (
    JobManagerError,
    JobManagerJobNotFound,
    JobManagerTimeoutError,
    ManagedResultDataNotAvailable,
)


def circuits(n: int, prefix: str = "c", qubits: int = 3) -> list[QuantumCircuit]:
    """Named circuits with two classical registers, each with different outcome statistics."""
    out = []
    for i in range(n):
        qr = QuantumRegister(qubits)
        a = ClassicalRegister(qubits - 1, "a")
        b = ClassicalRegister(1, "b")
        qc = QuantumCircuit(qr, a, b, name=f"{prefix}{i}")
        qc.h(0)
        qc.rx(0.3 + 0.1 * i, 1)
        qc.cx(0, 2)
        qc.measure(range(qubits - 1), a)
        qc.measure(qubits - 1, b[0])
        out.append(qc)
    return out


# -- splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, backend_limit, per_job, expected",
    [
        (25, None, 10, [(0, 9), (10, 19), (20, 24)]),
        (25, None, None, [(0, 24)]),
        (25, 7, None, [(0, 6), (7, 13), (14, 20), (21, 24)]),
        (25, 7, 10, [(0, 6), (7, 13), (14, 20), (21, 24)]),  # never raised above the backend's
        (25, 10, 4, [(0, 3), (4, 7), (8, 11), (12, 15), (16, 19), (20, 23), (24, 24)]),
        (1, None, 5, [(0, 0)]),
    ],
)
def test_splitting(manager, n, backend_limit, per_job, expected):
    backend = WrappedBackend(max_circuits=backend_limit)
    job_set = manager.run(circuits(n), backend=backend, max_experiments_per_job=per_job, shots=10)
    ranges = [(mj.start_index, mj.end_index) for mj in job_set.managed_jobs()]
    assert ranges == expected
    job_set.results()
    # the backend saw exactly those batches, in some order
    assert sorted(map(tuple, backend.submitted)) == sorted(
        tuple(f"c{i}" for i in range(a, b + 1)) for a, b in expected
    )
    k = expected[0][1] + 1
    for i in range(n):
        job, index = job_set.job(i)
        assert job is job_set.jobs()[i // k] and index == i % k


def test_single_circuit_accepted(manager):
    job_set = manager.run(circuits(1)[0], backend=BasicSimulator(), shots=20)
    assert sum(job_set.results().get_counts(0).values()) == 20


def test_submission_runs_concurrently_and_run_returns_at_once(manager):
    backend = SlowBackend(delay=None)  # jobs held until released
    t0 = time.monotonic()
    job_set = manager.run(circuits(8), backend=backend, max_experiments_per_job=1, max_workers=8)
    assert time.monotonic() - t0 < 2.0
    statuses = job_set.statuses()
    assert len(statuses) == 8
    assert all(s in (JobStatus.INITIALIZING, JobStatus.QUEUED) for s in statuses)
    backend.release_all()
    job_set.jobs()  # waits for submission
    backend.release_all()
    assert job_set.results(timeout=30).success


# -- results equal the jobs' own Result -------------------------------------------------------


@pytest.mark.parametrize("backend_factory", [AerSimulator, BasicSimulator])
def test_results_equal_the_jobs_own_result(manager, backend_factory):
    circs = circuits(23)
    job_set = manager.run(
        circs,
        backend=backend_factory(),
        max_experiments_per_job=5,
        shots=200,
        memory=True,
        seed_simulator=11,
    )
    results = job_set.results()
    assert results.success and results.job_set_id == job_set.job_set_id()
    assert results.backend_name == backend_factory().name
    for i, circuit in enumerate(circs):
        job, k = job_set.job(i)
        own = job.result()
        expected_counts = own.get_counts(k)
        for key in (i, circuit.name, circuit):
            assert results.get_counts(key) == expected_counts
        assert results.get_memory(i) == own.get_memory(k)
        assert " " in next(iter(expected_counts))  # register spacing is exercised
        data = results.data(i)
        assert data["counts"] == own.data(k)["counts"]
        assert data["memory"] == own.data(k)["memory"]
    all_counts = results.get_counts()
    assert isinstance(all_counts, list) and len(all_counts) == 23
    assert all_counts[7] == results.get_counts("c7")


def test_combine_results_in_submission_order(manager):
    circs = circuits(17)
    job_set = manager.run(
        circs,
        backend=AerSimulator(),
        max_experiments_per_job=4,
        shots=64,
        memory=True,
        seed_simulator=3,
    )
    combined = job_set.results().combine_results()
    assert [r.header["name"] for r in combined.results] == [c.name for c in circs]
    assert combined.success
    for i in range(17):
        job, k = job_set.job(i)
        assert combined.get_counts(i) == job.result().get_counts(k)
        assert combined.get_memory(circs[i].name) == job.result().get_memory(k)


def test_statevector_and_unitary(manager):
    sv = QuantumCircuit(2, name="sv")
    sv.h(0)
    sv.cx(0, 1)
    sv.save_statevector()
    job_set = manager.run([sv], backend=AerSimulator(method="statevector"))
    results = job_set.results()
    own = job_set.jobs()[0].result()
    np.testing.assert_allclose(results.get_statevector("sv"), own.get_statevector(0))
    np.testing.assert_allclose(
        results.get_statevector(0, decimals=2), own.get_statevector(0, decimals=2)
    )
    un = QuantumCircuit(2, name="u")
    un.h(0)
    un.save_unitary()
    results = manager.run([un], backend=AerSimulator(method="unitary")).results()
    np.testing.assert_allclose(
        np.asarray(results.get_unitary("u")),
        np.asarray(AerSimulator(method="unitary").run(un).result().get_unitary(0)),
    )
    with pytest.raises(QiskitError):
        results.get_statevector("u")


def test_unknown_experiment(manager):
    job_set = manager.run(circuits(3), backend=BasicSimulator(), shots=10)
    results = job_set.results()
    for bad in ("nope", 3, -4, 2.0, QuantumCircuit(1, name="other")):
        with pytest.raises(JobManagerJobNotFound):
            results.get_counts(bad)
    assert results.get_counts(-1) == results.get_counts(2)  # from the end, as qiskit reads it
    with pytest.raises(JobManagerJobNotFound):
        job_set.job("nope")
    assert issubclass(JobManagerJobNotFound, QiskitError)


def test_duplicate_names_are_an_error_by_name_only(manager):
    circs = circuits(3)
    circs[2].name = circs[0].name
    results = manager.run(circs, backend=BasicSimulator(), shots=10).results()
    with pytest.raises(JobManagerError, match="used by 2 circuits"):
        results.get_counts(circs[0].name)
    assert sum(results.get_counts(2).values()) == 10  # the index still works


# -- submit failures, cancel, partial --------------------------------------------------------


def test_submit_failure_of_one_job_does_not_stop_the_others(manager):
    backend = SubmitFailBackend(fail_names={"c12"})
    job_set = manager.run(circuits(25), backend=backend, max_experiments_per_job=10, shots=10)
    jobs = job_set.jobs()
    assert jobs[0] is not None and jobs[2] is not None and jobs[1] is None
    results = job_set.results()
    statuses = job_set.statuses()
    assert statuses[1] is None and statuses[0] == statuses[2] == JobStatus.DONE
    assert not results.success
    assert sum(results.get_counts(9).values()) == 10
    assert sum(results.get_counts(20).values()) == 10
    for i in (10, 15, 19):
        with pytest.raises(ManagedResultDataNotAvailable):
            results.get_counts(i)
    message = job_set.error_messages()
    assert "submit refused" in message and "experiments 10-19" in message
    report = job_set.report(detailed=True)
    assert "Failed jobs: 1" in report and "submit refused" in report
    assert job_set.job(12) == (None, 2)


def test_cancelled_job_experiments_are_unavailable(manager):
    backend = SlowBackend(delay=lambda names: 0.05 if "c0" in names else None)
    job_set = manager.run(circuits(6), backend=backend, max_experiments_per_job=3, shots=10)
    first = job_set.jobs()[0]
    deadline = time.monotonic() + 10
    while first.status() != JobStatus.DONE and time.monotonic() < deadline:
        time.sleep(0.01)
    job_set.cancel()  # the first job is done already; only the second is cancelled
    results = job_set.results(timeout=30)
    assert job_set.statuses() == [JobStatus.DONE, JobStatus.CANCELLED]
    assert not results.success
    assert sum(results.get_counts("c1").values()) == 10
    with pytest.raises(ManagedResultDataNotAvailable):
        results.get_counts("c4")
    assert "CANCELLED" in job_set.report()


@pytest.mark.parametrize("inner", [BasicSimulator, AerSimulator])
def test_partial(manager, inner):
    backend = PartialFailBackend(fail_names={"c5"}, inner=inner())
    job_set = manager.run(
        circuits(12), backend=backend, max_experiments_per_job=4, shots=50, seed_simulator=9
    )
    strict = job_set.results(partial=False)
    assert not strict.success
    for i in (4, 5, 6, 7):  # the whole failed job
        with pytest.raises(ManagedResultDataNotAvailable):
            strict.get_counts(i)
    assert sum(strict.get_counts(3).values()) == 50
    loose = job_set.results(partial=True)
    assert not loose.success
    with pytest.raises(ManagedResultDataNotAvailable):
        loose.get_counts("c5")
    job, k = job_set.job(6)
    assert loose.get_counts(6) == job.result().get_counts(k)
    assert job_set.statuses()[1] == JobStatus.ERROR
    assert "c5" in job_set.error_messages()
    with pytest.raises(ManagedResultDataNotAvailable):
        loose.combine_results()


# -- deadlines --------------------------------------------------------------------------------


def test_timeout_raises_within_deadline_and_a_later_call_completes(manager):
    backend = SlowBackend(delay=lambda names: 0.0 if "c0" in names else 1.5)
    job_set = manager.run(circuits(6), backend=backend, max_experiments_per_job=2, shots=10)
    job_set.jobs()
    t0 = time.monotonic()
    with pytest.raises(JobManagerTimeoutError) as info:
        job_set.results(timeout=0.3)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.0
    assert [m[0] for m in info.value.missing] == [1, 2]
    assert "job 1 (experiments 2-3)" in str(info.value)
    assert "job 2 (experiments 4-5)" in str(info.value)
    # the first job's result was kept: the next call asks only for the others
    calls_before = backend.result_calls
    results = job_set.results(timeout=30)
    assert results.success
    assert backend.result_calls - calls_before == 2
    again = job_set.results(timeout=0)
    assert again.success and backend.result_calls - calls_before == 2


def test_deadline_is_shared_by_all_jobs(manager):
    n, timeout = 6, 0.5
    backend = SlowBackend(delay=None)  # never finishes until released
    job_set = manager.run(circuits(n), backend=backend, max_experiments_per_job=1, max_workers=2)
    job_set.jobs()
    t0 = time.monotonic()
    with pytest.raises(JobManagerTimeoutError) as info:
        job_set.results(timeout=timeout)
    elapsed = time.monotonic() - t0
    assert elapsed < timeout + 0.5, f"{n} slow jobs took {elapsed:.2f}s for a {timeout}s deadline"
    assert len(info.value.missing) == n
    backend.release_all()
    assert job_set.results(timeout=30).success


def test_timeout_zero_does_not_wait(manager):
    backend = SlowBackend(delay=None)
    job_set = manager.run(circuits(2), backend=backend)
    job_set.jobs()
    t0 = time.monotonic()
    with pytest.raises(JobManagerTimeoutError):
        job_set.results(timeout=0)
    assert time.monotonic() - t0 < 0.2
    backend.release_all()
    assert job_set.results(timeout=30).success


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_bad_timeout(manager, bad):
    job_set = manager.run(circuits(1), backend=BasicSimulator(), shots=10)
    with pytest.raises(ValueError, match="timeout"):
        job_set.results(timeout=bad)


def test_results_are_fetched_in_parallel(manager):
    n, workers, handover = 8, 4, 0.4
    backend = HandoverBackend(handover=handover)
    job_set = manager.run(
        circuits(n), backend=backend, max_experiments_per_job=1, max_workers=workers, shots=10
    )
    job_set.jobs()
    t0 = time.monotonic()
    results = job_set.results()
    elapsed = time.monotonic() - t0
    assert results.success
    serial = handover * n
    assert elapsed < serial / 2, f"{elapsed:.2f}s: not parallel (one after another: {serial:.2f}s)"
    assert elapsed >= handover * n / workers * 0.9
    assert backend.max_results_in_flight == workers


def test_fetch_in_flight_at_the_deadline_is_kept(manager):
    backend = HandoverBackend(handover=0.8)
    job_set = manager.run(circuits(2), backend=backend, max_experiments_per_job=1, shots=10)
    job_set.jobs()
    with pytest.raises(JobManagerTimeoutError):
        job_set.results(timeout=0.2)
    time.sleep(1.0)  # the two hand-overs finish in the background
    t0 = time.monotonic()
    assert job_set.results(timeout=0).success
    assert time.monotonic() - t0 < 0.2
    assert backend.result_calls == 2  # not asked again


def test_one_shot_backend_is_read_once(manager):
    backend = OnceBackend(inner=AerSimulator())
    job_set = manager.run(
        circuits(9), backend=backend, max_experiments_per_job=3, shots=30, memory=True
    )
    first = job_set.results()
    second = job_set.results()
    assert backend.results_served == 3
    for i in range(9):
        assert first.get_counts(i) == second.get_counts(i)
        assert first.get_memory(i) == second.get_memory(i)
    refreshed = job_set.results(refresh=True)  # the backend refuses: what was fetched is kept
    assert refreshed.success and refreshed.get_counts(4) == first.get_counts(4)


def test_refresh_asks_the_backend_again(manager):
    backend = WrappedBackend()
    job_set = manager.run(circuits(4), backend=backend, max_experiments_per_job=2, shots=10)
    job_set.results()
    calls = backend.result_calls
    job_set.results()
    assert backend.result_calls == calls
    job_set.results(refresh=True)
    assert backend.result_calls == calls + 2


def test_keyboard_interrupt_cancels_pending_fetches(manager):
    backend = SlowBackend(delay=None)
    job_set = manager.run(circuits(4), backend=backend, max_experiments_per_job=1, max_workers=1)
    job_set.jobs()
    # a real Ctrl-C: SIGINT to this process while results() waits
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            job_set.results(timeout=5)
    finally:
        timer.cancel()
    futures = [mj.fetch_future for mj in job_set.managed_jobs() if mj.fetch_future is not None]
    # no look is left waiting to start (those read are let go; the others were cancelled)
    assert all(f.done() for f in futures if not f.running())
    backend.release_all()
    assert job_set.results(timeout=30).success


# -- bad input: a clear error, and the backend is never called --------------------------------


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (([],), {}, ValueError, "no circuits"),
        ((["not a circuit"],), {}, TypeError, r"circuits\[0\] is a str"),
        ((None,), {}, TypeError, "QuantumCircuit"),
        ((circuits(2),), {"max_experiments_per_job": 0}, ValueError, "max_experiments_per_job"),
        ((circuits(2),), {"max_experiments_per_job": 2.5}, TypeError, "max_experiments_per_job"),
        ((circuits(2),), {"max_experiments_per_job": True}, TypeError, "max_experiments_per_job"),
        ((circuits(2),), {"max_workers": 0}, ValueError, "max_workers"),
        ((circuits(2),), {"shot": 1000}, ValueError, "did you mean 'shots'"),
        ((circuits(2),), {"shots": 0}, ValueError, "shots"),
        ((circuits(2),), {"tags": "one"}, TypeError, "tags"),
        ((circuits(2),), {"max_shots_per_job": -3}, ValueError, "max_shots_per_job"),
    ],
)
def test_bad_input_before_anything_is_submitted(manager, args, kwargs, error, match):
    backend = WrappedBackend()
    with pytest.raises(error, match=match):
        manager.run(args[0], backend=backend, **kwargs)
    assert backend.run_calls == 0
    assert manager.job_sets() == []


def test_non_circuit_in_the_middle_submits_nothing(manager):
    backend = WrappedBackend()
    batch = circuits(5)
    batch.insert(3, "x")
    with pytest.raises(TypeError, match=r"circuits\[3\]"):
        manager.run(batch, backend=backend, max_experiments_per_job=1)
    assert backend.run_calls == 0


def test_aer_options_are_checked():
    backend = AerSimulator()
    m = qjm.JobManager(store=":memory:")
    with pytest.raises(ValueError, match="shot"):
        m.run(circuits(1), backend=backend, shot=100)
    # a field of backend.options and a parameter of backend.run are both accepted
    job_set = m.run(
        circuits(1), backend=backend, shots=10, method="statevector", parameter_binds=None
    )
    assert job_set.results().success


# -- porting from the old IBMQ job manager ----------------------------------------------------


def test_old_names_port_a_script():
    from qjm import (
        IBMQJobManager,
        IBMQJobManagerError,
        IBMQJobManagerInvalidStateError,
        IBMQJobManagerJobNotFound,
        IBMQJobManagerTimeoutError,
        IBMQJobManagerUnknownJobSet,
        IBMQManagedResultDataNotAvailable,
    )

    assert IBMQJobManager is qjm.JobManager
    for old, new in [
        (IBMQJobManagerError, qjm.JobManagerError),
        (IBMQJobManagerInvalidStateError, qjm.JobManagerInvalidStateError),
        (IBMQJobManagerJobNotFound, qjm.JobManagerJobNotFound),
        (IBMQJobManagerTimeoutError, qjm.JobManagerTimeoutError),
        (IBMQJobManagerUnknownJobSet, qjm.JobManagerUnknownJobSet),
        (IBMQManagedResultDataNotAvailable, qjm.ManagedResultDataNotAvailable),
    ]:
        assert old is new and issubclass(new, QiskitError) and issubclass(new, qjm.JobManagerError)
    # the old script, with only its import changed
    circs = circuits(10)
    job_manager = IBMQJobManager(store=":memory:")
    job_set = job_manager.run(
        circs,
        backend=AerSimulator(),
        name="foo",
        job_tags=["t"],
        max_experiments_per_job=3,
        shots=100,
        seed_simulator=42,
    )
    results = job_set.results()
    assert job_set.tags() == ["t"] and job_set.name() == "foo"
    direct = AerSimulator().run(circs[:3], shots=100, seed_simulator=42).result()
    assert results.get_counts(circs[1]) == direct.get_counts(1)
    assert "Job set name: foo" in job_manager.report()
