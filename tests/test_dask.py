"""qjm.DaskBackend / qjm.DaskSampler: job sets run as Dask tasks on worker processes.

The tests start their own clusters: a ``LocalCluster`` of two worker processes (one thread each)
shared by the module, and for the "multi-host" test a ``dask scheduler`` and two ``dask worker``
processes started as separate programs on 127.0.0.1, the client connecting by address. Every
wait is bounded, and every process started here is stopped here.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

import dask_helpers  # noqa: E402
from qiskit.providers import JobError, JobStatus  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402

import qjm  # noqa: E402
from qjm.dask import DaskBackend, DaskSampler, run_circuits_task  # noqa: E402
from qjm.exceptions import JobManagerTimeoutError  # noqa: E402

# the helpers travel to the workers by value: a worker needs nothing from tests/
cloudpickle.register_pickle_by_value(dask_helpers)

SHOTS = 200


def _wait(predicate, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=20)


@pytest.fixture
def client(cluster):
    client = distributed.Client(cluster, timeout=20)
    client.wait_for_workers(2, timeout=60)
    try:
        yield client
    finally:
        client.close(timeout=20)


def _counts_equal(results, reference, n: int) -> None:
    for i in range(n):
        assert results.get_counts(i) == reference.get_counts(i), f"experiment {i}"


# -- the extra ---------------------------------------------------------------------------------


def test_import_qjm_does_not_import_dask_and_without_it_says_what_to_install(run_python):
    code = """
import sys
import qjm
assert "distributed" not in sys.modules and "dask" not in sys.modules, "import qjm imported dask"
sys.modules["distributed"] = None          # as if qjm[dask] were not installed
try:
    qjm.DaskBackend
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("no ImportError")
"""
    out = run_python(code).stdout
    assert 'pip install "qjm[dask]"' in out


# -- what runs and what crosses ----------------------------------------------------------------


def test_results_equal_the_local_run_with_the_same_seed(client, make_circuits, tmp_path):
    circuits = make_circuits(45, qubits=4, seed=3)
    backend = DaskBackend(AerSimulator(), client)
    assert backend.target.operation_names == AerSimulator().target.operation_names
    assert backend.num_qubits == AerSimulator().num_qubits
    assert backend.options.shots == AerSimulator().options.shots
    manager = qjm.JobManager(store=tmp_path / "store.sqlite")
    job_set = manager.run(
        circuits,
        backend=backend,
        max_experiments_per_job=7,
        shots=SHOTS,
        memory=True,
        seed_simulator=1234,
    )
    results = job_set.results(timeout=120)
    reference = AerSimulator().run(circuits, shots=SHOTS, memory=True, seed_simulator=1234).result()
    assert results.success
    _counts_equal(results, reference, len(circuits))
    for i in (0, 20, 44):
        assert results.get_memory(i) == reference.get_memory(i)
    jobs = job_set.jobs()
    assert len(jobs) == 7
    # the job id is the task key; the scheduler held each task until the store had its result
    assert all(j.job_id().startswith("qjm-") for j in jobs)
    assert not set(backend.published_job_ids()) & {j.job_id() for j in jobs}
    assert all(s == JobStatus.DONE for s in job_set.statuses())
    # what crossed to this process: the columnar record, smaller than a pickled Result
    traffic = backend.traffic()
    assert traffic["tasks"] == 7
    pickled = len(pickle.dumps(reference))
    assert traffic["bytes_from_workers"] < pickled / 3, (traffic, pickled)
    # kept in the store: a new manager reads them back without the cluster
    again = qjm.JobManager(store=tmp_path / "store.sqlite").retrieve_job_set(job_set.job_set_id())
    _counts_equal(again.results(), reference, len(circuits))


def test_a_job_run_directly_and_the_worker_function(client, make_circuits):
    circuits = make_circuits(5, qubits=3, seed=9)
    backend = DaskBackend(AerSimulator(), client)
    job = backend.run(circuits, shots=100, seed_simulator=5)
    assert job.job_id() in backend.published_job_ids()
    result = job.result(timeout=60)  # read directly: unpublished at once
    assert job.job_id() not in backend.published_job_ids()
    assert result.job_id == job.job_id()
    reference = AerSimulator().run(circuits, shots=100, seed_simulator=5).result()
    assert [result.get_counts(i) for i in range(5)] == [reference.get_counts(i) for i in range(5)]
    assert job.status() == JobStatus.DONE and not job.cancel()
    # the record is kept as the bytes the worker sent (decoded experiment by experiment as read,
    # and stored as they are): the client neither decodes every experiment nor encodes again
    from qjm.records import PooledRecord
    from qjm.wire import encode_record

    record = job.columnar_result(timeout=60)
    assert isinstance(record, PooledRecord) and encode_record(record) is record.blob
    assert record.success and record.successes().tolist() == [True] * 5
    # the task function itself takes QPY and gives bytes (no pickles either way)
    import io

    from qiskit import qpy

    from qjm.dask import _blob, _unpack
    from qjm.wire import decode_record

    buf = io.BytesIO()
    qpy.dump(circuits, buf)
    token, blob = _blob(AerSimulator(), None)
    out = run_circuits_task(
        token, blob, buf.getvalue(), {"shots": 100, "seed_simulator": 5}, None, "k", True
    )
    assert isinstance(out, bytes) and out[:4] == b"QJMZ"
    record = decode_record(_unpack(out))
    assert record.to_result().get_counts(3) == reference.get_counts(3)


def test_a_failing_task_is_a_job_error(client, make_circuits, manager):
    backend = DaskBackend(
        AerSimulator(), client, factory=functools.partial(dask_helpers.failing, "no qubits today")
    )
    job_set = manager.run(make_circuits(4), backend=backend, max_experiments_per_job=2, shots=10)
    results = job_set.results(timeout=60)
    assert not results.success
    assert job_set.statuses() == [JobStatus.ERROR, JobStatus.ERROR]
    assert "no qubits today" in job_set.error_messages()
    with pytest.raises(JobError, match="no qubits today"):
        job_set.jobs()[0].result()


def test_dask_sampler_equals_the_local_sampler(client):
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit_aer.primitives import SamplerV2

    theta = Parameter("t")
    qc = QuantumCircuit(3)
    qc.h(0)
    qc.rx(theta, 1)
    qc.cx(0, 2)
    qc.measure_all()
    pubs = [(qc, np.linspace(0, np.pi, 4) + k) for k in range(6)]
    sampler = DaskSampler(SamplerV2(seed=7), client)
    job_set = qjm.JobManager(store=":memory:").run(
        pubs, sampler=sampler, shots=300, max_pubs_per_job=2
    )
    res = job_set.results(timeout=120)
    reference = SamplerV2(seed=7).run(pubs, shots=300).result()
    for i in range(len(pubs)):
        assert np.array_equal(res[i].data.meas.array, reference[i].data.meas.array), i
    assert all(j.job_id().startswith("qjm-") for j in job_set.jobs())
    assert not set(job_set.jobs()[0].job_id() for _ in [0]) & set(client.list_datasets())
    direct = sampler.run(pubs[:1], shots=300).result()
    assert np.array_equal(direct[0].data.meas.array, reference[0].data.meas.array)


def test_dask_estimator_equals_the_local_estimator(client):
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.primitives import StatevectorEstimator
    from qiskit.quantum_info import SparsePauliOp

    theta = Parameter("t")
    qc = QuantumCircuit(2)
    qc.ry(theta, 0)
    qc.cx(0, 1)
    pubs = [(qc, SparsePauliOp("ZZ"), np.linspace(0, 1, 5))]
    estimator = qjm.DaskEstimator(StatevectorEstimator(), client)
    res = (
        qjm.JobManager(store=":memory:")
        .run(pubs, estimator=estimator, max_executions_per_job=2)
        .results(timeout=60)
    )
    reference = StatevectorEstimator().run(pubs).result()
    assert np.allclose(res[0].data.evs, reference[0].data.evs)


def test_qjm_demo_and_qjm_serve_on_dask(cluster, client, tmp_path, server_factory, capsys):
    from qjm.cli import main
    from qjm.remote import RemoteBackend

    assert (
        main(
            [
                "--store",
                ":memory:",
                "demo",
                "--circuits",
                "40",
                "--dask",
                "1",
                "--max-experiments-per-job",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Running the jobs on the Dask cluster" in out and "40 of 40 available" in out

    server = server_factory("--dask", cluster.scheduler_address, "--workers", "2")
    remote = RemoteBackend(server.url, server.tokens["alice"])
    circuits = [c for c in _circuits(6)]
    with distributed.get_task_stream(client) as stream:
        results = (
            qjm.JobManager(store=":memory:")
            .run(circuits, backend=remote, max_experiments_per_job=3, shots=100, seed_simulator=4)
            .results(timeout=120)
        )
    reference = AerSimulator().run(circuits, shots=100, seed_simulator=4).result()
    _counts_equal(results, reference, 6)
    ran = [t["key"] for t in stream.data if str(t["key"]).startswith("qjm-")]
    assert len(ran) == 2, ran  # both jobs of the service ran as tasks on the cluster


def _circuits(n: int) -> list:
    from conftest import _make_circuits

    return _make_circuits(n, qubits=3, seed=21)


# -- faults --------------------------------------------------------------------------------------


def test_a_worker_killed_mid_set_loses_nothing(client, make_circuits, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    circuits = make_circuits(80, qubits=3, seed=5)
    backend = DaskBackend(
        AerSimulator(),
        client,
        factory=functools.partial(dask_helpers.slow_aer, 0.08, str(marks)),
    )
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        circuits, backend=backend, max_experiments_per_job=2, shots=SHOTS, seed_simulator=99
    )
    assert len(job_set.managed_jobs()) == 40
    # kill (SIGKILL) a worker process while it is running one of the set's tasks
    _wait(lambda: len(os.listdir(marks)) >= 6, 60, "six tasks to start")
    pids = client.run(os.getpid)
    busy = _wait(
        lambda: [a for a, keys in client.processing().items() if keys and a in pids],
        30,
        "a worker processing a task",
    )
    os.kill(pids[busy[0]], signal.SIGKILL)
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    reference = AerSimulator().run(circuits, shots=SHOTS, seed_simulator=99).result()
    _counts_equal(results, reference, len(circuits))
    for i in range(len(circuits)):
        assert sum(results.get_counts(i).values()) == SHOTS  # counted once
    ran = dask_helpers.runs(str(marks))
    assert set(ran) == {c.name for c in circuits[::2]}
    assert len(ran) > 40  # the task cut off by the kill ran again elsewhere
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker


def test_cancel_cancels_pending_tasks(client, make_circuits, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    backend = DaskBackend(
        AerSimulator(), client, factory=functools.partial(dask_helpers.slow_aer, 0.6, str(marks))
    )
    job_set = qjm.JobManager(store=":memory:").run(
        make_circuits(12), backend=backend, max_experiments_per_job=1, shots=10
    )
    _wait(lambda: len(os.listdir(marks)) >= 2, 60, "two tasks to start")
    job_set.cancel()
    statuses = job_set.statuses()  # None: cancelled before it was submitted
    assert set(statuses) <= {JobStatus.CANCELLED, None}, statuses
    assert statuses.count(JobStatus.CANCELLED) >= 2, statuses
    time.sleep(1.5)  # what was running finishes; nothing pending starts
    assert len(os.listdir(marks)) <= 4
    ids = {j.job_id() for j in job_set.jobs() if j is not None}
    assert not ids & set(backend.published_job_ids())
    results = job_set.results(timeout=30)
    assert not results.success


def test_a_second_process_retrieves_the_set_by_id(
    cluster, client, make_circuits, tmp_path, run_python
):
    store = tmp_path / "shared.sqlite"
    address = cluster.scheduler_address
    submit = """
import functools, sys
import cloudpickle, distributed
import dask_helpers
cloudpickle.register_pickle_by_value(dask_helpers)
from qiskit_aer import AerSimulator
import qjm
from conftest import _make_circuits
client = distributed.Client(sys.argv[1], timeout=20)
backend = qjm.DaskBackend(AerSimulator(), client, factory=functools.partial(dask_helpers.slow_aer, 0.8))
manager = qjm.JobManager(store=sys.argv[2])
job_set = manager.run(_make_circuits(24, seed=4), backend=backend,
    max_experiments_per_job=2, shots=150, seed_simulator=8)
job_set.jobs()                       # every job submitted (and published)
print(job_set.job_set_id(), flush=True)
manager.shutdown()                   # the store has every job id
client.close()                       # gone without fetching a single result
"""
    job_set_id = run_python(submit, address, store, timeout=60).stdout.split()[-1]
    retrieve = """
import json, sys
import distributed
from qiskit_aer import AerSimulator
import qjm
client = distributed.Client(sys.argv[1], timeout=20)
job_set = qjm.JobManager(store=sys.argv[2]).retrieve_job_set(
    sys.argv[3], backend=qjm.DaskBackend(AerSimulator(), client))
at_first = [j.status().name for j in job_set.jobs()]   # reattached to the held tasks
results = job_set.results(timeout=60)
print(json.dumps({"success": results.success, "at_first": at_first,
                  "counts": [results.get_counts(i) for i in range(24)]}))
client.close()
"""
    out = json.loads(
        run_python(retrieve, address, store, job_set_id, timeout=90).stdout.splitlines()[-1]
    )
    assert out["success"]
    assert "DONE" in out["at_first"] or "RUNNING" in out["at_first"], out["at_first"]
    assert set(out["at_first"]) != {"DONE"}, "every task had finished before the new process"
    reference = AerSimulator().run(make_circuits(24, seed=4), shots=150, seed_simulator=8).result()
    assert out["counts"] == [reference.get_counts(i) for i in range(24)]
    # the second process confirmed every result: nothing of the set is left published
    retrieved = qjm.JobManager(store=store).retrieve_job_set(job_set_id)
    ids = {mj.job_id for mj in retrieved.managed_jobs()}
    assert len(ids) == 12 and all(i.startswith("qjm-") for i in ids)
    assert not ids & set(client.list_datasets())


# -- a cluster of separate processes, as on several hosts ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def test_multi_host_cluster_and_a_scheduler_that_goes_away(make_circuits, tmp_path, subprocess_env):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    dask_cli = [sys.executable, "-m", "dask"]
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                dask_cli
                + ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                env=subprocess_env,
                stdout=subprocess.DEVNULL,
                stderr=open(logs / "scheduler.log", "w"),
            )
        )
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    dask_cli
                    + ["worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"],
                    env=subprocess_env,
                    stdout=subprocess.DEVNULL,
                    stderr=open(logs / f"worker{i}.log", "w"),
                )
            )
        client = _wait(lambda: _connect(address), 60, "the scheduler", step=0.3)
        try:
            client.wait_for_workers(2, timeout=60)
            circuits = make_circuits(30, qubits=3, seed=11)
            backend = DaskBackend(AerSimulator(), client)
            manager = qjm.JobManager(store=tmp_path / "s.sqlite")
            job_set = manager.run(
                circuits, backend=backend, max_experiments_per_job=5, shots=SHOTS, seed_simulator=3
            )
            results = job_set.results(timeout=120)
            reference = AerSimulator().run(circuits, shots=SHOTS, seed_simulator=3).result()
            _counts_equal(results, reference, len(circuits))
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2

            # the scheduler goes away while a set runs: the results kept so far stay, every
            # other job is an ERROR saying so
            slow = DaskBackend(
                AerSimulator(), client, factory=functools.partial(dask_helpers.slow_aer, 0.5)
            )
            job_set = manager.run(
                circuits, backend=slow, max_experiments_per_job=3, shots=SHOTS, seed_simulator=3
            )
            with pytest.raises(JobManagerTimeoutError):
                job_set.results(timeout=1.8)
            kept = [i for i, mj in enumerate(job_set.managed_jobs()) if mj.outcome is not None]
            assert kept and len(kept) < 10
            procs[0].kill()
            procs[0].wait(timeout=10)
            results = job_set.results(timeout=60, partial=True)
            assert not results.success
            statuses = job_set.statuses()
            for i, status in enumerate(statuses):
                assert status == (JobStatus.DONE if i in kept else JobStatus.ERROR), (i, statuses)
            for i in kept:
                for k in range(3 * i, 3 * i + 3):
                    assert results.get_counts(k) == reference.get_counts(k)
            errors = job_set.error_messages()
            assert "connection to the Dask scheduler" in errors and address in errors
            lost = next(j for i, j in enumerate(job_set.jobs()) if i not in kept)
            with pytest.raises(JobError, match="connection to the Dask scheduler"):
                lost.result(timeout=5)
        finally:
            client.close(timeout=5)
    finally:
        _stop(procs)


def _connect(address: str):
    try:
        return distributed.Client(address, timeout=2)
    except OSError:
        return None
