"""Results served once survive responses dropped in transit: a loopback proxy between the client
and `qjm serve --results-once` reads the service's whole answer to a result request and then, for
a quarter of them, hangs up instead of passing it on."""

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
        line = request.split(b"\r\n", 1)[0]
        if not (line.startswith(b"GET ") and b"/result" in line):
            return False
        with self.lock:
            dropped = self.random.random() < self.rate
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
