"""The journal: a process SIGKILLed while it submits leaves a set that a new process retrieves with
its real statuses, resumes, and completes with nothing run twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from qiskit.providers import JobStatus
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


def kill_when(code: str, args: list[str], env: dict, ready, seconds: float = 30, poll=0.05) -> str:
    """Start ``python -c code *args``, read the job set id it prints, SIGKILL it as soon as
    ``ready()`` (or after ``seconds``), and return the id."""
    child = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job_set_id = child.stdout.readline().strip()
        assert job_set_id, child.stderr.read()
        for _ in range(int(seconds / poll)):  # bounded
            if ready():
                break
            time.sleep(poll)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
    return job_set_id


def test_sigkill_during_submission_then_retrieve_and_resume(
    tmp_path, server_factory, subprocess_env, make_circuits
):
    # every response 250 ms late: 20 jobs on 2 threads take about 2.5 s to submit
    server = server_factory("--latency-ms", "250")
    token = server.tokens["alice"]
    store = tmp_path / "s.sqlite"
    job_set_id = kill_when(
        CHILD,
        [server.url, token, str(store)],
        subprocess_env,
        lambda: submitted_jobs(store)[0] >= 6,
    )
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


FETCH_CHILD = """
import sys, time
from conftest import _make_circuits
import qjm
from qjm.remote import RemoteBackend
from qjm.store import Store

# a slow disk: each result takes 0.2 s to commit, so results read from the service wait there
_put = Store.put_outcome
def slow_put(self, *args, **kwargs):
    time.sleep(0.2)
    return _put(self, *args, **kwargs)
Store.put_outcome = slow_put

url, token, store = sys.argv[1:4]
backend = RemoteBackend(url, token)
job_set = qjm.JobManager(store=store).run(
    _make_circuits(60), backend=backend, max_experiments_per_job=3, max_workers=4, shots=50,
    seed_simulator=5,
)
print(job_set.job_set_id(), flush=True)
job_set.results(timeout=600)
time.sleep(600)
"""


def kept_results(store) -> int:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def test_sigkill_while_fetching_results_served_once_loses_none(
    tmp_path, server_factory, subprocess_env, make_circuits
):
    """A process fetching from a service that serves each result once is SIGKILLed while
    results are on their way to its store: the service holds each unconfirmed result under the
    dead reader's lease, and a new process reads them once the lease expires."""
    server = server_factory("--results-once", "--result-lease", "2")
    token = server.tokens["alice"]
    local = AerSimulator().run(make_circuits(60), shots=50, seed_simulator=5).result()
    totals = {"kept": 0, "held": 0, "lost": 0, "twice": 0}
    for trial in range(3):
        store = tmp_path / f"s{trial}.sqlite"
        job_set_id = kill_when(
            FETCH_CHILD,
            [server.url, token, str(store)],
            subprocess_env,
            lambda: kept_results(store) >= 3 + 3 * trial,  # noqa: B023 - called in this pass
        )
        kept = kept_results(store)
        backend = RemoteBackend(server.url, token)
        mine = [j for j in backend.jobs(limit=1000) if job_set_id in " ".join(j.tags())]
        held = sum(1 for j in mine if j.info()["result_held"])
        assert len(mine) == 20 and kept < 20, "the kill came too late to test anything"

        job_set = qjm.JobManager(store=store).retrieve_job_set(job_set_id, backend=backend)
        results = job_set.results(timeout=120)
        assert results.success, job_set.error_messages()
        lost = sum(1 for i in range(60) if results.get_counts(i) != local.get_counts(i))
        infos = [j.info() for j in backend.retrieve_jobs([j.job_id() for j in mine])]
        twice = sum(1 for info in infos if info["attempts"] != 1)
        assert lost == 0 and twice == 0
        # each confirmed after its commit: by the child, or by the new process for the results
        # the child committed but was killed before it confirmed them
        assert all(info["result_consumed"] for info in infos)
        for key, value in (("kept", kept), ("held", held), ("lost", lost), ("twice", twice)):
            totals[key] += value
        print(
            f"trial {trial}: SIGKILL with {kept} of 20 results kept, {held} read from the service "
            f"but not yet committed; a new process: 60 of 60 experiments, {lost} lost, {twice} "
            "run twice"
        )
    print(f"3 trials: {totals}")
    assert totals["held"] > 0, "no result was on its way at any kill: nothing was tested"


SAMPLER_CHILD = """
import sys, time
from conftest import _make_circuits
import qjm
from qiskit.primitives import StatevectorSampler

class SlowSampler(StatevectorSampler):
    # a sampler whose run() takes 0.3 s to hand back its job (a slow submission)
    def run(self, pubs, *, shots=None):
        time.sleep(0.3)
        return super().run(pubs, shots=shots)

store = sys.argv[1]
pubs = [(c,) for c in _make_circuits(12)]
job_set = qjm.JobManager(store=store).run(
    pubs, sampler=SlowSampler(seed=11), max_pubs_per_job=1, max_workers=2, shots=64
)
print(job_set.job_set_id(), flush=True)
time.sleep(600)
"""


def test_sigkill_while_submitting_sampler_pubs_then_resume_from_the_journal(
    tmp_path, subprocess_env, make_circuits
):
    """The journal keeps PUBs too: a set of sampler PUBs killed while submitting is finished
    in a new process from what the store recorded, and equals an uninterrupted run."""
    from qiskit.primitives import StatevectorSampler

    store = tmp_path / "s.sqlite"
    job_set_id = kill_when(
        SAMPLER_CHILD, [str(store)], subprocess_env, lambda: submitted_jobs(store)[0] >= 3
    )
    with_id, intent = submitted_jobs(store)
    assert 3 <= with_id < 12, "the kill came too late to test anything"

    # the same sampler class, in this process: a local sampler's jobs ended with the child
    job_set = qjm.JobManager(store=store).retrieve_job_set(
        job_set_id, sampler=StatevectorSampler(seed=11)
    )
    report = job_set.report(detailed=True)
    never = report.count("status: NOT SUBMITTED")
    assert never > 0 and report.count("status: UNCERTAIN") == intent
    resumed = job_set.resume(resubmit_uncertain=True)
    assert len(resumed) == never + intent
    retried = job_set.retry_failed()  # the jobs that died with the child's local sampler
    assert len(retried) == with_id
    assert sorted(resumed + retried) == list(range(12))
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    # the history is in the store: a new manager reading it sees each job's attempts
    again = qjm.JobManager(store=store).retrieve_job_set(job_set_id)
    history = again.report(detailed=True)
    assert history.count("retried:") == with_id and history.count("resumed:") == never + intent

    whole = qjm.JobManager().run(
        [(c,) for c in make_circuits(12)],
        sampler=StatevectorSampler(seed=11),
        max_pubs_per_job=1,
        shots=64,
    )
    expected = whole.results(timeout=120)
    assert all(
        results[i].join_data().get_counts() == expected[i].join_data().get_counts()
        for i in range(12)
    )
    print(
        f"SIGKILL while submitting 12 sampler PUBs: {with_id} submitted (lost with the child's "
        f"local sampler, run again by retry_failed), {intent} uncertain, {never} never started; "
        "after resume 12 of 12 PUBs, equal to an uninterrupted run"
    )


def test_a_retrieved_finished_set_asks_the_backend_only_when_told(tmp_path, make_circuits):
    """statuses(), report() and results() of a retrieved set whose results are kept make no
    backend call; jobs() and results(refresh=True) reattach its jobs."""
    from backends import WrappedBackend

    store = tmp_path / "s.sqlite"
    backend = WrappedBackend()
    job_set = qjm.JobManager(store=store).run(
        make_circuits(6), backend=backend, max_experiments_per_job=2, shots=20
    )
    job_set.results(timeout=60)
    calls = backend.result_calls
    looked_up = []
    backend.retrieve_job = lambda job_id, _own=backend.retrieve_job: (  # count look-ups
        looked_up.append(job_id) or _own(job_id)
    )
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), backend=backend)
    assert again.statuses() == [JobStatus.DONE] * 3
    again.report(detailed=True)
    assert again.results().success
    assert looked_up == [] and backend.result_calls == calls
    jobs = again.jobs()
    assert [j.job_id() for j in jobs] == [j.job_id() for j in job_set.jobs()]
    assert sorted(looked_up) == sorted(j.job_id() for j in jobs)
    assert again.results(refresh=True).success and backend.result_calls == calls + 3


def test_a_result_served_once_read_directly_is_confirmed_at_once(server_factory, make_circuits):
    """Outside the job manager, RemoteJob.result() confirms what it read (so a second reader
    gets 410 as before); columnar_result(confirm=False) leaves that to the caller."""
    from qjm.remote import ResultConsumedError

    server = server_factory("--results-once")
    backend = RemoteBackend(server.url, server.tokens["alice"])
    job = backend.run(make_circuits(2), shots=20, seed_simulator=1)
    assert job.result(timeout=60).success
    with pytest.raises(ResultConsumedError):
        backend.retrieve_job(job.job_id()).result(timeout=10)
    held = backend.run(make_circuits(2), shots=20, seed_simulator=1)
    held.columnar_result(timeout=60, confirm=False)
    assert backend.retrieve_job(held.job_id()).info()["result_held"]
    assert held.confirm_result() and held.confirm_result()  # twice is harmless
    assert backend.retrieve_job(held.job_id()).info()["result_consumed"]


KILLED_BEFORE_CONFIRM = """
import os, signal, sys
from conftest import _make_circuits
import qjm
from qjm.remote import RemoteBackend, RemoteJob

def die(self, kept=False):  # the process dies after its store committed, before it confirms
    os.kill(os.getpid(), signal.SIGKILL)
RemoteJob.confirm_result = die

url, token, store = sys.argv[1:4]
job_set = qjm.JobManager(store=store).run(
    _make_circuits(6), backend=RemoteBackend(url, token), max_experiments_per_job=3,
    max_workers=1, shots=50, seed_simulator=5,
)
print(job_set.job_set_id(), flush=True)
job_set.results(timeout=120)
"""


def test_a_result_committed_but_not_confirmed_is_confirmed_by_the_next_process(
    tmp_path, server_factory, subprocess_env, make_circuits
):
    server = server_factory("--results-once")  # a lease of 60 s: nobody waits for it here
    token = server.tokens["alice"]
    store = tmp_path / "s.sqlite"
    child = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_CONFIRM, server.url, token, str(store)],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    job_set_id = child.stdout.strip()
    assert kept_results(store) == 1
    backend = RemoteBackend(server.url, token)
    job_set = qjm.JobManager(store=store).retrieve_job_set(job_set_id, backend=backend)
    results = job_set.results(timeout=60)
    local = AerSimulator().run(make_circuits(6), shots=50, seed_simulator=5).result()
    assert all(results.get_counts(i) == local.get_counts(i) for i in range(6))
    infos = [j.info() for j in backend.retrieve_jobs([j.job_id() for j in job_set.jobs()])]
    assert [i["result_consumed"] for i in infos] == [True, True]
    print(
        "killed between commit and confirmation: the kept result was confirmed by the next "
        "process (without reading it again), the other read and confirmed; 6 of 6 experiments"
    )


def test_each_job_is_submitted_once_its_own_work_is_journaled_not_the_whole_set(
    tmp_path, make_circuits, monkeypatch
):
    """The journal is pipelined with submission: the first job goes to the backend while later
    jobs' work is still being written, and no job goes before its own work is committed (read
    on a connection of the backend's own, at each submission)."""
    from backends import WrappedBackend

    store = tmp_path / "s.sqlite"
    jobs, per_job = 6, 2

    class WatchedBackend(WrappedBackend):
        def __init__(self):
            super().__init__()
            self.first_submitted = threading.Event()
            self.seen: list[tuple[int, set[int]]] = []  # (job, jobs whose work is committed)

        def _check_submit(self, circuits, names):
            conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
            try:
                committed = {row[0] for row in conn.execute("SELECT idx FROM job_work")}
            finally:
                conn.close()
            with self._lock:
                self.seen.append((int(names[0][1:]) // per_job, committed))
            self.first_submitted.set()

    backend = WatchedBackend()
    manager = qjm.JobManager(store=store)
    record_work = manager._store.record_work

    def record_work_last_after_a_submission(job_set_id, works):
        if any(idx == jobs - 1 for idx, _ in works):
            # bounded: a journal written whole before the first submission waits here in vain
            backend.first_submitted.wait(20)
        record_work(job_set_id, works)

    monkeypatch.setattr(manager._store, "record_work", record_work_last_after_a_submission)
    job_set = manager.run(
        make_circuits(jobs * per_job),
        backend=backend,
        max_experiments_per_job=per_job,
        shots=20,
        seed_simulator=3,
    )
    assert job_set.results(timeout=120).success
    assert sorted(job for job, _ in backend.seen) == list(range(jobs))
    assert jobs - 1 not in backend.seen[0][1]  # submitted before the last job's work was in
    assert all(job in committed for job, committed in backend.seen)  # but never before its own
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert again.results().success


@pytest.mark.parametrize("bad", ["operation", "coupling"])
def test_a_bad_circuit_at_the_end_of_a_big_set_is_refused_with_nothing_submitted(
    tmp_path, make_circuits, bad
):
    """Every circuit is checked against the target before the first job is submitted, even
    though each job is then journaled and submitted on its own."""
    from backends import WrappedBackend
    from qiskit import QuantumCircuit, transpile
    from qiskit.circuit import Gate
    from qiskit.providers.fake_provider import GenericBackendV2

    if bad == "operation":
        backend = WrappedBackend()
        circuits = make_circuits(400)
        last = circuits[-1].copy(name="last")
        last.append(Gate("bogus", 1, []), [0])
        message = r"'last' \(circuits\[399\]\) holds 'bogus'.*Nothing was submitted"
    else:
        device = GenericBackendV2(3, coupling_map=[[0, 1], [1, 0], [1, 2], [2, 1]], seed=1)
        backend = WrappedBackend(device)
        circuits = transpile(make_circuits(400), device, seed_transpiler=1)
        last = QuantumCircuit(3, 3, name="last")
        last.cx(0, 2)
        last.measure(range(3), range(3))
        message = r"'last' \(circuits\[399\]\) applies 'cx' to qubits \(0, 2\).*Nothing was"
    circuits[-1] = last
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match=message):
        manager.run(circuits, backend=backend, max_experiments_per_job=2, shots=10)
    assert backend.run_calls == 0 and manager.job_sets() == []
    # without the bad circuit, the same set runs
    job_set = manager.run(circuits[:-1], backend=backend, max_experiments_per_job=50, shots=10)
    assert job_set.results(timeout=120).success and backend.run_calls == 8


DEEP = """
def deep_circuits(n, barriers=6000):
    # slow to write as QPY (thousands of instructions), quick to build (copies of one circuit)
    # and to simulate (barriers)
    from qiskit import QuantumCircuit
    from qiskit.circuit import CircuitInstruction
    from qiskit.circuit.library import RXGate

    base = QuantumCircuit(3, 3)
    base.rx(0.0, 0)
    base.h(1)
    base.cx(1, 2)
    for k in range(barriers):
        base.barrier(k % 3)
    base.measure(range(3), range(3))
    out = []
    for i in range(n):
        qc = base.copy(name=f"d{i}")
        qc.data[0] = CircuitInstruction(RXGate(0.01 * i), qc.data[0].qubits)
        out.append(qc)
    return out
"""

JOURNAL_CHILD = (
    DEEP
    + """
import sys, time
import qjm
from qjm.remote import RemoteBackend

url, token, store = sys.argv[1:4]
circuits = deep_circuits(200)
job_set = qjm.JobManager(store=store).run(
    circuits, backend=RemoteBackend(url, token), max_experiments_per_job=1, max_workers=2,
    shots=20, seed_simulator=5,
)
print(job_set.job_set_id(), flush=True)
time.sleep(600)
"""
)


def test_sigkill_while_the_journal_is_written_then_resume_with_the_circuits(
    tmp_path, server_factory, subprocess_env
):
    """Each job is journaled just before it is submitted, so a process killed in its first
    moments leaves jobs never started and never journaled: resume() says so and submits
    nothing; resume(circuits=...) checks the list and resumes them; every circuit runs once."""
    server = server_factory()
    token = server.tokens["alice"]
    store = tmp_path / "s.sqlite"
    job_set_id = kill_when(
        JOURNAL_CHILD,
        [server.url, token, str(store)],
        subprocess_env,
        lambda: submitted_jobs(store)[0] >= 1,
        poll=0.01,
    )
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    journaled = conn.execute("SELECT COUNT(*) FROM job_work").fetchone()[0]
    conn.close()
    with_id, intent = submitted_jobs(store)
    assert with_id >= 1 and journaled < 200, "the kill came too late to test anything"

    namespace: dict = {}
    exec(DEEP, namespace)  # noqa: S102 - the same circuits as the child's
    circuits = namespace["deep_circuits"](200)
    backend = RemoteBackend(server.url, token)
    job_set = qjm.JobManager(store=store).retrieve_job_set(job_set_id, backend=backend)
    with pytest.raises(qjm.JobManagerInvalidStateError, match=r"resume\(circuits=circuits\)"):
        job_set.resume()
    before = len(backend.jobs(limit=1000))
    with pytest.raises(ValueError, match=r"circuits\[0\] is 'd1'"):
        job_set.resume(circuits=circuits[1:] + circuits[:1])
    with pytest.raises(ValueError, match="199 circuits given"):
        job_set.resume(circuits=circuits[:-1])
    assert len(backend.jobs(limit=1000)) == before  # nothing was submitted by the refusals
    resumed = job_set.resume(circuits=circuits, resubmit_uncertain=True)
    assert len(resumed) >= 200 - with_id - intent
    results = job_set.results(timeout=300)
    assert results.success, job_set.error_messages()
    # 200 one-circuit jobs on the service, each circuit's result kept: each ran once
    assert len(backend.jobs(limit=1000)) == 200
    # the resumed jobs were journaled before they were submitted
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    assert conn.execute("SELECT COUNT(*) FROM job_work").fetchone()[0] == 200
    conn.close()
    local = AerSimulator().run(circuits[:20], shots=20, seed_simulator=5).result()
    assert all(results.get_counts(i) == local.get_counts(i) for i in range(20))
    print(
        f"SIGKILL while journaling: {journaled} of 200 jobs journaled, {with_id} submitted, "
        f"{intent} uncertain; resume() refused with nothing submitted; resume(circuits=...) "
        f"resumed {len(resumed)}; 200 of 200 experiments, each run once"
    )
