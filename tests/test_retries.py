"""Transient errors retried within the deadline, permanent ones not; nothing run twice; failed jobs
resubmitted on request."""

from __future__ import annotations

import pytest
from qiskit_aer import AerSimulator

import qjm
from qjm.retry import RetryPolicy, is_transient, never_sent
from qjm.testing import FlakyBackend, JobLimitBackend

FAST = RetryPolicy(max_attempts=12, initial_delay=0.005, max_delay=0.05)


def test_thirty_percent_transient_errors_complete_with_nothing_run_twice(make_circuits):
    backend = FlakyBackend(rate=0.3, seed=7, inner=AerSimulator())
    circuits = make_circuits(100)
    job_set = qjm.JobManager(store=":memory:").run(
        circuits, backend=backend, max_experiments_per_job=5, shots=20, retry=FAST
    )
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    submitted = [name for names in backend.submitted for name in names]
    assert sorted(submitted) == sorted(c.name for c in circuits)  # each circuit ran once
    assert backend.refusals > 0 and backend.dropped > 0
    report = job_set.report(detailed=True)
    assert "retry policy: up to 12 attempts" in report and "attempt at" in report
    print(
        f"30% transient: 20 jobs, {backend.refusals} refused submissions and "
        f"{backend.dropped} dropped transfers retried; 100 of 100 experiments, 0 run twice"
    )


def test_a_submission_that_may_have_reached_the_backend_is_not_sent_again(make_circuits):
    backend = FlakyBackend(rate=1.0, submit_error=TimeoutError, inner=AerSimulator())
    job_set = qjm.JobManager(store=":memory:").run(
        make_circuits(2), backend=backend, shots=10, retry=FAST
    )
    job_set.jobs()  # submission has ended
    assert job_set.statuses() == [None]
    assert backend.run_calls == 1  # a timeout is not retried by default
    assert "TimeoutError" in job_set.error_messages()
    asked = RetryPolicy(max_attempts=3, initial_delay=0.001, retry_on=(TimeoutError,))
    again = qjm.JobManager(store=":memory:").run(
        make_circuits(2), backend=backend, shots=10, retry=asked
    )
    again.jobs()
    assert backend.run_calls == 1 + 3  # the user asked for it: retried up to max_attempts


def test_permanent_errors_are_not_retried(make_circuits):
    backend = FlakyBackend(rate=1.0, submit_error=ValueError, inner=AerSimulator())
    job_set = qjm.JobManager(store=":memory:").run(
        make_circuits(2), backend=backend, shots=10, retry=FAST
    )
    job_set.jobs()
    assert backend.run_calls == 1 and "ValueError" in job_set.error_messages()


def test_retry_failed_resubmits_only_the_failed_jobs(make_circuits):
    backend = FlakyBackend(rate=0.0, inner=AerSimulator())
    circuits = make_circuits(6)
    refuse = {"c2", "c3"}
    backend.submit_error = RuntimeError
    plain_check = backend._check_submit

    def check(circs, names):
        if refuse & set(names):
            raise RuntimeError("invalid circuit (permanent)")
        plain_check(circs, names)

    backend._check_submit = check
    job_set = qjm.JobManager(store=":memory:").run(
        circuits, backend=backend, max_experiments_per_job=2, shots=10
    )
    first = job_set.results(timeout=60)
    assert first.missing() == [2, 3]
    refuse.clear()  # the user fixed what was wrong
    assert job_set.retry_failed() == [1]
    results = job_set.results(timeout=60)
    assert results.success
    assert sorted(len(n) for n in backend.submitted) == [2, 2, 2]  # job 0 and 2 not run again
    assert "retried: submission failed" in job_set.report(detailed=True)


def test_classification_of_errors():
    import requests

    assert is_transient(ConnectionRefusedError()) and never_sent(ConnectionRefusedError())
    assert is_transient(TimeoutError()) and not never_sent(TimeoutError())
    refused = requests.ConnectionError("x")
    refused.__cause__ = ConnectionRefusedError()
    assert never_sent(refused)
    assert not is_transient(ValueError("bad circuit"))

    class Http(Exception):
        def __init__(self, status):
            super().__init__(f"HTTP {status}")
            self.status_code = status

    assert is_transient(Http(503)) and is_transient(Http(429)) and is_transient(Http(500))
    assert not is_transient(Http(404)) and not is_transient(Http(401))
    assert never_sent(Http(429)) and not never_sent(Http(500))
    assert is_transient(RuntimeError("too many jobs pending, try again later"))
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(TypeError):
        qjm.JobManager(store=":memory:").run([], backend=AerSimulator(), retry=3)
    policy = RetryPolicy(initial_delay=1, max_delay=4)
    assert all(0 <= policy.delay(n) <= min(4, 2 ** (n - 1)) for n in range(1, 12))


def test_max_active_jobs_keeps_the_backend_under_its_limit(make_circuits):
    backend = JobLimitBackend(limit=3, delay=0.15, inner=AerSimulator())
    job_set = qjm.JobManager(store=":memory:").run(
        make_circuits(30),
        backend=backend,
        max_experiments_per_job=2,
        shots=10,
        max_active_jobs=3,
        retry=RetryPolicy(max_attempts=1),  # a refusal would be final: none may happen
    )
    waiting = sum(1 for s in job_set.statuses() if s == qjm.managedjob.JobStatus.INITIALIZING)
    assert waiting >= 12  # run() returned at once; most jobs wait for a slot
    import time

    for _ in range(600):  # the waiting jobs go in as others finish, without results() (<= 30 s)
        if len(backend.submitted) == 15:
            break
        time.sleep(0.05)
    assert len(backend.submitted) == 15
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    assert backend.most == 3 and len(backend.submitted) == 15
    print(f"max_active_jobs=3: 15 jobs, at most {backend.most} unfinished at once, 0 refused")


def test_without_max_active_jobs_the_limit_refuses_and_retries_wait(make_circuits):
    backend = JobLimitBackend(limit=3, delay=0.1, inner=AerSimulator())
    job_set = qjm.JobManager(store=":memory:").run(
        make_circuits(20),
        backend=backend,
        max_experiments_per_job=2,
        shots=10,
        retry=RetryPolicy(max_attempts=30, initial_delay=0.02, max_delay=0.2),
    )
    assert job_set.results(timeout=120).success, job_set.error_messages()
    assert backend.most <= 3 and len(backend.submitted) == 10
