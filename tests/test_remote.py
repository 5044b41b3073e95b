"""Tests of ``qjm.remote.RemoteBackend`` against real ``qjm serve`` processes, alone and under
``qjm.JobManager``."""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from qiskit import QuantumCircuit  # noqa: E402
from qiskit.exceptions import QiskitError  # noqa: E402
from qiskit.providers import BackendV2, JobError, JobStatus, JobTimeoutError, JobV1  # noqa: E402
from qiskit.quantum_info import Statevector  # noqa: E402
from qiskit.result import Result  # noqa: E402
from qiskit_aer import AerSimulator  # noqa: E402
from servers import running_server  # noqa: E402

import qjm  # noqa: E402
from qjm.records import JobRecord, decode_result  # noqa: E402
from qjm.remote import (  # noqa: E402
    AuthenticationError,
    InvalidRequestError,
    JobNotFoundError,
    PayloadTooLargeError,
    RemoteBackend,
    RemoteJob,
    ResultConsumedError,
    ServiceBusyError,
    ServiceConnectionError,
)
from qjm.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(
        tmp_path_factory.mktemp("remote"), "--workers", "2", "--max-payload-bytes", "2000000"
    ) as s:
        yield s


@pytest.fixture
def alice(server):
    backend = RemoteBackend(server.url, server.tokens["alice"])
    yield backend
    backend.close()


def local_counts(circuits, chunk, **options):
    """The same circuits through JobManager on a local AerSimulator, same chunking and seeds."""
    manager = qjm.JobManager(store=":memory:")
    # one OpenMP thread: the same results (seeded), and no slowdown on a busy machine
    results = manager.run(
        circuits,
        backend=AerSimulator(max_parallel_threads=1),
        max_experiments_per_job=chunk,
        **options,
    ).results()
    manager.shutdown()
    return results


def wait_statuses(backend, job_ids, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        infos = {j.job_id(): j.info() for j in backend.jobs(limit=1000) if j.job_id() in job_ids}
        if predicate(infos):
            return infos
        assert time.monotonic() < deadline, infos
        time.sleep(0.05)


# -- the backend ------------------------------------------------------------------------------


def test_backend_describes_the_service(server, alice):
    assert isinstance(alice, BackendV2)
    assert alice.name == "aer_simulator"
    assert alice.max_circuits == 1000 and alice.max_shots == 100_000
    assert alice.max_payload_bytes == 2_000_000 and alice.max_pending_jobs == 32
    assert isinstance(alice.max_shots, int)
    assert alice.options.shots == 1024 and "seed_simulator" in alice.options
    assert "executor" not in alice.options  # the service sets it
    assert alice.target.num_qubits >= 20 and "cx" in alice.target.operation_names
    assert alice.num_qubits == alice.target.num_qubits
    pool = alice._session.get_adapter(server.url).poolmanager
    assert pool.connection_pool_kw["maxsize"] == 32


def test_manager_checks_run_options_against_the_service(alice, make_circuits):
    manager = qjm.JobManager(store=":memory:")
    with pytest.raises(ValueError, match="shot"):
        manager.run(make_circuits(2), backend=alice, shot=100)
    with pytest.raises(ValueError, match="executor"):
        manager.run(make_circuits(2), backend=alice, executor=None)


def test_wrong_token_and_unreachable_service(server):
    with pytest.raises(AuthenticationError, match="invalid token") as err:
        RemoteBackend(server.url, "not-a-token")
    assert isinstance(err.value, QiskitError) and err.value.status_code == 401
    with pytest.raises(ServiceConnectionError) as err:
        RemoteBackend("http://127.0.0.1:9", "t", timeout=(0.5, 1), retries=0)
    assert isinstance(err.value, JobError) and err.value.__cause__ is not None


def test_job_result_equals_the_backends_result(alice):
    qc = QuantumCircuit(3, 3, name="ghz")
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.save_statevector()
    qc.measure(range(3), range(3))
    other = QuantumCircuit(2, 2, name="x")
    other.x(1)
    other.measure([0, 1], [0, 1])
    options = dict(shots=300, memory=True, seed_simulator=11)
    job = alice.run([qc, other], **options)
    assert isinstance(job, RemoteJob) and isinstance(job, JobV1)
    result = job.result(timeout=60)
    local = AerSimulator().run([qc, other], **options).result()
    assert isinstance(result, Result)
    assert result.job_id == job.job_id()
    assert result.success and result.backend_name == local.backend_name
    assert result.get_counts() == local.get_counts()
    assert [result.get_memory(i) for i in range(2)] == [local.get_memory(i) for i in range(2)]
    for got, want in zip(result.results, local.results):
        assert got.header == want.header and got.success == want.success and got.shots == want.shots
        assert got.seed_simulator == want.seed_simulator
    sv = result.get_statevector(0)
    assert np.allclose(sv, local.get_statevector(0))
    assert isinstance(result.data(0)["statevector"], Statevector)
    assert result.data(0)["statevector"] == local.data(0)["statevector"]
    # the columnar form: the arrays decode_result makes of the backend's own Result
    record = job.columnar_result()
    assert isinstance(record, JobRecord)
    want = decode_result(local)
    for a, b in zip(record.experiments, want.experiments):
        assert a.width == b.width
        assert np.array_equal(a.counts[0], b.counts[0]) and a.counts[0].dtype == b.counts[0].dtype
        assert np.array_equal(a.counts[1], b.counts[1]) and a.counts[1].dtype == b.counts[1].dtype
        assert np.array_equal(a.memory, b.memory) and a.memory.dtype == b.memory.dtype
        assert a.memory.flags.writeable
    assert job.status() == JobStatus.DONE


def test_aer_save_instructions_survive_the_trip(alice):
    from qiskit.quantum_info import Pauli

    qc = QuantumCircuit(2, 2, name="saves")
    qc.h(0)
    qc.cx(0, 1)
    qc.save_statevector(label="sv_shots", pershot=True)
    qc.save_probabilities_dict([0, 1], label="p")
    qc.save_expectation_value(Pauli("ZZ"), [0, 1], label="zz")
    qc.save_amplitudes([0, 3], label="amps")
    qc.save_density_matrix([0], label="rho")
    qc.measure([0, 1], [0, 1])
    qc.save_statevector(label="after", conditional=True)
    options = dict(shots=5, seed_simulator=3)
    result = alice.run(qc, **options).result(timeout=60)
    local = AerSimulator().run(qc, **options).result()
    got, want = result.data(0), local.data(0)
    assert set(got) == set(want)
    for key in want:
        if key == "counts":
            assert got[key] == want[key]
        elif isinstance(want[key], dict) and key == "after":  # conditional: by memory value
            assert set(got[key]) == set(want[key])
            assert all(got[key][k] == want[key][k] for k in want[key])
        elif isinstance(want[key], list):  # per shot
            assert len(got[key]) == len(want[key]) == 5
            assert all(a == b for a, b in zip(got[key], want[key]))
        elif isinstance(want[key], dict):
            assert got[key] == pytest.approx(want[key])
        else:
            assert np.allclose(np.asarray(got[key]), np.asarray(want[key])), key
            assert type(got[key]) is type(want[key]), key


def test_wide_registers_travel_as_packed_rows(alice):
    qc = QuantumCircuit(70, 70, name="wide")
    qc.x([0, 3, 69])
    qc.measure(range(70), range(70))
    options = dict(shots=20, memory=True, seed_simulator=2, method="stabilizer")
    result = alice.run(qc, **options).result(timeout=60)
    local = AerSimulator().run(qc, **options).result()
    assert result.get_counts() == local.get_counts()
    assert result.get_memory() == local.get_memory()


def test_retrieve_list_and_cancel(server, alice, make_circuits):
    job = alice.run(make_circuits(2), shots=10, tags=["retrieve-me", "x"])
    again = alice.retrieve_job(job.job_id())
    assert again.job_id() == job.job_id() and again.tags() == ["retrieve-me", "x"]
    assert again.result(timeout=60).get_counts() == job.result(timeout=60).get_counts()
    listed = alice.jobs(tags=["retrieve-me"])
    assert [j.job_id() for j in listed] == [job.job_id()]
    assert alice.jobs(tags=["retrieve-me"], status=JobStatus.QUEUED) == []
    assert [j.job_id() for j in alice.jobs(tags="retrieve-me", status=["DONE"])] == [job.job_id()]
    many = alice.retrieve_jobs([job.job_id(), "0" * 32, job.job_id()])
    assert [j and j.job_id() for j in many] == [job.job_id(), None, job.job_id()]
    assert many[0].status() == JobStatus.DONE
    assert job.cancel() is False  # finished already
    bob = RemoteBackend(server.url, server.tokens["bob"])
    with pytest.raises(JobNotFoundError, match="no job"):
        bob.retrieve_job(job.job_id())
    assert bob.jobs(tags=["retrieve-me"]) == []
    bobs_view = RemoteJob(bob, job.job_id())
    for call in (bobs_view.status, bobs_view.result, bobs_view.cancel):
        with pytest.raises(JobNotFoundError):
            call()


def test_cancel_a_queued_job_and_wait_with_a_timeout(server_factory, make_circuits):
    s = server_factory("--workers", "1", "--job-delay-ms", "500")
    backend = RemoteBackend(s.url, s.tokens["alice"])
    first = backend.run(make_circuits(1), shots=10)
    second = backend.run(make_circuits(1), shots=10)
    with pytest.raises(JobTimeoutError):
        second.result(timeout=0.1)
    assert second.status() in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert second.cancel() is True
    assert second.status() == JobStatus.CANCELLED
    with pytest.raises(JobError, match="CANCELLED"):
        second.result()
    assert first.result(timeout=30).success


def test_run_errors(server_factory, make_circuits):
    s = server_factory(
        "--workers",
        "1",
        "--job-delay-ms",
        "300",
        "--max-pending",
        "2",
        "--max-payload-bytes",
        "20000",
        "--max-shots",
        "1000",
    )
    backend = RemoteBackend(s.url, s.tokens["alice"])
    with pytest.raises(InvalidRequestError, match="shots") as bad:
        backend.run(make_circuits(1), shots=5000)
    assert bad.value.status_code == 400 and "1000" in str(bad.value)
    with pytest.raises(InvalidRequestError, match="did you mean 'shots'"):
        backend.run(make_circuits(1), shot=10)
    jobs = [backend.run(make_circuits(1), shots=10) for _ in range(2)]
    with pytest.raises(ServiceBusyError) as busy:
        backend.run(make_circuits(1), shots=10)
    assert busy.value.retry_after > 0 and busy.value.status_code == 429
    assert isinstance(busy.value, QiskitError)
    big = make_circuits(200, qubits=4)
    size = backend.payload_size(big)
    assert size > 20000
    with pytest.raises(PayloadTooLargeError) as too_big:
        backend.run(big, shots=10)
    assert too_big.value.limit == 20000 and too_big.value.size == backend.payload_size(
        big, shots=10
    )
    for job in jobs:
        job.result(timeout=30)


def test_payload_over_the_limit_is_refused_by_the_service_too(server_factory, make_circuits):
    s = server_factory("--max-payload-bytes", "20000")
    backend = RemoteBackend(s.url, s.tokens["alice"])
    backend._limits["max_payload_bytes"] = 10**9  # a client that does not check first
    with pytest.raises(PayloadTooLargeError) as err:
        backend.run(make_circuits(200, qubits=4), shots=10)
    assert err.value.status_code == 413 and err.value.limit == 20000
    assert "20000" in str(err.value)


def test_payload_size_is_what_run_sends(alice, make_circuits):
    circuits = make_circuits(30, qubits=5)
    sent = []
    original = alice._session.request

    def spy(method, url, **kwargs):
        if method == "POST":
            sent.append(len(kwargs["data"]))
        return original(method, url, **kwargs)

    alice._session.request = spy
    try:
        job = alice.run(circuits, shots=10, tags=["a"])
    finally:
        alice._session.request = original
    assert sent == [alice.payload_size(circuits, shots=10, tags=["a"])]
    assert alice.payload_size(circuits) < sent[0] < alice.payload_size(circuits) + 100
    assert alice.payload_size(circuits[:10]) < alice.payload_size(circuits)
    job.result(timeout=60)


def test_timeouts_apply_to_every_request(server_factory):
    s = server_factory("--latency-ms", "400")
    with pytest.raises(ServiceConnectionError, match="Timeout"):
        RemoteBackend(s.url, s.tokens["alice"], timeout=(2.0, 0.1))
    slow = RemoteBackend(s.url, s.tokens["alice"], timeout=(2.0, 5.0))
    t0 = time.monotonic()
    slow.max_shots  # noqa: B018 - read at construction, no request
    assert time.monotonic() - t0 < 0.1
    slow._timeout = (2.0, 0.1)
    with pytest.raises(ServiceConnectionError) as err:
        slow.jobs()
    assert isinstance(err.value.__cause__, requests.exceptions.Timeout)


def test_a_broken_connection_is_tried_again_once_for_gets_only(alice):
    from urllib3.exceptions import ProtocolError

    calls = []
    original = alice._session.request

    def flaky(method, url, **kwargs):
        calls.append(method)
        if len(calls) == 1:
            raise requests.exceptions.ConnectionError(
                ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
            )
        return original(method, url, **kwargs)

    alice._session.request = flaky
    try:
        alice.jobs(limit=1)
        assert calls == ["GET", "GET"]
        calls.clear()
        with pytest.raises(ServiceConnectionError, match="aborted"):
            alice._request("POST", "/v1/jobs/x/cancel", what="cancel", ok=(200, 404, 409))
        assert calls == ["POST"]
    finally:
        alice._session.request = original


def test_many_threads_share_one_pool(alice, make_circuits, caplog):
    jobs = [alice.run(make_circuits(1, seed=i), shots=20, seed_simulator=i) for i in range(40)]
    caplog.set_level(logging.WARNING, logger="urllib3")
    with ThreadPoolExecutor(32) as pool:
        records = list(pool.map(lambda j: j.columnar_result(timeout=60), jobs))
    assert all(r.success for r in records)
    assert "Connection pool is full" not in caplog.text
    # result() after columnar_result(): answered from what was fetched
    assert all(j.result().success for j in jobs)


# -- JobManager over the network -------------------------------------------------------------


def test_manager_runs_1000_circuits_and_counts_equal_local(server, alice, make_circuits, tmp_path):
    circuits = make_circuits(1000, qubits=4, seed=5)
    options = dict(shots=200, seed_simulator=1234, memory=True)
    manager = qjm.JobManager(store=tmp_path / "store.sqlite")
    job_set = manager.run(
        circuits, backend=alice, max_experiments_per_job=100, max_workers=8, **options
    )
    results = job_set.results(timeout=180)
    assert results.success, job_set.error_messages()
    assert len(job_set.managed_jobs()) == 10
    local = local_counts(circuits, 100, **options)
    for i in range(1000):
        assert results.get_counts(i) == local.get_counts(i)
    assert results.get_memory(999) == local.get_memory(999)
    assert all(isinstance(j, RemoteJob) for j in job_set.jobs())
    manager.shutdown()


def test_service_killed_and_restarted_in_the_middle_of_a_set(
    server_factory, make_circuits, tmp_path
):
    s = server_factory("--workers", "1", "--job-delay-ms", "250")
    backend = RemoteBackend(s.url, s.tokens["alice"])
    circuits = make_circuits(120, qubits=3, seed=9)
    options = dict(shots=100, seed_simulator=77)
    manager = qjm.JobManager(store=tmp_path / "store.sqlite")
    job_set = manager.run(circuits, backend=backend, max_experiments_per_job=10, **options)
    ids = [j.job_id() for j in job_set.jobs()]  # every job submitted
    assert len(ids) == 12
    infos = wait_statuses(
        backend, set(ids), lambda i: sum(x["status"] == "DONE" for x in i.values()) >= 3
    )
    with pytest.raises(qjm.JobManagerTimeoutError):
        job_set.results(timeout=0.2)  # keep some results in the client's store
    infos = {j.job_id(): j.info() for j in backend.jobs(limit=100)}
    assert any(i["status"] in ("QUEUED", "RUNNING") for i in infos.values())
    s.restart()  # SIGKILL and start again: same data, same port
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    local = local_counts(circuits, 10, **options)
    for i in range(len(circuits)):
        assert results.get_counts(i) == local.get_counts(i)
    after = {j.job_id(): j.info() for j in backend.jobs(limit=100)}
    assert set(after) == set(ids)  # nothing lost
    assert all(i["status"] == "DONE" for i in after.values())
    manager.shutdown()


def test_results_once_and_two_retrievals_in_two_processes(
    server_factory, make_circuits, tmp_path, run_python
):
    s = server_factory("--results-once", "--workers", "1", "--job-delay-ms", "150")
    backend = RemoteBackend(s.url, s.tokens["alice"])
    circuits = make_circuits(40, qubits=3, seed=3)
    options = dict(shots=64, seed_simulator=5)
    store = tmp_path / "store.sqlite"
    manager = qjm.JobManager(store=store)
    job_set = manager.run(circuits, backend=backend, max_experiments_per_job=5, **options)
    ids = [j.job_id() for j in job_set.jobs()]
    wait_statuses(backend, set(ids), lambda i: sum(x["status"] == "DONE" for x in i.values()) >= 2)
    with pytest.raises(qjm.JobManagerTimeoutError):
        job_set.results(timeout=0.1)
    manager.shutdown()  # in-flight fetches end and keep what they got
    stored_before = len(Store(store).outcomes(job_set.job_set_id()))
    assert 1 <= stored_before < 8

    code = """
import json, sys
import qjm
from qjm.remote import RemoteBackend
store, set_id, url, token = sys.argv[1:5]
manager = qjm.JobManager(store=store)
job_set = manager.retrieve_job_set(set_id, backend=RemoteBackend(url, token))
results = job_set.results(timeout=120)
print(json.dumps({"success": results.success, "errors": job_set.error_messages(),
                  "counts": [results.get_counts(i) for i in range(40)]}))
"""
    args = (store, job_set.job_set_id(), s.url, s.tokens["alice"])
    first = json.loads(run_python(code, *args).stdout)
    assert first["success"], first["errors"]
    assert len(Store(store).outcomes(job_set.job_set_id())) == 8
    infos = [backend.retrieve_job(i).info() for i in ids]
    assert all(i["result_consumed"] for i in infos)  # every result has been read once
    second = json.loads(run_python(code, *args).stdout)  # the service would say 410 now
    assert second["success"], second["errors"]
    assert second["counts"] == first["counts"]
    local = local_counts(circuits, 5, **options)
    assert first["counts"] == [local.get_counts(i) for i in range(40)]
    with pytest.raises(ResultConsumedError, match="already read") as gone:
        backend.retrieve_job(ids[0]).result()
    assert isinstance(gone.value, JobError) and gone.value.status_code == 410


def test_a_result_fetched_once_is_kept_by_the_job(server_factory, make_circuits):
    s = server_factory("--results-once")
    backend = RemoteBackend(s.url, s.tokens["alice"])
    job = backend.run(make_circuits(3), shots=50, seed_simulator=1)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(job.result(timeout=60))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert job.columnar_result().success
    with pytest.raises(ResultConsumedError):
        backend.retrieve_job(job.job_id()).columnar_result()


def test_manager_waits_on_a_busy_service_and_splits_by_payload(server_factory, make_circuits):
    """A small pending limit (429 + Retry-After) and a small payload limit (jobs split further
    instead of refused): the set completes, equal to a local run."""
    s = server_factory(
        "--workers",
        "1",
        "--job-delay-ms",
        "100",
        "--max-pending",
        "2",
        "--max-payload-bytes",
        "30000",
    )
    backend = RemoteBackend(s.url, s.tokens["alice"])
    circuits = make_circuits(150, qubits=4, seed=8)
    whole = backend.payload_size(circuits[:50], shots=100)
    assert whole > 30000  # a job of 50 circuits would be refused with 413
    busy = []
    run = backend.run

    @functools.wraps(run)
    def counting_run(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except ServiceBusyError as exc:
            busy.append(exc.retry_after)
            raise

    backend.run = counting_run
    manager = qjm.JobManager(store=":memory:")
    options = dict(shots=100, seed_simulator=21)
    job_set = manager.run(circuits, backend=backend, max_experiments_per_job=50, **options)
    results = job_set.results(timeout=300)
    assert results.success, job_set.error_messages()
    jobs = job_set.managed_jobs()
    assert len(jobs) > 3  # split by payload, not only by the 50-circuit chunk
    for mj in jobs:
        chunk = circuits[mj.start_index : mj.end_index + 1]
        assert backend.payload_size(chunk, **options) <= 30000
    infos = backend.jobs(limit=1000)
    assert len(infos) == len(jobs)  # each job submitted once, 429s notwithstanding
    assert busy and all(r >= 1 for r in busy)  # the service did say 429, with Retry-After
    # each job was seeded where the unsplit run would be: the set equals one local run
    local = AerSimulator(max_parallel_threads=1).run(circuits, **options).result()
    for i in range(len(circuits)):
        assert results.get_counts(i) == local.get_counts(i)


# -- the wire format, from an untrusted service --------------------------------------------


def _message():
    from qjm import wire

    qc = QuantumCircuit(3, 3, name="m")
    qc.h(0)
    qc.cx(0, 1)
    qc.save_statevector()
    qc.measure(range(3), range(3))
    result = AerSimulator().run([qc], shots=20, memory=True, seed_simulator=1).result()
    return wire.encode_columnar(decode_result(result)), result


def test_columnar_round_trip_and_no_pickle():
    import inspect

    from qjm import wire

    data, result = _message()
    back = wire.decode_columnar(data).to_result()
    assert back.get_counts() == result.get_counts() and back.get_memory() == result.get_memory()
    assert back.data(0)["statevector"] == result.data(0)["statevector"]
    source = inspect.getsource(wire)
    assert "pickle" not in source.replace("unpickled", "").replace("unpickle", "")


@pytest.mark.parametrize("seed", range(3))
def test_a_mangled_columnar_message_is_a_wire_error(seed):
    from qjm import wire

    data, _ = _message()
    rng = np.random.default_rng(seed)
    for _ in range(200):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 8))):
            buf[pos] = int(rng.integers(0, 256))
        cut = bytes(buf[: int(rng.integers(0, len(buf) + 1))]) if rng.random() < 0.3 else bytes(buf)
        try:
            wire.decode_columnar(cut)
        except wire.WireError:
            pass


@pytest.mark.parametrize(
    "header",
    [
        {"fields": {}, "experiments": [], "arrays": [["O", [1], 0, 8]]},  # object dtype
        {"fields": {}, "experiments": [], "arrays": [["<u8", [10**6], 0, 8 * 10**6]]},
        {"fields": {"x": {"__array__": 3}}, "experiments": [], "arrays": []},
        {"fields": {"x": {"__qiskit__": "os.system"}}, "experiments": [], "arrays": []},
        {"fields": {"x": {"__complex__": "no"}}, "experiments": [], "arrays": []},
        {"fields": {}, "experiments": [{"fields": {}}], "arrays": []},
        {"fields": {}, "experiments": "x", "arrays": []},
    ],
)
def test_a_hostile_columnar_header_is_a_wire_error(header):
    import struct

    from qjm import wire

    body = json.dumps(header).encode()
    data = struct.pack("<4sHHI", b"QJMC", 1, 0, len(body)) + body
    with pytest.raises(wire.WireError):
        wire.decode_columnar(data + b"\0" * (-len(data) % 8) + b"\0" * 8)


@pytest.mark.parametrize(
    "template",
    ["[1, 2]", '{"shots": 5', '{"header": {"__qiskit__": "os.system"}}', 5, ["x"], "{} {}"],
)
def test_a_hostile_template_in_a_pooled_record_is_a_wire_error(template):
    """The pooled layout's template of fields is JSON text parsed only when read: a damaged one
    is a WireError when an experiment or its histogram is read, never another exception."""
    import struct

    from qjm import wire
    from qjm.records import decode_result

    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure([0, 1], [0, 1])
    result = AerSimulator().run([qc, qc], shots=20, seed_simulator=1).result()
    header, arrays, version = wire._unpack(wire.encode_record(decode_result(result)))
    assert version == wire.RECORD_VERSION and isinstance(header["template"], str)

    def packed(header: dict) -> bytes:
        body = json.dumps(header).encode()
        data = struct.pack("<4sHHI", b"QJMC", version, 0, len(body)) + body
        return (
            data
            + b"\0" * (-len(data) % 8)
            + b"".join(a.tobytes() + b"\0" * (-a.nbytes % 8) for a in arrays)
        )

    # packed again as it was, it reads back (so what fails below is the template)
    assert wire.decode_record(packed(header)).to_result().get_counts() == result.get_counts()
    data = packed(dict(header, template=template))
    with pytest.raises(wire.WireError):
        wire.decode_record(data)
    try:
        reader = wire.PooledReader(data)
    except wire.WireError:
        return  # refused when the reader is made (not text, not an object)
    assert reader.counts_and_header(0) is None  # then the experiment is read, which says why
    with pytest.raises(wire.WireError):
        reader.experiment(0)


def test_the_job_manager_checks_circuits_against_what_the_service_runs(alice, make_circuits):
    """RemoteBackend's Target holds the service's basis gates and its other instructions (Aer's
    save_*): a circuit with them passes the job manager's check, one with an operation the
    service lacks is refused before anything is sent."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2, name="saved")
    qc.h(0)
    qc.cx(0, 1)
    qc.delay(10, 0)
    qc.save_statevector()
    qc.measure([0, 1], [0, 1])
    job_set = qjm.JobManager(store=":memory:").run([qc], backend=alice, shots=20)
    assert job_set.results(timeout=60).success
    odd = QuantumCircuit(2, name="odd")
    odd.ch(0, 1)
    with pytest.raises(ValueError, match="'odd' .* holds 'ch'.*transpile=True"):
        qjm.JobManager(store=":memory:").run([odd], backend=alice, shots=20)
    transpiled = qjm.JobManager(store=":memory:").run(
        [odd.copy()], backend=alice, shots=20, transpile=True, memory=False
    )
    assert transpiled.results(timeout=60).success
