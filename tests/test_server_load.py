"""Many careless and hostile clients at once: 64 threads mixing their own and other users' reads,
results and cancels, malformed tokens and hostile ids. The service answers every one without a
5xx, and another user's job is a 404 exactly like an unknown id."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

HOSTILE_IDS = [
    "../../etc/passwd",
    "%00",
    "x" * 100,
    "' OR 1=1 --",
    "<script>",
    "..",
    "%2e%2e%2f",
    "\u202e",
    "null",
    "0",
    "-1",
]
BAD_TOKENS = [  # Authorization header values
    "",
    "Bearer",
    "Bearer " + "x" * 5000,
    "Bearer token with spaces",
    "Bearer \u00e9t\u00e9",
    "Basic YWxpY2U6cHc=",
    "Bearer Bearer",
    "undefined",
    "Bearer ' OR 1=1",
    "Bearer a,b",
    "Bearer %00",
    "bearer lowercase-scheme",
    "Token abc",
]


def test_64_threads_of_mixed_and_hostile_requests_get_no_5xx(server_factory):
    server = server_factory()
    tokens = server.tokens
    body = {"circuits": None}
    from qiskit import QuantumCircuit

    from qjm import wire

    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    body = {"circuits": wire.b64(wire.dump_circuits([qc])), "options": {"shots": 10}}
    jobs = {}
    for user in ("alice", "bob"):
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        jobs[user] = [
            requests.post(f"{server.url}/v1/jobs", json=body, headers=headers, timeout=30).json()[
                "id"
            ]
            for _ in range(3)
        ]
    codes: Counter = Counter()
    lock = threading.Lock()
    mismatches = []

    def one(k: int) -> None:
        rng = random.Random(k)
        user = rng.choice(["alice", "bob"])
        other = "bob" if user == "alice" else "alice"
        headers = {"Authorization": f"Bearer {tokens[user]}", "Accept": wire.MEDIA_COLUMNAR}
        kind = rng.randrange(6)
        if kind == 0:  # my own job, its result, its cancel
            job = rng.choice(jobs[user])
            path = rng.choice(["", "/result"])
            r = requests.get(f"{server.url}/v1/jobs/{job}{path}", headers=headers, timeout=30)
        elif kind == 1:  # another user's job: must look exactly like an unknown id
            job = rng.choice(jobs[other])
            path = rng.choice(["", "/result"])
            r = requests.get(f"{server.url}/v1/jobs/{job}{path}", headers=headers, timeout=30)
            unknown = requests.get(
                f"{server.url}/v1/jobs/{'0' * 32}{path}", headers=headers, timeout=30
            )
            if r.status_code != 404 or r.json()["detail"].replace(job, "ID") != unknown.json()[
                "detail"
            ].replace("0" * 32, "ID"):
                with lock:
                    mismatches.append((r.status_code, r.text, unknown.text))
        elif kind == 2:  # cancel another user's job
            job = rng.choice(jobs[other])
            r = requests.post(f"{server.url}/v1/jobs/{job}/cancel", headers=headers, timeout=30)
            if r.status_code != 404:
                with lock:
                    mismatches.append((r.status_code, r.text, "cancel"))
        elif kind == 3:  # a malformed token
            bad = {"Authorization": rng.choice(BAD_TOKENS).encode("utf-8")}
            r = requests.get(f"{server.url}/v1/jobs", headers=bad, timeout=30)
        elif kind == 4:  # a hostile id
            job = rng.choice(HOSTILE_IDS)
            r = requests.get(f"{server.url}/v1/jobs/{job}", headers=headers, timeout=30)
        else:
            r = requests.get(f"{server.url}/v1/jobs", headers=headers, timeout=30)
        with lock:
            codes[r.status_code] += 1

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(one, range(2000)))
    print(f"2,000 requests from 64 threads: {dict(sorted(codes.items()))}")
    assert sum(codes.values()) == 2000
    assert not [c for c in codes if c >= 500], codes
    assert not mismatches, mismatches[:3]
    assert codes[404] > 0 and codes[401] > 0 and codes[200] > 0
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
