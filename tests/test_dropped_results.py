"""Answers dropped in transit lose nothing and run nothing twice: a loopback proxy between the
client and `qjm serve` reads the service's whole answer and then hangs up instead of passing it on
(for a quarter of the result requests to `--results-once`; for the first submissions of a job)."""

from __future__ import annotations

import random
import socket
import socketserver
import threading

from qiskit_aer import AerSimulator

import qjm
from qjm.remote import RemoteBackend


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [
        line
        for line in head.split(b"\r\n")
        if not line.lower().startswith(b"connection:")
        and not line.lower().startswith(b"keep-alive:")
    ]
    return b"\r\n".join(lines + [b"Connection: close"]) + b"\r\n\r\n" + body


class DroppingProxy(socketserver.ThreadingTCPServer):
    """One request per connection, passed to ``upstream``; the answer to a result request is
    dropped (the connection closed after the service sent it) with probability ``rate``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int], rate: float, seed: int):
        self.upstream = upstream
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.dropped = 0
        self.passed = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def drop(self, request: bytes) -> bool:
        """Whether the service's answer to ``request`` is dropped."""
        line = request.split(b"\r\n", 1)[0]
        if not (line.startswith(b"GET ") and b"/result" in line):
            return False
        with self.lock:
            dropped = self.random.random() < self.rate
            self.dropped += dropped
            self.passed += not dropped
            return dropped


class SubmissionDropper(DroppingProxy):
    """The answers to the first ``drops`` submissions with each ``Idempotency-Key`` are dropped
    (the service has made the job; the client is never told)."""

    def __init__(self, upstream: tuple[str, int], drops: int):
        super().__init__(upstream, rate=0.0, seed=0)
        self.drops = drops
        self.seen: dict[bytes, int] = {}

    def drop(self, request: bytes) -> bool:
        if not request.startswith(b"POST /v1/jobs "):
            return False
        head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
        key = next(
            (
                line.partition(b":")[2].strip()
                for line in head
                if line.lower().startswith(b"idempotency-key:")
            ),
            b"",
        )
        with self.lock:
            self.seen[key] = self.seen.get(key, 0) + 1
            dropped = self.seen[key] <= self.drops
            self.dropped += dropped
            self.passed += not dropped
            return dropped


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        request = _read_request(self.request)
        if not request:
            return
        with socket.create_connection(self.server.upstream, timeout=60) as up:
            up.sendall(request)
            answer = b""
            while chunk := up.recv(65536):
                answer += chunk
        if self.server.drop(request):
            return  # the service sent it; the client never gets it
        self.request.sendall(answer)


def test_a_quarter_of_results_dropped_in_transit_loses_none(server_factory, make_circuits):
    server = server_factory("--results-once")
    port = int(server.url.rsplit(":", 1)[1])
    proxy = DroppingProxy(("127.0.0.1", port), rate=0.25, seed=7)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        backend = RemoteBackend(
            f"http://127.0.0.1:{proxy.server_address[1]}", server.tokens["alice"]
        )
        job_set = qjm.JobManager(store=":memory:").run(
            make_circuits(60),
            backend=backend,
            max_experiments_per_job=3,
            shots=50,
            seed_simulator=3,
        )
        results = job_set.results(timeout=180)
        assert results.success, job_set.error_messages()
    finally:
        proxy.shutdown()
        proxy.server_close()
    local = AerSimulator().run(make_circuits(60), shots=50, seed_simulator=3).result()
    lost = sum(1 for i in range(60) if results.get_counts(i) != local.get_counts(i))
    direct = RemoteBackend(server.url, server.tokens["alice"])
    infos = [j.info() for j in direct.retrieve_jobs([j.job_id() for j in job_set.jobs()])]
    assert lost == 0 and proxy.dropped > 0
    assert all(info["result_consumed"] for info in infos) and len(infos) == 20
    assert all(info["attempts"] == 1 for info in infos)  # nothing ran twice
    print(
        f"results served once, {proxy.dropped} of {proxy.dropped + proxy.passed} result responses "
        f"dropped in transit: 20 of 20 jobs' results kept, {lost} experiments lost, each job "
        "confirmed once"
    )


def test_submissions_whose_answers_are_dropped_run_once(tmp_path, server_factory, make_circuits):
    """Every job's first three submissions reach the service, which makes the job, but their
    answers are dropped: run() gives up, the job manager submits again under the same key and
    gets the job the service made. Then a new process resumes the set: nothing more is made."""
    server = server_factory()
    port = int(server.url.rsplit(":", 1)[1])
    proxy = SubmissionDropper(("127.0.0.1", port), drops=3)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    circuits = make_circuits(30)
    try:
        backend = RemoteBackend(
            f"http://127.0.0.1:{proxy.server_address[1]}", server.tokens["alice"]
        )
        store = tmp_path / "s.sqlite"
        job_set = qjm.JobManager(store=store).run(
            circuits,
            backend=backend,
            max_experiments_per_job=3,
            shots=50,
            seed_simulator=3,
            retry=qjm.RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.2),
        )
        results = job_set.results(timeout=180)
        assert results.success, job_set.error_messages()
        again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), backend=backend)
        assert again.resume() == []
    finally:
        proxy.shutdown()
        proxy.server_close()
    direct = RemoteBackend(server.url, server.tokens["alice"])
    made = direct.jobs(limit=1000)
    names = sorted(e["header"]["name"] for j in made for e in j.result().to_dict()["results"])
    assert proxy.dropped == 30 and len(proxy.seen) == 10  # 3 dropped answers for each job
    assert len(made) == 10 and names == sorted(c.name for c in circuits)  # each made once
    assert sorted(j.job_id() for j in job_set.jobs()) == sorted(j.job_id() for j in made)
    local = AerSimulator().run(circuits, shots=50, seed_simulator=3).result()
    assert all(results.get_counts(i) == local.get_counts(i) for i in range(30))
    print(
        f"{proxy.dropped} submission answers dropped in transit ({len(proxy.seen)} keys): "
        f"{len(made)} jobs made for 10, 30 of 30 experiments, each run once"
    )


def test_retry_failed_on_a_service_makes_a_new_job(tmp_path, server_factory, make_circuits):
    """The key stays a job's until the job has an id: a job that ended in ERROR and is run again
    with retry_failed() is a new job on the service, not the failed one handed back."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    server = server_factory()
    backend = RemoteBackend(server.url, server.tokens["alice"])
    broken = QuantumCircuit(1, 1, name="broken")
    broken.rx(Parameter("t"), 0)  # unbound: the service's simulator cannot run it
    broken.measure(0, 0)
    circuits = make_circuits(2) + [broken]
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        circuits, backend=backend, max_experiments_per_job=2, shots=20
    )
    assert not job_set.results(timeout=120).success
    first = job_set.managed_jobs()[1].job_id
    assert job_set.retry_failed() == [1]
    job_set.results(timeout=120)
    second = job_set.managed_jobs()[1].job_id
    made = sorted(j.job_id() for j in backend.jobs(limit=100))
    assert second != first and first in made and second in made and len(made) == 3
    print(f"retry_failed on a service: job 1 ran as {first[:8]} then {second[:8]}; 3 jobs made")
