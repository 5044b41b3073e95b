"""Bounds of ``qjm serve`` on what one client can hold: header and body timeouts, requests in
progress per token, and the tokens file reloaded safely. Real services (``server_factory``), raw
sockets on 127.0.0.1 where a client has to misbehave; every test prints its figures."""

from __future__ import annotations

import base64
import io
import select
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

from qiskit import QuantumCircuit, qpy  # noqa: E402


def bell_b64() -> str:
    qc = QuantumCircuit(2, 2, name="bell")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    buf = io.BytesIO()
    qpy.dump([qc], buf)
    return base64.b64encode(buf.getvalue()).decode()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def half_body(server, token: str, length: int = 2000) -> socket.socket:
    """A POST /v1/jobs that declares ``length`` bytes of body and sends half of them."""
    sock = connect(server)
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    sock.sendall(head + b'{"circuits": "' + b"A" * (length // 2 - 14))
    return sock


def watch(socks: dict[int, socket.socket], until: float) -> dict[int, tuple[float, bytes]]:
    """Read every socket until the service closes it or ``until`` (monotonic) passes:
    ``{key: (monotonic time it was closed, bytes received)}`` for the closed ones."""
    sel = selectors.DefaultSelector()
    got: dict[int, bytearray] = {}
    for key, sock in socks.items():
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, key)
        got[key] = bytearray()
    closed: dict[int, tuple[float, bytes]] = {}
    while len(closed) < len(socks) and time.monotonic() < until:
        for sk, _ in sel.select(timeout=0.05):
            key = sk.data
            try:
                data = sk.fileobj.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                got[key] += data
            else:
                closed[key] = (time.monotonic(), bytes(got[key]))
                sel.unregister(sk.fileobj)
    sel.close()
    return closed


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response with a Content-Length, read from a blocking socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a response body"
        body += chunk
    return status, headers, body


def stats(values: list[float]) -> str:
    values = sorted(values)
    return f"min {values[0]:.2f} s, median {values[len(values) // 2]:.2f} s, max {values[-1]:.2f} s"


# -- timeouts -----------------------------------------------------------------------------------


def test_half_bodies_are_dropped_within_the_body_timeout(server_factory):
    body_timeout, slack = 4.0, 1.5
    s = server_factory(
        "--header-timeout", "2", "--body-timeout", str(body_timeout),
        "--max-requests-per-token", "1000",
    )  # fmt: skip
    limits = requests.get(s.url + "/v1/limits", headers=s.headers(), timeout=10).json()
    assert limits["body_timeout_seconds"] == body_timeout
    assert limits["header_timeout_seconds"] == 2.0

    # 100 clients (alice) whose body is being read by the service, and 5 with a wrong token,
    # answered 401 at once, that go on holding their connection with half a body
    socks: dict[int, socket.socket] = {}
    sent: dict[int, float] = {}
    for i in range(105):
        token = s.tokens["alice"] if i < 100 else "not-a-token"
        socks[i] = half_body(s, token)
        sent[i] = time.monotonic()
    opened = time.monotonic()

    # meanwhile, a normal client: bob's job runs, and /health answers at once all along
    normal: dict = {"health": []}
    watching = threading.Event()

    def normal_client() -> None:
        r = requests.post(
            s.url + "/v1/jobs",
            json={"circuits": bell_b64(), "options": {"shots": 100}},
            headers=s.headers("bob"),
            timeout=10,
        )
        normal["submit"] = r.status_code
        job = r.json()["id"]
        while "status" not in normal or watching.is_set():
            t0 = time.perf_counter()
            h = requests.get(s.url + "/health", timeout=5)
            normal["health"].append((h.status_code, time.perf_counter() - t0))
            if "status" not in normal:
                st = requests.get(f"{s.url}/v1/jobs/{job}", headers=s.headers("bob"), timeout=5)
                if st.json()["status"] in ("DONE", "ERROR", "CANCELLED"):
                    normal["status"] = st.json()["status"]
                    normal["done_after"] = time.monotonic() - opened
            time.sleep(0.1)

    watching.set()
    thread = threading.Thread(target=normal_client)
    thread.start()
    closed = watch(socks, until=opened + body_timeout + slack + 2)
    watching.clear()
    thread.join(timeout=30)
    for sock in socks.values():
        sock.close()

    held = {i: closed[i][0] - sent[i] for i in closed}
    first_drop = min(closed[i][0] for i in closed) - opened if closed else None
    health = [t for _, t in normal["health"]]
    print(
        f"\n{len(socks)} half-body clients ({body_timeout} s body timeout): {len(closed)} dropped; "
        f"held {stats(list(held.values()))}; first drop {first_drop:.2f} s after the last opened"
    )
    print(
        f"normal client meanwhile: submit {normal.get('submit')}, job {normal.get('status')} "
        f"after {normal.get('done_after', float('nan')):.2f} s, /health x{len(health)}: "
        f"max {max(health) * 1000:.0f} ms"
    )
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} connections still held"
    for i, (_, data) in closed.items():
        expected = b"HTTP/1.1 408 " if i < 100 else b"HTTP/1.1 401 "
        assert data.startswith(expected), (i, data[:200])
    assert b"body_timeout_seconds" in closed[0][1]
    assert min(held.values()) >= body_timeout - 0.05, "dropped before its deadline"
    assert max(held.values()) <= body_timeout + slack
    assert normal["submit"] == 201 and normal["status"] == "DONE"
    assert normal["done_after"] < first_drop, "the job did not run while the clients were held"
    assert all(code == 200 for code, _ in normal["health"]) and max(health) < 1.0
    # nothing left behind: the service takes alice's requests as before
    r = requests.get(s.url + "/v1/limits", headers=s.headers(), timeout=5)
    assert r.status_code == 200
    assert "Exception in ASGI application" not in s.log_text()  # dropped quietly


def test_half_headers_are_dropped_within_the_header_timeout(server_factory):
    header_timeout, slack = 1.5, 1.0
    s = server_factory("--header-timeout", str(header_timeout), "--body-timeout", "3")
    token = s.tokens["alice"]
    socks: dict[int, socket.socket] = {}
    started: dict[int, float] = {}
    for i in range(20):  # half the headers, then nothing
        socks[i] = connect(s)
        started[i] = time.monotonic()
        socks[i].sendall(
            f"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token[:5]}".encode()
        )
    socks[20] = connect(s)  # connects and sends nothing at all
    started[20] = time.monotonic()
    trickled: dict = {}

    def trickle() -> None:  # never idle for more than 0.2 s, never done
        with connect(s) as sock:
            t0 = time.monotonic()
            sent = 0
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sent += 1
                readable, _, _ = select.select([sock], [], [], 0.2)
                if readable:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data or data.startswith(b"HTTP/1.1 408 "):
                        break
            trickled.update(held=time.monotonic() - t0, sent=sent)

    thread = threading.Thread(target=trickle)
    thread.start()
    closed = watch(socks, until=time.monotonic() + header_timeout + slack)
    thread.join(timeout=header_timeout + slack + 5)
    for sock in socks.values():
        sock.close()
    held = {i: closed[i][0] - started[i] for i in closed}
    print(
        f"\n20 half-header clients, 1 silent, 1 trickling a byte per 0.2 s "
        f"({header_timeout} s header timeout): {len(closed)} of 21 dropped, held "
        f"{stats(list(held.values()))}; the trickler dropped after {trickled.get('held', 0):.2f} s "
        f"having sent {trickled.get('sent')} bytes"
    )
    assert len(closed) == 21
    for i in range(20):
        assert closed[i][1].startswith(b"HTTP/1.1 408 "), closed[i][1][:200]
    assert closed[20][1] == b""  # nothing asked, nothing answered
    assert min(held.values()) >= header_timeout - 0.05
    assert max(held.values()) <= header_timeout + slack
    assert header_timeout - 0.05 <= trickled["held"] <= header_timeout + slack

    # a kept-alive connection idle between requests for longer than the header timeout is
    # not cut by it (uvicorn's keep-alive timeout, 30 s, applies there)
    with connect(s) as sock:
        for _ in range(2):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == 200 and b'"ok"' in body
            time.sleep(header_timeout + 0.5)
        # and a later request on it that stalls half-way is dropped all the same
        t0 = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")
        status, _, body = read_response(sock, timeout=header_timeout + slack + 1)
        stalled = time.monotonic() - t0
        assert status == 408 and b"header_timeout_seconds" in body
        assert sock.recv(10) == b""
    print(f"kept-alive connection: 2 requests {header_timeout + 0.5} s apart served; a stalled "
          f"third dropped after {stalled:.2f} s")  # fmt: skip
    assert header_timeout - 0.05 <= stalled <= header_timeout + slack


# -- requests in progress per token ------------------------------------------------------------


def test_requests_per_token_are_capped_and_other_tokens_are_not(server_factory):
    cap = 3
    s = server_factory("--max-requests-per-token", str(cap), "--body-timeout", "8")
    limits = requests.get(s.url + "/v1/limits", headers=s.headers(), timeout=10).json()
    assert limits["max_requests_per_token"] == cap
    held = [half_body(s, s.tokens["alice"]) for _ in range(cap)]  # alice's requests in progress
    deadline = time.monotonic() + 5
    while True:  # until the service has all of them in hand
        r = requests.get(s.url + "/v1/limits", headers=s.headers("alice"), timeout=5)
        if r.status_code == 429 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    def get(user: str) -> requests.Response:
        return requests.get(s.url + "/v1/limits", headers=s.headers(user), timeout=5)

    with ThreadPoolExecutor(10) as pool:
        t0 = time.perf_counter()
        extra = list(pool.map(get, ["alice"] * 5))
        t_alice = time.perf_counter() - t0
        t0 = time.perf_counter()
        others = list(pool.map(get, ["bob"] * cap))  # bob's whole quota is his
        t_bob = time.perf_counter() - t0
    job = requests.post(
        s.url + "/v1/jobs",
        json={"circuits": bell_b64(), "options": {"shots": 10}},
        headers=s.headers("bob"),
        timeout=10,
    )
    health = requests.get(s.url + "/health", timeout=5)
    print(
        f"\ncap {cap} per token, alice holding {cap}: alice's 5 more -> "
        f"{[r.status_code for r in extra]} in {t_alice * 1000:.0f} ms; bob's {cap} at once -> "
        f"{[r.status_code for r in others]} in {t_bob * 1000:.0f} ms; bob's submit "
        f"{job.status_code}; /health {health.status_code}"
    )
    assert [r.status_code for r in extra] == [429] * 5
    for r in extra:
        assert int(r.headers["Retry-After"]) >= 1
        assert "max_requests_per_token" in r.json()["detail"]
    assert all(r.status_code == 200 for r in others)
    assert job.status_code == 201 and health.status_code == 200
    # alice's slots come back as her requests end (here: her clients hang up)
    for sock in held:
        sock.close()
    t0 = time.monotonic()
    while get("alice").status_code == 429:
        assert time.monotonic() - t0 < 3, "alice's slots were not given back"
        time.sleep(0.05)
    print(f"alice served again {time.monotonic() - t0:.2f} s after her held clients hung up")
    with ThreadPoolExecutor(cap) as pool:
        assert [r.status_code for r in pool.map(get, ["alice"] * cap)] == [200] * cap


# -- the tokens file ----------------------------------------------------------------------------


def wait_log(server, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        assert time.monotonic() < deadline, f"not in the log: {text!r}\n{server.log_text()[-2000:]}"
        time.sleep(0.05)
    return server.log_text()


def test_revocation_holds_even_when_the_tokens_file_is_malformed(server_factory):
    s = server_factory()

    def code(token: str) -> int:
        r = requests.get(
            s.url + "/v1/limits", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        return r.status_code

    alice, bob = s.tokens["alice"], s.tokens["bob"]
    dave = "dave-token-" + "d" * 16
    assert code(alice) == 200 and code(bob) == 200
    # bob's line removed, a malformed line 3, and a new user on a good line
    s.tokens_file.write_text(f"# test users\nalice {alice}\ncarol\ndave {dave}\n")
    t0 = time.perf_counter()
    after = {"bob": code(bob), "alice": code(alice), "dave": code(dave)}
    took = time.perf_counter() - t0
    print(f"\nmalformed edit that removes bob: {after} ({took * 1000:.0f} ms for the three)")
    assert after == {"bob": 401, "alice": 200, "dave": 401}
    for _ in range(5):
        code(alice)
    log = wait_log(s, "revoked now")
    assert f"{s.tokens_file}:3: expected 'NAME TOKEN', got 1 words" in log
    assert "1 token(s) of bob" in log
    assert log.count("not reloaded") == 1, "logged once, not at every request"
    assert alice not in log and bob not in log and dave not in log  # no token in the log

    # another bad version that puts bob back: still revoked (only a good file adds tokens)
    s.tokens_file.write_text(f"alice {alice}\nbob {bob}\ncarol x y\n")
    assert code(bob) == 401 and code(alice) == 200
    wait_log(s, f"{s.tokens_file}:3: expected 'NAME TOKEN', got 3 words")

    # a good file: reloads as normal again, new users and all
    s.tokens_file.write_text(f"alice {alice}\ndave {dave}\n")
    assert code(dave) == 200 and code(alice) == 200 and code(bob) == 401
    wait_log(s, "is good again")
    s.tokens_file.write_text(f"alice {alice}\nbob {bob}\n")
    assert code(bob) == 200 and code(dave) == 401
    print("good files after it: dave added, then bob back and dave gone, at once")


def test_tokens_are_kept_hashed_and_every_bad_line_is_named(tmp_path):
    from qjm.server.app import Tokens, read_tokens

    path = tmp_path / "tokens"
    secret = "s3cret-" + "x" * 20
    path.write_text(f"alice {secret}\n# bob old-token\nbob bob-token\n")
    tokens = Tokens(str(path))
    assert tokens.user(secret) == "alice" and tokens.user("bob-token") == "bob"
    assert tokens.user(secret + "x") is None and tokens.user("old-token") is None
    assert tokens.users() == ["alice", "bob"]

    def strings(obj, seen=None):
        seen = seen if seen is not None else set()
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (str, bytes)):
            yield obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from strings(k, seen)
                yield from strings(v, seen)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in obj:
                yield from strings(v, seen)
        elif hasattr(obj, "__dict__"):
            yield from strings(vars(obj), seen)

    kept = list(strings(tokens))
    assert not any(secret in x if isinstance(x, str) else secret.encode() in x for x in kept)

    path.write_text(f"alice {secret} extra\nbob\nbob bob-token\ncarol bob-token\n")
    with pytest.raises(ValueError) as err:
        read_tokens(str(path))
    message = str(err.value)
    print(f"\n{message}")
    assert ":1: expected 'NAME TOKEN', got 3 words" in message
    assert ":2: expected 'NAME TOKEN', got 1 words" in message
    assert ":4: this token is already 'bob''s" in message
    assert secret not in message and "bob-token" not in message
