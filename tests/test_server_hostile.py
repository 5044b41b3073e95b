"""Hostile input to ``qjm serve``: what clients send is read in reader processes with memory and CPU
limits (qjm/server/sandbox.py), after the QPY headers are checked against the stated limits.

Real services on 127.0.0.1 (tests/servers.py); while they are attacked a thread polls ``/health``
(every answer within 1 s) and the resident memory of the service's whole process tree (the HTTP
process, the job worker, the readers) is sampled from /proc.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from procs import process_tree, status  # noqa: E402
from qiskit import QuantumCircuit, qpy  # noqa: E402
from qiskit.circuit import (  # noqa: E402
    AncillaRegister,
    ClassicalRegister,
    Parameter,
    ParameterVector,
    QuantumRegister,
    Qubit,
)

from qjm.server import sandbox  # noqa: E402
from qjm.wire import dump_circuits  # noqa: E402

if not Path("/proc/self/status").exists():  # pragma: no cover
    pytest.skip("reads process memory from /proc (Linux)", allow_module_level=True)

# Readers may each take PARSE_MB on top of their own ~110 MB. The tree idles at ~460 MB (service
# ~135, job worker ~100, two readers ~110 each, resource tracker ~12); a memory bomb read in the
# HTTP process used to add hundreds of MB a second until the kernel killed it.
PARSE_MB = 256
TREE_MB = 1000  # the whole process tree, at every sample
SERVICE_MB = 300  # the process that answers HTTP, which never parses anything
HEALTH_S = 1.0
ARGS = ("--workers", "1", "--parse-workers", "2", "--parse-memory-mb", str(PARSE_MB))
HEADER = struct.Struct("!H1cHIIQIQI")  # QPY >= 12 circuit header
FIELDS = ("name_size", "phase_type", "phase_size", "num_qubits", "num_clbits", "metadata_size")
FIELDS += ("num_registers", "num_instructions", "num_vars")


# -- helpers --------------------------------------------------------------------------------------


def reader_pids(server) -> list[int]:
    out = []
    for pid in process_tree(server.proc.pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "qjm-reader":
                    out.append(pid)
        except OSError:
            pass
    return out


def wait_readers(server, n: int = 2, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pids := reader_pids(server)) < n:
        assert time.monotonic() < deadline, f"only {pids} readers after {timeout} s"
        time.sleep(0.1)
    return pids


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def idle_readers(server, n: int = 2, timeout: float = 60) -> list[int]:
    """The ``n`` readers once they have started and sit idle (no CPU used for 0.3 s)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = wait_readers(server, n, timeout)
        try:
            before = [cpu_ticks(p) for p in pids]
            time.sleep(0.3)
            if len(reader_pids(server)) == n and [cpu_ticks(p) for p in pids] == before:
                return pids
        except OSError:
            pass  # one went away meanwhile
        assert time.monotonic() < deadline, "the readers did not settle"


# The watcher runs in a process of its own, so that nothing the test process does (qiskit holds the
# GIL while it dumps QPY) delays a poll: it polls /health every 50 ms and samples the memory of the
# service's process tree, until its stdin closes; then it prints what it saw as JSON.
_WATCHER = r"""
import json, os, sys, threading, time, urllib.request

url, root = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from procs import process_tree as tree, rss_mb as rss
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()

seen = {"slowest": 0.0, "polls": 0, "failures": [], "max_tree": 0.0, "max_service": 0.0}
print("ready", flush=True)
while not done.is_set():
    seen["max_tree"] = max(seen["max_tree"], rss(tree(root)))
    seen["max_service"] = max(seen["max_service"], rss([root]))
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as r:
            if r.status != 200:
                seen["failures"].append(f"/health answered {r.status}")
    except Exception as exc:
        seen["failures"].append(f"/health: {exc!r}")
    seen["slowest"] = max(seen["slowest"], time.monotonic() - start)
    seen["polls"] += 1
    done.wait(0.05)
print(json.dumps(seen), flush=True)
"""


class Watch:
    """Polls /health and samples the tree's memory (in a process of its own) while the block
    runs; keeps the worst of each."""

    def __init__(self, server):
        self.server = server
        self.slowest = 0.0
        self.failures: list[str] = []
        self.max_tree = 0.0
        self.max_service = 0.0
        self.polls = 0

    def __enter__(self) -> Watch:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHER,
                self.server.url,
                str(self.server.proc.pid),
                os.path.dirname(os.path.abspath(__file__)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self._proc.communicate("", timeout=30)
        seen = json.loads(out.strip().splitlines()[-1])
        self.slowest, self.polls, self.failures = seen["slowest"], seen["polls"], seen["failures"]
        self.max_tree, self.max_service = seen["max_tree"], seen["max_service"]
        assert self.polls > 0

    def check(self) -> None:
        assert not self.failures, self.failures[:5]
        assert self.slowest < HEALTH_S, f"/health took {self.slowest:.2f} s"
        assert self.max_tree < TREE_MB, f"the service's processes reached {self.max_tree:.0f} MB"
        assert self.max_service < SERVICE_MB, f"the HTTP process reached {self.max_service:.0f} MB"


def post_qpy(server, raw: bytes, options: dict | None = None, timeout: float = 30):
    body = {"circuits": base64.b64encode(raw).decode(), "options": options or {"shots": 10}}
    return post_body(server, json.dumps(body).encode(), timeout)


def post_body(server, body: bytes, timeout: float = 30):
    return requests.post(
        server.url + "/v1/jobs",
        data=body,
        headers={**server.headers(), "Content-Type": "application/json"},
        timeout=timeout,
    )


def detail(r) -> str:
    d = r.json()["detail"]
    assert isinstance(d, str) and d
    return d


def clifford(name: str, qubits: int = 3) -> QuantumCircuit:
    qc = QuantumCircuit(qubits, qubits, name=name)
    qc.h(0)
    for q in range(qubits - 1):
        qc.cx(q, q + 1)
    qc.s(1)
    qc.measure(range(qubits), range(qubits))
    return qc


def bomb(field: str, value: int) -> bytes:
    """A one-qubit, one-gate circuit (~170 bytes of QPY) whose header declares ``field = value``."""
    qc = QuantumCircuit(1, name="b")
    qc.x(0)
    raw = bytearray(dump_circuits([qc], version=18))
    (offset,) = struct.unpack_from("!Q", raw, 20)  # the circuit table's first entry
    fields = list(HEADER.unpack_from(raw, offset))
    fields[FIELDS.index(field)] = value
    HEADER.pack_into(raw, offset, *fields)
    return bytes(raw)


def runs_a_normal_job(server) -> None:
    r = post_qpy(server, dump_circuits([clifford("after")]), {"shots": 50, "seed_simulator": 1})
    assert r.status_code == 201, r.text
    job = r.json()["id"]
    deadline = time.monotonic() + 60
    while (info := requests.get(f"{server.url}/v1/jobs/{job}", headers=server.headers()).json())[
        "status"
    ] not in ("DONE", "ERROR", "CANCELLED"):
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info["status"] == "DONE", info
    res = requests.get(f"{server.url}/v1/jobs/{job}/result", headers=server.headers(), timeout=10)
    counts = res.json()["results"][0]["data"]["counts"]
    assert sum(counts.values()) == 50


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from servers import running_server

    with running_server(tmp_path_factory.mktemp("hostile"), *ARGS, "--max-pending", "10000") as s:
        idle_readers(s)
        yield s


# -- without a service ----------------------------------------------------------------------------


LIMITS = sandbox.ReadLimits(
    max_circuits=1000,
    max_qubits={"automatic": 10_000, "statevector": 30},
    method="automatic",
    max_clbits=4096,
    max_instructions=1_000_000,
    max_payload_bytes=32 << 20,
)


def test_header_walk_passes_every_qpy_version_the_service_reads():
    loose = [Qubit(), Qubit()]
    odd = QuantumCircuit(
        loose, QuantumRegister(bits=loose, name="loose"), ClassicalRegister(3), AncillaRegister(1)
    )
    odd.h(0)
    odd.measure(0, 0)
    vec = ParameterVector("th", 3)
    par = QuantumCircuit(2, name="par")
    par.rx(vec[0], 0)
    par.rz(Parameter("a"), 1)
    par.measure_all()
    many = QuantumCircuit(2, 1, name="many")
    for _ in range(500):
        many.x(0)
    circuits = [clifford("c"), odd, par, many, QuantumCircuit()]
    for version in range(qpy.QPY_COMPATIBILITY_VERSION, qpy.QPY_VERSION + 1):
        raw = dump_circuits(circuits, version)
        sandbox.check_qpy_headers(raw, LIMITS)
        with pytest.raises(sandbox.Refused, match="num_qubits = 3; .* at most 2 .*'statevector'"):
            sandbox.check_qpy_headers(raw, sandbox.ReadLimits(**{
                **LIMITS.__dict__, "max_qubits": {"statevector": 2}, "method": "statevector"
            }))  # fmt: skip


@pytest.mark.parametrize(
    "field, value, status, words",
    [
        ("num_qubits", 2**32 - 1, 422, ["num_qubits = 4294967295", "10000", "max_qubits"]),
        ("num_clbits", 2**32 - 1, 422, ["num_clbits = 4294967295", "4096", "max_clbits"]),
        ("num_instructions", 2**63, 422, [f"num_instructions = {2**63}", "1000000"]),
        ("num_instructions", 5000, 400, ["num_instructions = 5000", "bytes of the file follow"]),
        ("metadata_size", 2**63, 400, [f"metadata_size = {2**63}", "bytes of the file follow"]),
        ("num_registers", 2**32 - 1, 400, ["num_registers = 4294967295"]),
        ("num_vars", 2**32 - 1, 400, ["num_vars = 4294967295"]),
    ],
)
def test_header_walk_refuses_declared_sizes(field, value, status, words):
    with pytest.raises(sandbox.Refused) as info:
        sandbox.check_qpy_headers(bomb(field, value), LIMITS)
    assert info.value.status == status
    for word in words:
        assert word in str(info.value)


def test_json_depth_is_measured_without_parsing():
    assert sandbox.json_depth(b'{"a": [1, {"b": "[[[[{{{{"}], "c": "\\"[["}', limit=2) == 3
    assert sandbox.json_depth(b'{"a": [1, {"b": 2}]}') <= sandbox.MAX_JSON_DEPTH
    assert sandbox.json_depth(b"[" * 10_000 + b"]" * 10_000) > sandbox.MAX_JSON_DEPTH
    assert sandbox.json_depth(b'{"x": "' + b"[" * 100_000 + b'"}') == 1  # inside a string
    start = time.monotonic()
    assert sandbox.json_depth(b"[" * (8 << 20)) > sandbox.MAX_JSON_DEPTH
    assert sandbox.json_depth(b'{"c": "' + b"A" * (32 << 20) + b'"}') == 1
    assert (
        sandbox.json_depth(b"[" + b'"",' * (8 << 20) + b'"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]') == 1
    )
    assert time.monotonic() - start < 5


# -- against a service ----------------------------------------------------------------------------


def test_memory_bombs_are_refused_at_once_and_nobody_notices(hostile):
    limits = requests.get(hostile.url + "/v1/limits", headers=hostile.headers(), timeout=10).json()
    assert limits["max_clbits"] == 4096 and limits["max_instructions"] == 1_000_000
    assert limits["max_qubits"]["automatic"] >= limits["num_qubits"] > 0
    with Watch(hostile) as watch:
        for field, word in (("num_qubits", "max_qubits"), ("num_clbits", "max_clbits")):
            raw = bomb(field, 2**32 - 1)
            assert len(raw) < 200
            start = time.monotonic()
            r = post_qpy(hostile, raw, timeout=10)
            took = time.monotonic() - start
            assert r.status_code == 422, r.text
            assert f"{field} = 4294967295" in detail(r) and word in detail(r)
            assert str(limits[word]["automatic"] if word == "max_qubits" else limits[word]) in (
                detail(r)
            )
            assert took < 1.0, f"{field}: answered in {took:.2f} s"
            print(f"{field} = 2**32-1: {r.status_code} in {took * 1000:.0f} ms: {detail(r)}")
        # the same bomb behind the header walk: QPY 15 has no circuit table, so only the first
        # circuit's header is checked; the second one's 2**32-1 qubits meet the reader's limits
        first = dump_circuits([clifford("ok")], version=15)
        raw = bytearray(dump_circuits([clifford("ok"), clifford("bomb")], version=15))
        fields = list(HEADER.unpack_from(raw, len(first)))
        fields[FIELDS.index("num_qubits")] = 2**32 - 1
        HEADER.pack_into(raw, len(first), *fields)
        start = time.monotonic()
        r = post_qpy(hostile, bytes(raw), timeout=30)
        took = time.monotonic() - start
        print(f"behind the walk: {r.status_code} in {took * 1000:.0f} ms: {r.text[:200]}")
        assert r.status_code == 422 and "within the service's limits" in detail(r)
        # a circuit wider than the job's method takes, and one that method takes
        wide = clifford("wide", 40)
        r = post_qpy(hostile, dump_circuits([wide]), {"shots": 1, "method": "statevector"})
        assert r.status_code == 422 and "num_qubits = 40" in detail(r), r.text
        assert "'statevector'" in detail(r)
        r = post_qpy(hostile, dump_circuits([wide]), {"shots": 1, "method": "stabilizer"})
        assert r.status_code == 201, r.text
    print(
        f"slowest /health {watch.slowest * 1000:.0f} ms over {watch.polls} polls; max RSS: tree "
        f"{watch.max_tree:.0f} MB, HTTP process {watch.max_service:.0f} MB"
    )
    watch.check()
    runs_a_normal_job(hostile)


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        kind = rng.random()
        at = rng.randrange(len(data))
        if kind < 0.4:  # flip one bit
            data[at] ^= 1 << rng.randrange(8)
        elif kind < 0.6:  # overwrite with a random byte
            data[at] = rng.randrange(256)
        elif kind < 0.8:  # overwrite with a large value, as a size field would hold one
            size = rng.choice((2, 4, 8))
            value = rng.choice((0xFF, 0x7F, 0x80, 0x10)) if size == 2 else rng.choice((0xFF, 0x7F))
            data[at : at + size] = bytes([value]) * size
        elif kind < 0.9:  # insert bytes
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        else:  # delete bytes
            del data[at : at + rng.randrange(1, 9)]
    data[:6] = b"QISKIT"  # keep the magic: the point is what follows it
    return bytes(data)


def test_seeded_qpy_mutations_never_hurt_the_service(hostile):
    # Clifford circuits run with the stabilizer method, so what mutations leave runnable runs
    # fast whatever its width; the point is the reading
    valid = dump_circuits([clifford("f0"), clifford("f1", 4), clifford("f2", 2)])
    rng = random.Random(20240611)
    codes: Counter[int] = Counter()
    slowest_post = 0.0
    cases = 0
    session = requests.Session()
    headers = {**hostile.headers(), "Content-Type": "application/json"}
    with Watch(hostile) as watch:
        start = time.monotonic()
        while cases < 1000 and time.monotonic() - start < 20:
            raw = _mutate(rng, valid)
            body = json.dumps(
                {
                    "circuits": base64.b64encode(raw).decode(),
                    "options": {"shots": 1, "method": "stabilizer"},
                }
            ).encode()
            t = time.monotonic()
            r = session.post(hostile.url + "/v1/jobs", data=body, headers=headers, timeout=60)
            slowest_post = max(slowest_post, time.monotonic() - t)
            codes[r.status_code] += 1
            assert r.status_code < 500, (cases, r.status_code, r.text, raw.hex())
            if r.status_code >= 400:
                assert detail(r)
            cases += 1
        elapsed = time.monotonic() - start
    refused = {code: n for code, n in sorted(codes.items()) if code >= 400}
    print(
        f"\nfuzz: {cases} cases in {elapsed:.1f} s; 4xx by code {refused}; 2xx "
        f"{sum(n for c, n in codes.items() if c < 300)}; slowest POST {slowest_post:.2f} s; max "
        f"RSS tree {watch.max_tree:.0f} MB, HTTP process {watch.max_service:.0f} MB; slowest "
        f"/health {watch.slowest * 1000:.0f} ms over {watch.polls} polls"
    )
    assert cases >= 300, f"only {cases} cases in {elapsed:.1f} s"
    assert sum(codes.values()) == cases and refused  # mutations that are refused do occur
    watch.check()
    runs_a_normal_job(hostile)


def test_nested_json_and_other_decoders_answer_4xx(hostile):
    deep = b"[" * 10_000 + b"]" * 10_000
    inner = b'{"circuits": "QUFB", "options": {"x": ' + deep + b"}}"
    for body in (deep, inner, b'{"a": ' * 10_000 + b"1" + b"}" * 10_000):
        r = post_body(hostile, body)
        assert r.status_code == 400, r.text
        assert "nests" in detail(r) and str(sandbox.MAX_JSON_DEPTH) in detail(r)
    r = post_body(hostile, b"[" * 50_000)  # unbalanced: still refused by depth, not parsed
    assert r.status_code == 400 and "nests" in detail(r)
    # thousands of tags made SQLite's expression tree too deep (500)
    query = "&".join(f"tag=t{i}" for i in range(2000))
    r = requests.get(f"{hostile.url}/v1/jobs?{query}", headers=hostile.headers(), timeout=10)
    assert r.status_code == 422, r.text[:300]
    # a run option's 5 MB name was compared by difflib and echoed in the answer
    name = "s" * 5_000_000
    body = json.dumps({"circuits": "QUFB", "options": {name: 1}}).encode()
    start = time.monotonic()
    r = post_body(hostile, body)
    assert r.status_code == 400 and "5000000 characters" in detail(r)
    assert len(r.content) < 1000 and time.monotonic() - start < 5
    r = post_qpy(hostile, dump_circuits([clifford("m")]), {"shots": 1, "method": "x" * 100_000})
    assert r.status_code == 400 and len(r.content) < 1000, r.text[:300]
    good = base64.b64encode(dump_circuits([clifford("s")])).decode()
    body = {"circuits": good, "instruction_subtypes": [[0, 0, "z" * 1_000_000]]}
    r = post_body(hostile, json.dumps(body).encode())
    assert r.status_code == 400 and len(r.content) < 1000, r.text[:300]
    huge = b'{"circuits": "' + good.encode() + b'", "options": {"shots": ' + b"7" * 5000 + b"}}"
    r = post_body(hostile, huge)
    assert r.status_code == 400, r.text[:300]  # an int of 5000 digits is not JSON Python reads


@functools.cache
def _slow_body(instructions: int = 300_000) -> bytes:
    """A valid job a reader takes ~0.2-0.4 s to read (17 MB of JSON)."""
    qc = QuantumCircuit(2, name="long")
    qc.x([0] * instructions)
    raw = dump_circuits([qc])
    return json.dumps(
        {"circuits": base64.b64encode(raw).decode(), "options": {"shots": 1}}
    ).encode()


def test_killed_readers_are_replaced_and_nobody_notices(tmp_path, server_factory):
    server = server_factory(*ARGS, "--max-payload-bytes", str(64 << 20))
    first = idle_readers(server)
    ok = dump_circuits([clifford("k")])
    body = _slow_body()
    with Watch(server) as watch:
        # between requests: one reader, then both
        os.kill(first[0], signal.SIGKILL)
        for _ in range(5):
            assert post_qpy(server, ok).status_code == 201
        for pid in reader_pids(server):
            os.kill(pid, signal.SIGKILL)
        for _ in range(3):
            r = post_qpy(server, ok)
            assert r.status_code == 201, r.text
        # mid-parse: a body that takes a reader a while; the busy reader is killed
        readers = idle_readers(server)
        ticks = {pid: cpu_ticks(pid) for pid in readers}
        answer: list = []
        thread = threading.Thread(target=lambda: answer.append(post_body(server, body, 60)))
        thread.start()
        victim = None
        deadline = time.monotonic() + 20
        while victim is None and thread.is_alive() and time.monotonic() < deadline:
            for pid in readers:
                if cpu_ticks(pid) - ticks[pid] >= 5:  # 50 ms of CPU into this body
                    victim = pid
                    os.kill(pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
        thread.join(60)
        assert victim is not None, "no reader was seen reading the body"
        # killed from outside: the body is read again by a fresh reader
        assert answer and answer[0].status_code == 201, (
            answer and answer[0].text[:300],
            server.log_text()[-3000:],
        )
        for _ in range(3):
            assert post_qpy(server, ok).status_code == 201
    watch.check()
    assert set(wait_readers(server)).isdisjoint(first)
    runs_a_normal_job(server)
    # SIGKILL of the service's process group (what tests/servers.py does) takes the readers too
    readers = reader_pids(server)
    server.kill()
    time.sleep(0.5)
    for pid in readers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in status(pid).get("State", "Z")


def test_a_body_that_takes_too_long_is_refused_and_its_reader_replaced(server_factory):
    server = server_factory(*ARGS, "--parse-timeout", "0.05", "--max-payload-bytes", str(64 << 20))
    before = idle_readers(server)
    body = _slow_body()
    with Watch(server) as watch:
        start = time.monotonic()
        r = post_body(server, body, 30)
        took = time.monotonic() - start
        assert r.status_code == 422, r.text[:300]
        assert "within the service's limits" in detail(r) and "0.05 s" in detail(r)
        assert took < 3, took
        assert post_qpy(server, dump_circuits([clifford("t")])).status_code == 201
    watch.check()
    after = idle_readers(server)
    assert len(set(before) - set(after)) == 1  # the slow one was killed and replaced
