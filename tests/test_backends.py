"""Tests of the fault-injecting backends of qjm.testing (re-exported by tests/backends.py; they
use qiskit only, nothing else of qjm)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from backends import (
    HandoverBackend,
    OnceBackend,
    PartialFailBackend,
    SlowBackend,
    SubmitFailBackend,
    WrappedBackend,
)
from qiskit import QuantumCircuit
from qiskit.exceptions import QiskitError
from qiskit.providers import BackendV2, JobError, JobStatus, JobTimeoutError, JobV1
from qiskit.providers.basic_provider import BasicSimulator
from qiskit.result import Result


def make_circuits(n, prefix="c", qubits=3):
    out = []
    for i in range(n):
        qc = QuantumCircuit(qubits, qubits, name=f"{prefix}{i}")
        qc.h(range(qubits))
        if i % 2:
            qc.x(0)
        qc.measure(range(qubits), range(qubits))
        out.append(qc)
    return out


def reference(circuits, **options):
    return BasicSimulator().run(circuits, **options).result()


def test_wrapped_backend_is_a_transparent_backendv2():
    inner = BasicSimulator()
    backend = WrappedBackend(inner=inner, max_circuits=5)
    assert isinstance(backend, BackendV2)
    assert backend.target is inner.target
    assert backend.max_circuits == 5
    assert WrappedBackend().max_circuits is None
    for field in ("shots", "memory", "seed_simulator"):
        assert field in backend.options
    circuits = make_circuits(4)
    job = backend.run(circuits, shots=300, seed_simulator=11)
    assert isinstance(job, JobV1)
    assert job.status() == JobStatus.DONE
    result = job.result()
    assert isinstance(result, Result)
    assert result.job_id == job.job_id()
    expected = reference(circuits, shots=300, seed_simulator=11)
    for i, qc in enumerate(circuits):
        assert result.get_counts(qc.name) == expected.get_counts(i)
        assert result.get_memory(i) == expected.get_memory(i)
        assert sum(result.get_counts(i).values()) == 300
    single = backend.run(circuits[0], shots=10)
    assert len(single.result().results) == 1
    assert backend.run_calls == 2
    assert backend.submitted == [[c.name for c in circuits], [circuits[0].name]]
    assert backend.result_calls == 2 and job.result_calls == 1
    assert job.backend() is backend


def test_option_overrides_reach_the_inner_backend():
    backend = WrappedBackend(shots=7)
    assert backend.options.shots == 7
    assert backend.run(make_circuits(1)).result().results[0].shots == 7
    backend.set_options(shots=9)
    assert backend.run(make_circuits(1)).result().results[0].shots == 9
    assert backend.run(make_circuits(1), shots=3).result().results[0].shots == 3
    with pytest.raises(AttributeError):
        backend.set_options(shot=1)
    assert BasicSimulator().options.shots == 1024  # the inner class defaults are untouched


def test_max_circuits_is_enforced():
    backend = WrappedBackend(max_circuits=2)
    with pytest.raises(QiskitError, match="max_circuits"):
        backend.run(make_circuits(3))
    assert backend.run_calls == 1 and backend.submitted == [] and len(backend.refused) == 1
    assert backend.job_ids() == []
    backend.run(make_circuits(2))
    assert len(backend.job_ids()) == 1


def test_retrieve_job():
    backend = WrappedBackend()
    jobs = [backend.run(make_circuits(1, prefix=f"r{i}_")) for i in range(3)]
    for job in jobs:
        assert backend.retrieve_job(job.job_id()) is job
    assert sorted(backend.job_ids()) == sorted(j.job_id() for j in jobs)
    with pytest.raises(JobError):
        backend.retrieve_job("no-such-job")


def test_concurrent_runs_on_one_shared_simulator_keep_their_own_options():
    # BasicSimulator keeps shots/seed on the instance: without serialisation runs would mix.
    inner = BasicSimulator()
    backends = [WrappedBackend(inner=inner), SlowBackend(delay=0, inner=inner)]
    circuits = make_circuits(6, qubits=4)

    def run(i):
        job = backends[i % 2].run(circuits, shots=50 + i, seed_simulator=100 + i)
        return i, job.result()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(run, range(16)))
    for i, result in outcomes:
        expected = reference(circuits, shots=50 + i, seed_simulator=100 + i)
        for k in range(len(circuits)):
            assert result.get_counts(k) == expected.get_counts(k)


def test_aer_inner_backend():
    aer = pytest.importorskip("qiskit_aer")
    inner = aer.AerSimulator()
    backend = PartialFailBackend(fail_names={"c1"}, inner=inner)
    # AerSimulator builds a new Target on every access: compare contents
    assert backend.num_qubits == inner.num_qubits
    assert set(backend.operation_names) == set(inner.operation_names)
    circuits = make_circuits(3)
    job = backend.run(circuits, shots=200, seed_simulator=5, memory=True)
    result = job.result()
    direct = aer.AerSimulator().run(circuits, shots=200, seed_simulator=5, memory=True).result()
    assert result.get_counts(0) == direct.get_counts(0)
    assert result.get_memory(2) == direct.get_memory(2)
    assert result.results[1].success is False and result.success is False
    assert job.status() == JobStatus.ERROR


# ---------------------------------------------------------------------------- SlowBackend


def test_slow_status_transitions_and_blocking_result():
    backend = SlowBackend(delay=0.4)
    circuits = make_circuits(2)
    t0 = time.monotonic()
    job = backend.run(circuits, shots=100, seed_simulator=3)
    assert job.status() == JobStatus.QUEUED
    assert not job.in_final_state()
    time.sleep(0.25)
    assert job.status() == JobStatus.RUNNING
    result = job.result()
    elapsed = time.monotonic() - t0
    assert 0.35 <= elapsed < 1.0
    assert job.status() == JobStatus.DONE
    assert result.get_counts(1) == reference(circuits, shots=100, seed_simulator=3).get_counts(1)


def test_slow_result_timeout_then_success():
    backend = SlowBackend(delay=0.3)
    job = backend.run(make_circuits(1))
    t0 = time.monotonic()
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0.05)
    assert time.monotonic() - t0 < 0.2
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0)
    assert job.result(timeout=2).success
    assert job.result(timeout=0).success  # finished: timeout 0 no longer fails
    assert job.result_calls == 4 and backend.result_calls == 4


def test_slow_delay_per_job_and_manual_release():
    backend = SlowBackend(delay=lambda names: None if names[0].startswith("held") else 0.0)
    fast = backend.run(make_circuits(1, prefix="fast"))
    held = backend.run(make_circuits(1, prefix="held"))
    held2 = backend.run(make_circuits(1, prefix="held2_"))
    assert fast.status() == JobStatus.DONE
    time.sleep(0.05)
    assert held.status() == JobStatus.QUEUED
    with pytest.raises(JobTimeoutError):
        held.result(timeout=0.05)

    got = []
    waiter = threading.Thread(target=lambda: got.append(held.result()))
    waiter.start()
    time.sleep(0.05)
    assert not got
    held.release()
    waiter.join(2)
    assert got and got[0].success
    assert held.status() == JobStatus.DONE
    assert held2.status() == JobStatus.QUEUED
    backend.release_all()
    assert held2.status() == JobStatus.DONE


def test_slow_cancel_pending_and_finished():
    backend = SlowBackend(delay=0.3)
    pending = backend.run(make_circuits(1))
    assert pending.cancel() is True
    assert pending.status() == JobStatus.CANCELLED
    assert pending.cancelled() and pending.in_final_state()
    with pytest.raises(JobError, match="cancelled"):
        pending.result()
    time.sleep(0.35)
    assert pending.status() == JobStatus.CANCELLED  # stays cancelled after its delay
    assert pending.cancel() is False

    finished = SlowBackend(delay=0).run(make_circuits(1))
    assert finished.cancel() is False
    assert finished.status() == JobStatus.DONE
    assert finished.result().success


def test_slow_cancel_wakes_a_blocked_result():
    job = SlowBackend(delay=None).run(make_circuits(1))
    errors = []

    def wait():
        try:
            job.result()
        except JobError as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    assert job.cancel() is True
    waiter.join(2)
    assert not waiter.is_alive() and time.monotonic() - t0 < 0.5
    assert len(errors) == 1 and not isinstance(errors[0], JobTimeoutError)


def test_slow_status_from_many_threads_while_result_waits():
    backend = SlowBackend(delay=0.3)
    jobs = [backend.run(make_circuits(2, prefix=f"j{i}_")) for i in range(4)]
    seen = set()
    lock = threading.Lock()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            for job in jobs:
                status = job.status()
                with lock:
                    seen.add(status)

    pollers = [threading.Thread(target=poll) for _ in range(6)]
    for t in pollers:
        t.start()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda j: j.result(), jobs))
    time.sleep(0.02)
    stop.set()
    for t in pollers:
        t.join()
    assert all(r.success for r in results)
    assert {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE} <= seen
    assert all(j.status() == JobStatus.DONE for j in jobs)


# ------------------------------------------------------------------------- HandoverBackend


def test_handover_each_result_call_takes_handover():
    backend = HandoverBackend(handover=0.2)
    job = backend.run(make_circuits(2), shots=64, seed_simulator=1)
    assert job.status() == JobStatus.DONE
    for _ in range(2):
        t0 = time.monotonic()
        result = job.result()
        assert 0.19 <= time.monotonic() - t0 < 0.5
    assert result.get_counts(0) == reference(
        make_circuits(2), shots=64, seed_simulator=1
    ).get_counts(0)
    assert job.result_calls == 2
    t0 = time.monotonic()
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0.05)
    assert 0.04 <= time.monotonic() - t0 < 0.15


def test_handover_parallel_fetch_takes_handover_times_n_over_w():
    handover, n, workers = 0.2, 8, 4
    backend = HandoverBackend(handover=handover)
    jobs = [backend.run(make_circuits(1, prefix=f"h{i}_")) for i in range(n)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda j: j.result(), jobs))
    elapsed = time.monotonic() - t0
    assert all(r.success for r in results)
    assert handover * n / workers * 0.95 <= elapsed < handover * n / workers + 0.25
    assert backend.max_results_in_flight == workers
    assert backend.results_in_flight == 0 and backend.result_calls == n


def test_handover_per_job_callable():
    backend = HandoverBackend(handover=lambda names: 0.15 if names[0] == "slow0" else 0.0)
    quick = backend.run(make_circuits(1, prefix="quick"))
    slow = backend.run(make_circuits(1, prefix="slow"))
    t0 = time.monotonic()
    quick.result()
    assert time.monotonic() - t0 < 0.1
    slow.result()
    assert time.monotonic() - t0 >= 0.15


# ----------------------------------------------------------------------- SubmitFailBackend


def test_submit_fail_by_name_and_predicate():
    backend = SubmitFailBackend(fail_names={"bad"}, fail_if=lambda cs: len(cs) == 3)
    good = make_circuits(2)
    bad = QuantumCircuit(1, 1, name="bad")
    bad.measure(0, 0)
    with pytest.raises(RuntimeError, match="submit refused"):
        backend.run(good + [bad])
    with pytest.raises(RuntimeError, match="submit refused"):
        backend.run(bad)
    with pytest.raises(RuntimeError, match="submit refused"):
        backend.run(make_circuits(3))
    job = backend.run(good)
    assert job.result().success
    assert backend.run_calls == 4
    assert backend.refused == [["c0", "c1", "bad"], ["bad"], ["c0", "c1", "c2"]]
    assert backend.submitted == [["c0", "c1"]]
    assert backend.job_ids() == [job.job_id()]


# ---------------------------------------------------------------------- PartialFailBackend


def test_partial_fail_result_has_failed_and_real_experiments():
    circuits = make_circuits(5)
    backend = PartialFailBackend(fail_names={"c1", "c3"})
    job = backend.run(circuits, shots=256, seed_simulator=42, memory=True)
    assert job.status() == JobStatus.ERROR
    result = job.result()
    assert isinstance(result, Result)
    assert result.success is False
    assert result.status.startswith("ERROR")
    assert result.job_id == job.job_id()
    assert [e.success for e in result.results] == [True, False, True, False, True]
    expected = reference(circuits, shots=256, seed_simulator=42, memory=True)
    for i in (0, 2, 4):
        assert result.get_counts(i) == expected.get_counts(i)
        assert result.get_counts(circuits[i].name) == expected.get_counts(i)
        assert result.get_memory(i) == expected.get_memory(i)
    for i in (1, 3):
        exp = result.results[i]
        assert exp.status.startswith("ERROR:")
        assert exp.data.to_dict() == {}
        assert not hasattr(exp.data, "counts") and not hasattr(exp.data, "memory")
        assert exp.header["name"] == circuits[i].name and exp.shots == 256
        with pytest.raises(QiskitError):
            result.get_counts(i)
    assert job.result() is result  # built once, same object on later calls
    # the failure survives a round trip through to_dict, as a store would do
    again = Result.from_dict(result.to_dict())
    assert [e.success for e in again.results] == [True, False, True, False, True]


def test_partial_fail_job_without_failing_names_is_plain():
    backend = PartialFailBackend(fail_names={"zzz"})
    job = backend.run(make_circuits(2))
    assert job.status() == JobStatus.DONE
    result = job.result()
    assert result.success is True and all(e.success for e in result.results)


def test_partial_fail_raise_unless_partial():
    backend = PartialFailBackend(fail_names={"c0"}, raise_unless_partial=True)
    job = backend.run(make_circuits(2))
    with pytest.raises(JobError, match="partial=True"):
        job.result()
    result = job.result(partial=True)
    assert [e.success for e in result.results] == [False, True]
    ok = backend.run(make_circuits(1, prefix="ok"))
    assert ok.result().success


# ----------------------------------------------------------------------------- OnceBackend


def test_once_result_is_served_once():
    before = OnceBackend.total_results_served
    backend = OnceBackend()
    circuits = make_circuits(2)
    job = backend.run(circuits, shots=128, seed_simulator=9)
    first = job.result()
    assert first.get_counts(1) == reference(circuits, shots=128, seed_simulator=9).get_counts(1)
    for _ in range(2):
        with pytest.raises(JobError, match="result already consumed"):
            job.result()
    assert job.status() == JobStatus.DONE
    other = backend.run(circuits)
    other.result()
    assert backend.results_served == 2
    assert OnceBackend.total_results_served - before == 2
    assert backend.result_calls == 4 and job.result_calls == 3


def test_once_concurrent_callers_exactly_one_wins():
    backend = OnceBackend(inner=SlowBackend(delay=0.1))
    job = backend.run(make_circuits(1))
    assert job.status() == JobStatus.QUEUED  # status comes from the slow inner job

    def fetch(_):
        try:
            return job.result()
        except JobError as exc:
            return exc

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(fetch, range(8)))
    assert sum(isinstance(o, Result) for o in outcomes) == 1
    assert sum(isinstance(o, JobError) for o in outcomes) == 7
    assert backend.results_served == 1
    assert job.status() == JobStatus.DONE


def test_once_timeout_does_not_consume():
    backend = OnceBackend(inner=SlowBackend(delay=0.2))
    job = backend.run(make_circuits(1))
    with pytest.raises(JobTimeoutError):
        job.result(timeout=0.02)
    assert job.result().success
    with pytest.raises(JobError, match="consumed"):
        job.result()
    assert backend.results_served == 1
