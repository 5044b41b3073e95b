"""The store: where job sets live, what survives a process, and concurrent use of one file.

Many tests here hand a job set to a new Python process (``run_python`` in conftest.py) that
retrieves it by id from the same SQLite file and pickles what it reads back to the test.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from backends import OnceBackend, PartialFailBackend, SubmitFailBackend, WrappedBackend
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.exceptions import QiskitError
from qiskit.providers import JobStatus

import qjm
from qjm import JobManager


def snapshot(results, n: int) -> dict:
    """Everything readable from ``results`` for experiments ``0..n-1``, as plain picklable data.

    A missing experiment (``ManagedResultDataNotAvailable``) reads as ``"missing"``; any other
    error propagates. Memory and statevector are None when the experiment has none.
    """
    experiments = []
    for i in range(n):
        try:
            counts = dict(results.get_counts(i))
        except qjm.ManagedResultDataNotAvailable:
            experiments.append("missing")
            continue
        try:
            memory = list(results.get_memory(i))
        except qjm.ManagedResultDataNotAvailable:
            raise
        except QiskitError:
            memory = None
        try:
            statevector = tuple(np.asarray(results.get_statevector(i)).tolist())
        except qjm.ManagedResultDataNotAvailable:
            raise
        except QiskitError:
            statevector = None
        experiments.append({"counts": counts, "memory": memory, "statevector": statevector})
    return {
        "success": bool(results.success),
        "job_set_id": results.job_set_id,
        "backend_name": results.backend_name,
        "experiments": experiments,
    }


# A child process: retrieve job sets by id (argv: store, out-file, id[:partial], ...) with no
# backend, read their results and pickle the snapshots (a list, in argument order) to out-file.
RETRIEVE_AND_DUMP = r"""
import pickle, sys
import qjm
from test_store import n_experiments, snapshot

store, out, *specs = sys.argv[1:]
manager = qjm.JobManager(store=store)
dumps = []
for spec in specs:
    set_id, _, partial = spec.partition(":")
    job_set = manager.retrieve_job_set(set_id)
    results = job_set.results(partial=partial == "partial")
    dumps.append(snapshot(results, n_experiments(job_set)))
with open(out, "wb") as f:
    pickle.dump(dumps, f)
"""


def retrieve_in_child(run_python, tmp_path, store, *specs) -> list[dict]:
    out = tmp_path / f"dump-{os.urandom(4).hex()}.pickle"
    run_python(RETRIEVE_AND_DUMP, store, out, *specs)
    with open(out, "rb") as f:
        return pickle.load(f)


def n_experiments(job_set) -> int:
    return sum(mj.end_index - mj.start_index + 1 for mj in job_set.managed_jobs() if mj.part == 0)


# --------------------------------------------------------------------------------------------
# 1. Where the store is
# --------------------------------------------------------------------------------------------


def test_default_store_is_under_qjm_home_read_when_the_manager_is_created(
    tmp_path, monkeypatch, qjm_home
):
    # qjm is imported long before this test runs; the variable changes only now
    later = tmp_path / "set-after-import"
    monkeypatch.setenv("QJM_HOME", str(later))
    assert not (later / "jobsets.sqlite").exists()
    manager = JobManager()
    assert (later / "jobsets.sqlite").is_file()
    assert os.path.samefile(manager.store_path, later / "jobsets.sqlite")
    assert not (qjm_home / "jobsets.sqlite").exists()

    # and a manager created after another change follows that one
    again = tmp_path / "changed-again"
    monkeypatch.setenv("QJM_HOME", str(again))
    JobManager()
    assert (again / "jobsets.sqlite").is_file()


def test_memory_store_creates_no_file_and_keeps_nothing(
    tmp_path, monkeypatch, qjm_home, make_circuits
):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    manager = JobManager(store=":memory:")
    job_set = manager.run(make_circuits(4), backend=WrappedBackend(), shots=20, name="mem")
    assert job_set.results().success
    assert [s.job_set_id() for s in manager.job_sets()] == [job_set.job_set_id()]
    assert list(cwd.iterdir()) == []
    assert not qjm_home.exists()
    # another in-memory manager sees nothing of the first
    assert JobManager(store=":memory:").job_sets() == []
    with pytest.raises(qjm.JobManagerUnknownJobSet):
        JobManager(store=":memory:").retrieve_job_set(job_set.job_set_id())


# --------------------------------------------------------------------------------------------
# 2. Listing job sets, this process's and earlier ones'
# --------------------------------------------------------------------------------------------

MAKE_SET = r"""
import json, sys
import qjm
from backends import WrappedBackend
from conftest import _make_circuits

store, name = sys.argv[1:3]
manager = qjm.JobManager(store=store)
job_set = manager.run(_make_circuits(7, prefix="child"),
                      backend=WrappedBackend(name="child-backend"), name=name,
                      tags=["from-child", "x"], max_experiments_per_job=3, shots=50)
assert job_set.results().success
print(json.dumps({"id": job_set.job_set_id(),
                  "job_ids": [mj.job_id for mj in job_set.managed_jobs()]}))
manager.shutdown()
"""


def test_job_sets_lists_this_and_earlier_processes_sets(tmp_path, run_python, make_circuits):
    store = tmp_path / "s.sqlite"
    manager = JobManager(store=store)
    assert manager.job_sets() == []

    mine = manager.run(
        make_circuits(5),
        backend=WrappedBackend(name="mine-backend"),
        name="alpha",
        tags=["t1"],
        max_experiments_per_job=2,
        shots=30,
    )
    mine.results()
    other = manager.run(
        make_circuits(2, prefix="o"), backend=WrappedBackend(), name="beta", shots=30
    )
    other.results()
    child = json.loads(run_python(MAKE_SET, store, "alpha").stdout.strip().splitlines()[-1])

    # the same manager (created before the child ran) sees the child's set
    listed = manager.job_sets()
    ids = [s.job_set_id() for s in listed]
    assert ids == [mine.job_set_id(), other.job_set_id(), child["id"]]  # oldest first
    assert [s.job_set_id() for s in manager.job_sets(name="alpha")] == [
        mine.job_set_id(),
        child["id"],
    ]
    assert [s.job_set_id() for s in manager.job_sets(name="beta")] == [other.job_set_id()]
    assert manager.job_sets(name="gamma") == []

    # a fresh manager on the same file sees all three, with what the store recorded
    fresh = {s.job_set_id(): s for s in JobManager(store=store).job_sets()}
    assert set(fresh) == set(ids)
    theirs = fresh[child["id"]]
    assert theirs.name() == "alpha"
    assert theirs.tags() == ["from-child", "x"]
    assert theirs.backend_name() == "child-backend"
    assert [mj.job_id for mj in theirs.managed_jobs()] == child["job_ids"]
    assert len(child["job_ids"]) == 3 and all(child["job_ids"])
    assert theirs.statuses() == [JobStatus.DONE] * 3

    ours = fresh[mine.job_set_id()]
    assert ours is not mine
    assert (ours.name(), ours.tags(), ours.backend_name()) == ("alpha", ["t1"], "mine-backend")
    assert [mj.job_id for mj in ours.managed_jobs()] == [mj.job_id for mj in mine.managed_jobs()]
    assert len(ours.managed_jobs()) == 3


# --------------------------------------------------------------------------------------------
# 3. Results retrieved in a new process, without a backend
# --------------------------------------------------------------------------------------------


def _statevector_circuits() -> list:
    out = []
    for i in range(2):
        q = QuantumRegister(3, "q")
        a, b = ClassicalRegister(1, "a"), ClassicalRegister(2, "b")
        qc = QuantumCircuit(q, a, b, name=f"sv{i}")
        qc.h(0)
        qc.cx(0, 1)
        qc.rx(0.3 + i, 2)
        qc.save_statevector()
        qc.measure(range(3), range(3))
        out.append(qc)
    return out


def test_results_retrieved_in_new_process_without_backend_are_the_same(
    tmp_path, run_python, aer, make_circuits
):
    from qiskit_aer import AerSimulator

    store = tmp_path / "s.sqlite"
    manager = JobManager(store=store)
    circuits = make_circuits(10, qubits=4, seed=3)
    options = dict(shots=200, memory=True, seed_simulator=11)
    counts_set = manager.run(circuits, backend=aer, max_experiments_per_job=4, **options)
    sv_set = manager.run(
        _statevector_circuits(),
        backend=AerSimulator(method="statevector"),
        shots=64,
        memory=True,
        seed_simulator=5,
    )
    here = snapshot(counts_set.results(), 10)
    here_sv = snapshot(sv_set.results(), 2)
    assert len(counts_set.managed_jobs()) == 3
    assert here["success"] and here_sv["success"]

    # the results read in this process are the backend's own (job 0 rerun directly)
    direct = AerSimulator().run(circuits[:4], **options).result()
    for k in range(4):
        assert here["experiments"][k]["counts"] == direct.get_counts(k)
        assert here["experiments"][k]["memory"] == direct.get_memory(k)
    # two registers: keys and memory carry the space between them
    first = here["experiments"][0]
    assert all(" " in key for key in first["counts"])
    assert len(first["memory"]) == 200 and all(" " in m for m in first["memory"])
    assert here_sv["experiments"][0]["statevector"] is not None
    assert len(here_sv["experiments"][0]["statevector"]) == 8

    there, there_sv = retrieve_in_child(
        run_python, tmp_path, store, counts_set.job_set_id(), sv_set.job_set_id()
    )
    assert there == here
    assert there_sv == here_sv
    assert there["backend_name"] == aer.name


# --------------------------------------------------------------------------------------------
# 4. One-shot results: each job's result is read from the backend exactly once
# --------------------------------------------------------------------------------------------

ONCE_CHILD = r"""
import json, pickle, sys
from backends import OnceBackend
import qjm
from test_store import snapshot

store, set_id, out = sys.argv[1:4]
backend = OnceBackend()
job_set = qjm.JobManager(store=store).retrieve_job_set(set_id, backend=backend)
first = snapshot(job_set.results(), 9)
second = snapshot(job_set.results(), 9)
with open(out, "wb") as f:
    pickle.dump([first, second], f)
print(json.dumps({"served": backend.results_served, "result_calls": backend.result_calls,
                  "run_calls": backend.run_calls,
                  "total_served": OnceBackend.total_results_served}))
"""


def test_once_backend_results_are_read_once_and_served_from_the_store(
    tmp_path, run_python, make_circuits
):
    store = tmp_path / "s.sqlite"
    backend = OnceBackend()
    manager = JobManager(store=store)
    job_set = manager.run(
        make_circuits(9),
        backend=backend,
        max_experiments_per_job=3,
        shots=100,
        seed_simulator=5,
        memory=True,
    )
    first = snapshot(job_set.results(), 9)
    second = snapshot(job_set.results(), 9)
    assert first["success"]
    assert first == second
    assert backend.results_served == 3
    assert backend.result_calls == 3  # never asked again, not even to fail

    # a second manager on the same file, in this process, with the same backend
    again = JobManager(store=store).retrieve_job_set(job_set.job_set_id(), backend=backend)
    assert again is not job_set
    assert snapshot(again.results(), 9) == first
    assert backend.results_served == 3
    assert backend.result_calls == 3

    # a new process, no backend
    (there,) = retrieve_in_child(run_python, tmp_path, store, job_set.job_set_id())
    assert there == first

    # a new process with a fresh OnceBackend: it is never asked
    out = tmp_path / "once-child.pickle"
    proc = run_python(ONCE_CHILD, store, job_set.job_set_id(), out)
    counters = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counters == {"served": 0, "result_calls": 0, "run_calls": 0, "total_served": 0}
    with open(out, "rb") as f:
        child_first, child_second = pickle.load(f)
    assert child_first == first
    assert child_second == first
    assert backend.results_served == 3


# --------------------------------------------------------------------------------------------
# 5. Unknown ids
# --------------------------------------------------------------------------------------------


def test_retrieve_unknown_id_raises_unknown_job_set(tmp_path, make_circuits):
    manager = JobManager(store=tmp_path / "s.sqlite")
    manager.run(make_circuits(2), backend=WrappedBackend(), shots=10).results()
    with pytest.raises(qjm.JobManagerUnknownJobSet) as info:
        manager.retrieve_job_set("nope")
    assert isinstance(info.value, QiskitError)
    assert isinstance(info.value, qjm.JobManagerError)
    assert "nope" in str(info.value)
    assert issubclass(qjm.JobManagerUnknownJobSet, QiskitError)
    assert qjm.IBMQJobManagerUnknownJobSet is qjm.JobManagerUnknownJobSet


# --------------------------------------------------------------------------------------------
# 6. Concurrent use of one store file
# --------------------------------------------------------------------------------------------

CONCURRENT_CHILD = r"""
import json, sys
import qjm
from backends import WrappedBackend
from conftest import _make_circuits

store, tag, n_sets = sys.argv[1], sys.argv[2], int(sys.argv[3])
manager = qjm.JobManager(store=store)
print("ready", flush=True)
sys.stdin.readline()  # wait for "go", so that both children and the parent write at once
made = []
for k in range(n_sets):
    job_set = manager.run(_make_circuits(24, prefix=f"{tag}-{k}-"), backend=WrappedBackend(),
                          name=tag, max_experiments_per_job=2, max_workers=4, shots=20)
    results = job_set.results()
    assert results.success, job_set.error_messages()
    made.append([job_set.job_set_id(), len(job_set.managed_jobs())])
manager.shutdown()
print(json.dumps(made), flush=True)
"""


def test_two_processes_and_several_threads_share_one_store(tmp_path, subprocess_env, make_circuits):
    store = tmp_path / "s.sqlite"
    JobManager(store=store)  # create the file (and its WAL mode) once, up front
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CHILD, str(store), f"proc{p}", "3"],
            env=subprocess_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(2)
    ]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line.strip() == "ready", child.stderr.read()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()

        shared = JobManager(store=store)
        made: list[tuple[str, int]] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def one_set(t: int) -> None:
            try:
                # half the threads share a manager, half have their own connection to the file
                manager = shared if t % 2 else JobManager(store=store)
                job_set = manager.run(
                    make_circuits(24, prefix=f"thread{t}-"),
                    backend=WrappedBackend(),
                    name=f"thread{t}",
                    max_experiments_per_job=2,
                    max_workers=4,
                    shots=20,
                )
                results = job_set.results()
                assert results.success, job_set.error_messages()
                with lock:
                    made.append((job_set.job_set_id(), len(job_set.managed_jobs())))
            except BaseException as exc:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(exc)

        threads = [threading.Thread(target=one_set, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert errors == []

        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert "locked" not in err.lower(), err
        made += [tuple(x) for x in json.loads(out.strip().splitlines()[-1])]

    assert len(made) == 2 * 3 + 6
    assert all(n_jobs == 12 for _, n_jobs in made)
    listed = {s.job_set_id(): s for s in JobManager(store=store).job_sets()}
    assert set(listed) == {set_id for set_id, _ in made}
    for set_id, n_jobs in made:
        job_set = listed[set_id]
        assert len(job_set.managed_jobs()) == n_jobs
        assert all(mj.job_id for mj in job_set.managed_jobs())
        assert job_set.statuses() == [JobStatus.DONE] * n_jobs
        assert job_set.results().success
        assert job_set.error_messages() is None
    assert len(JobManager(store=store).job_sets(name="proc0")) == 3
    assert len(JobManager(store=store).job_sets(name="thread3")) == 1


# --------------------------------------------------------------------------------------------
# 7. A partially failed job, retrieved in another process
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raise_unless_partial",
    [False, True],
    ids=["result-with-failures", "ibm-style-raise-unless-partial"],
)
def test_partial_failure_is_stored(tmp_path, run_python, make_circuits, raise_unless_partial):
    store = tmp_path / "s.sqlite"
    backend = PartialFailBackend(fail_names={"c4"}, raise_unless_partial=raise_unless_partial)
    job_set = JobManager(store=store).run(
        make_circuits(9),
        backend=backend,
        max_experiments_per_job=3,
        shots=100,
        memory=True,
        seed_simulator=2,
    )
    whole = snapshot(job_set.results(), 9)
    partial = snapshot(job_set.results(partial=True), 9)
    assert backend.result_calls == 3  # the failed job's result was fetched once, then kept
    assert whole["success"] is False
    assert [i for i, e in enumerate(whole["experiments"]) if e == "missing"] == [3, 4, 5]
    assert partial["success"] is False
    assert [i for i, e in enumerate(partial["experiments"]) if e == "missing"] == [4]
    assert job_set.statuses() == [JobStatus.DONE, JobStatus.ERROR, JobStatus.DONE]

    there_whole, there_partial = retrieve_in_child(
        run_python, tmp_path, store, job_set.job_set_id(), f"{job_set.job_set_id()}:partial"
    )
    assert there_whole == whole
    assert there_partial == partial

    # and the missing experiment raises ManagedResultDataNotAvailable (checked in this process on
    # a set loaded only from the store)
    retrieved = JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    results = retrieved.results()
    for key in ("c3", "c4", "c5", 4):
        with pytest.raises(qjm.ManagedResultDataNotAvailable):
            results.get_counts(key)
    assert (
        dict(retrieved.results(partial=True).get_counts("c5"))
        == partial["experiments"][5]["counts"]
    )
    with pytest.raises(qjm.ManagedResultDataNotAvailable):
        retrieved.results(partial=True).get_memory("c4")
    assert "c4" in retrieved.error_messages()


# --------------------------------------------------------------------------------------------
# 8. A refused submission, retrieved later
# --------------------------------------------------------------------------------------------

SUBMIT_FAIL_CHILD = r"""
import json, sys
import qjm

store, set_id = sys.argv[1:3]
job_set = qjm.JobManager(store=store).retrieve_job_set(set_id)
results = job_set.results()
missing = []
for i in range(9):
    try:
        results.get_counts(i)
    except qjm.ManagedResultDataNotAvailable:
        missing.append(i)
print(json.dumps({
    "statuses": [None if s is None else s.name for s in job_set.statuses()],
    "errors": job_set.error_messages(),
    "success": results.success,
    "missing": missing,
    "job_ids": [mj.job_id for mj in job_set.managed_jobs()],
}))
"""


def test_refused_submission_is_stored(tmp_path, run_python, make_circuits):
    store = tmp_path / "s.sqlite"
    backend = SubmitFailBackend(fail_names={"c4"})
    job_set = JobManager(store=store).run(
        make_circuits(9), backend=backend, max_experiments_per_job=3, shots=50
    )
    results = job_set.results()
    assert results.success is False
    assert job_set.statuses() == [JobStatus.DONE, None, JobStatus.DONE]
    assert len(backend.refused) == 1

    child = json.loads(
        run_python(SUBMIT_FAIL_CHILD, store, job_set.job_set_id()).stdout.strip().splitlines()[-1]
    )
    assert child["statuses"] == ["DONE", None, "DONE"]
    assert child["success"] is False
    assert child["missing"] == [3, 4, 5]
    assert child["job_ids"][1] is None and child["job_ids"][0] and child["job_ids"][2]
    errors = child["errors"]
    assert errors is not None
    assert "submit refused" in errors and "'c4'" in errors
    # one line, for job 1 only
    assert len(errors.splitlines()) == 1 and errors.startswith("Job 1 ")
