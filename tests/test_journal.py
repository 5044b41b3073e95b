"""The journal: a process SIGKILLed while it submits leaves a set that a new process retrieves with
its real statuses, resumes, and completes with nothing run twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from qiskit_aer import AerSimulator

import qjm
from qjm.remote import RemoteBackend

CHILD = """
import sys, time
from conftest import _make_circuits
import qjm
from qjm.remote import RemoteBackend

url, token, store = sys.argv[1:4]
backend = RemoteBackend(url, token)
circuits = _make_circuits(60)
job_set = qjm.JobManager(store=store).run(
    circuits, backend=backend, max_experiments_per_job=3, max_workers=2, shots=50, seed_simulator=5
)
print(job_set.job_set_id(), flush=True)
time.sleep(600)
"""


def submitted_jobs(store) -> tuple[int, int]:
    """(jobs with a job id, jobs being submitted) in the store, read-only."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        with_id = conn.execute("SELECT COUNT(*) FROM jobs WHERE job_id IS NOT NULL").fetchone()[0]
        intent = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'SUBMITTING'").fetchone()[0]
    finally:
        conn.close()
    return with_id, intent


def test_sigkill_during_submission_then_retrieve_and_resume(
    tmp_path, server_factory, subprocess_env, make_circuits
):
    # every response 250 ms late: 20 jobs on 2 threads take about 2.5 s to submit
    server = server_factory("--latency-ms", "250")
    token = server.tokens["alice"]
    store = tmp_path / "s.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.url, token, str(store)],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job_set_id = child.stdout.readline().strip()
        assert job_set_id, child.stderr.read()
        for _ in range(600):  # bounded: at most 30 s
            with_id, intent = submitted_jobs(store)
            if with_id >= 6:
                break
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    with_id, intent = submitted_jobs(store)
    assert 6 <= with_id < 20, "the kill came too late to test anything"

    backend = RemoteBackend(server.url, token)
    job_set = qjm.JobManager(store=store).retrieve_job_set(job_set_id, backend=backend)
    statuses = job_set.statuses()
    known = sum(1 for s in statuses if s is not None)
    assert known == with_id  # the submitted jobs show their real status at once
    report = job_set.report(detailed=True)
    never = report.count("status: NOT SUBMITTED")
    uncertain = report.count("status: UNCERTAIN")
    assert never + uncertain + known == 20 and uncertain == intent and never > 0

    assert len(job_set.resume()) == never  # exactly the never-started jobs
    # an uncertain job that reached the service was found by its tag and reattached; the rest
    # never reached it, and are submitted again only on request
    left = [mj.index for mj in job_set.managed_jobs() if mj.uncertain]
    found = uncertain - len(left)
    if left:
        assert not job_set.results(timeout=300).success
        assert job_set.resume(resubmit_uncertain=True) == left
    results = job_set.results(timeout=300)
    assert results.success, job_set.error_messages()

    # every circuit ran in exactly one job on the service
    names = []
    for info in backend.jobs(limit=1000):
        names += [e["header"]["name"] for e in info.result().to_dict()["results"]]
    assert sorted(names) == sorted(f"c{i}" for i in range(60))
    # and the set equals one unsplit local run with the same seed
    local = AerSimulator().run(make_circuits(60), shots=50, seed_simulator=5).result()
    assert all(results.get_counts(i) == local.get_counts(i) for i in range(60))
    print(
        f"SIGKILL while submitting: {with_id} jobs submitted, {uncertain} uncertain ({found} "
        f"found by tag), {never} never started; after resume 60 of 60 experiments, each run once"
    )


def test_resume_needs_a_backend_and_stored_options(tmp_path, make_circuits):
    from backends import SubmitFailBackend

    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        make_circuits(4), backend=SubmitFailBackend(fail_names=("c3",)), max_experiments_per_job=2
    )
    job_set.jobs()
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert again.resume() == []  # a failed submission is not "never started": retry_failed()
    conn = sqlite3.connect(store)
    conn.execute("DELETE FROM jobs WHERE idx = 1")  # as if the process had died before job 1
    conn.commit()
    conn.close()
    later = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert "NOT SUBMITTED" in later.report()
    with pytest.raises(qjm.JobManagerInvalidStateError, match="needs the backend"):
        later.resume()


def test_service_down_while_a_client_submits_is_waited_out(tmp_path, server_factory, make_circuits):
    """qjm serve SIGKILLed while a client submits and started again 3 s later: the refused
    connections are retried (they started no job), nothing is lost, nothing runs twice."""
    import threading

    server = server_factory("--latency-ms", "100")
    backend = RemoteBackend(server.url, server.tokens["alice"], retries=0)
    circuits = make_circuits(60)
    policy = qjm.RetryPolicy(max_attempts=12, initial_delay=0.2, max_delay=2.0)
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        circuits,
        backend=backend,
        max_experiments_per_job=3,
        max_workers=2,
        shots=50,
        seed_simulator=5,
        retry=policy,
    )
    time.sleep(0.4)  # a few jobs are in
    server.kill()
    restarted = threading.Timer(3.0, server.start)
    restarted.start()
    try:
        results = job_set.results(timeout=120)
    finally:
        restarted.join()
    assert results.success, job_set.error_messages()
    retried = sum(
        1 for mj in job_set.managed_jobs() for _, _, what in mj.history if what and "submit" in what
    )
    names = []
    for info in backend.jobs(limit=1000):
        names += [e["header"]["name"] for e in info.result().to_dict()["results"]]
    assert sorted(names) == sorted(f"c{i}" for i in range(60))
    local = AerSimulator().run(circuits, shots=50, seed_simulator=5).result()
    assert all(results.get_counts(i) == local.get_counts(i) for i in range(60))
    print(
        f"service down 3 s during submission: {retried} refused submissions retried; "
        "60 of 60 experiments, each run once"
    )
