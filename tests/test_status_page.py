"""The status page of ``qjm serve`` (``GET /``, qjm/server/page.py) in a real headless Chromium.

Chromium is driven from its command line, one process per page load, each with a fresh profile:
``--dump-dom`` prints the document after ``--virtual-time-budget`` ms of (virtual) time, so after
the page's script has polled ``GET /v1/jobs`` a few times; ``--screenshot`` draws it to a PNG.
The token goes in the URL fragment (``/#token=...``), which the browser never sends to the
service; the page moves it to sessionStorage. Chromium's console (``--enable-logging=stderr``)
would show a Content-Security-Policy violation or a script error.

Only these tests need Chromium (``apt-get install chromium``; .ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from qiskit import QuantumCircuit
from servers import bell, qpy_b64

from qjm.server import page

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium): the status page is tested in "
    "a real headless browser",
)

EVIL_TAG = "<img src=x onerror=alert(1)>"
EVIL_NAME = "<img src=y onerror=alert(2)>"  # a circuit's name: it reaches its job's error
SERVE = ("--workers", "2", "--log-level", "info", "--access-log")


# -- helpers ------------------------------------------------------------------------------------


def not_clifford(name: str) -> QuantumCircuit:
    """A T gate: the stabilizer method cannot run it, so its job ends as ERROR."""
    qc = QuantumCircuit(2, 2, name=name)
    qc.h(0)
    qc.t(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def submit(server, user, circuits, tags, **options) -> str:
    r = requests.post(
        server.url + "/v1/jobs",
        json={"circuits": qpy_b64(circuits), "options": {"shots": 100, **options}, "tags": tags},
        headers=server.headers(user),
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def wait_final(server, user, ids, timeout: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(
            server.url + "/v1/jobs", params={"id": ids}, headers=server.headers(user), timeout=10
        )
        assert r.status_code == 200, r.text
        jobs = {j["id"]: j for j in r.json()["jobs"]}
        if len(jobs) == len(ids) and all(
            j["status"] in ("DONE", "ERROR", "CANCELLED") for j in jobs.values()
        ):
            return jobs
        assert time.monotonic() < deadline, f"jobs did not finish: {jobs}"
        time.sleep(0.05)


def chromium(tmp: Path, url: str, *args: str, budget_ms: int = 5000) -> tuple[str, str]:
    """Load ``url`` in a new headless Chromium (fresh profile); its (stdout, stderr)."""
    profile = Path(tmp) / f"profile-{time.monotonic_ns()}"
    profile.mkdir(parents=True)
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # root in CI and containers; it loads only the local test service
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(profile)},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "the page logged to the console:\n" + "\n".join(console)
    return proc.stdout, proc.stderr


class Dom(HTMLParser):
    """What the tests read in a dumped document: every element's tag, the attributes of the
    elements with an id, the text of each, and the table's rows as lists of cell texts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.by_id: dict[str, dict] = {}
        self.rows: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of the open elements
        self._row: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag in ("meta", "link", "input", "br", "img"):  # void elements
            return
        if "id" in attrs:
            self.by_id[attrs["id"]] = {"attrs": attrs, "text": ""}
        self._open.append((tag, attrs.get("id")))
        if tag == "tr" and "data-id" in attrs:
            self._row = attrs["data-id"]
            self.rows[self._row] = []
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break
        if tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell))
            self._cell = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        for _, ident in self._open:
            if ident is not None and ident in self.by_id:
                self.by_id[ident]["text"] += data
        if self._cell is not None:
            self._cell.append(data)

    def text(self, ident: str) -> str:
        return " ".join(self.by_id[ident]["text"].split())

    def hidden(self, ident: str) -> bool:
        return "hidden" in self.by_id[ident]["attrs"]


COLUMNS = [
    "id",
    "status",
    "tags",
    "circuits",
    "shots",
    "created",
    "started",
    "finished",
    "waited",
    "ran",
    "error",
]
WHEN = re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$")  # the date when not today
SPAN = re.compile(r"^\d+\.\d+ s$|^\d+ min \d\d s$|^\d+ h \d\d min$")


def cells(dom: Dom, job_id: str) -> dict[str, str]:
    return dict(zip(COLUMNS, dom.rows[job_id]))


def is_png(path: Path) -> tuple[int, int]:
    """(width, height) of the PNG at ``path``; fails if it is not one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert b"IEND" in data[-12:], "truncated PNG"
    return width, height


# -- tests --------------------------------------------------------------------------------------


def test_the_page_loads_without_a_token_with_a_strict_policy(server_factory):
    server = server_factory()
    r = requests.get(server.url + "/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = dict(
        (d.split(" ", 1) + [""])[:2] for d in r.headers["content-security-policy"].split("; ")
    )
    assert csp["default-src"] == "'none'" and csp["connect-src"] == "'self'"
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    styles = re.findall(r"<style>(.*?)</style>", r.text, re.S)
    assert len(scripts) == len(styles) == 1
    assert csp["script-src"] == page._sha256(scripts[0])
    assert csp["style-src"] == page._sha256(styles[0])
    assert "<script src" not in r.text and "http://" not in r.text and "https://" not in r.text
    # not part of the API: not in the OpenAPI document (schemathesis counts the operations)
    doc = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert "/" not in doc["paths"]
    # the API itself still wants a token
    assert requests.get(server.url + "/v1/jobs", timeout=10).status_code == 401


@needs_chromium
def test_each_user_sees_only_their_own_jobs_escaped_and_live(server_factory, tmp_path):
    server = server_factory(*SERVE)
    alice = [
        submit(
            server, "alice", [bell("a0"), bell("a1")], ["alice-sweep", "alice-first"], shots=200
        ),
        submit(server, "alice", [bell()], ["alice-sweep", EVIL_TAG]),
        submit(
            server,
            "alice",
            [not_clifford(EVIL_NAME)],
            ["alice-fails"],
            shots=10,
            method="stabilizer",
        ),
    ]
    bob = [
        submit(server, "bob", [bell()], ["bob-private"]),
        submit(server, "bob", [bell(), bell(), bell()], ["bob-private", "bob-second"], shots=300),
    ]
    jobs_of = {"alice": wait_final(server, "alice", alice), "bob": wait_final(server, "bob", bob)}
    failed = jobs_of["alice"][alice[2]]
    assert failed["status"] == "ERROR" and failed["error"]

    seen = {}
    for user, mine, theirs in (("alice", alice, bob), ("bob", bob, alice)):
        out, _ = chromium(tmp_path, f"{server.url}/#token={server.tokens[user]}", "--dump-dom")
        dom = seen[user] = Dom(out)
        assert not dom.hidden("jobs") and dom.hidden("login"), out[-2000:]
        # exactly their own jobs: nothing of the other user anywhere in the document
        assert set(dom.rows) == set(mine)
        for job_id in theirs:
            assert job_id not in out
        other = "bob" if user == "alice" else "alice"
        for tag in {t for j in jobs_of[other].values() for t in j["tags"]}:
            assert tag not in out
        assert dom.text("count") == f"{len(mine)} jobs"
        for job_id in mine:
            job, row = jobs_of[user][job_id], cells(dom, job_id)
            assert row["id"] == job_id and row["status"] == job["status"]
            assert row["circuits"] == str(job["n_circuits"]) and row["shots"] == str(job["shots"])
            for tag in job["tags"]:
                assert tag in row["tags"]
            for name in ("created", "started", "finished"):
                assert WHEN.match(row[name]), row
            assert SPAN.match(row["waited"]) and SPAN.match(row["ran"]), row
            assert row["error"] == (job["error"] or "")

    a = seen["alice"]
    assert a.text("summary") == "2 DONE \u00b7 1 ERROR"
    assert seen["bob"].text("summary") == "2 DONE"
    # users' text is text: the tag is in a cell, and the document has no img element at all
    assert EVIL_TAG in cells(a, alice[1])["tags"]
    assert "img" not in a.tags and "img" not in seen["bob"].tags
    assert EVIL_NAME in failed["error"] and EVIL_NAME in cells(a, alice[2])["error"]

    # polled every 2 s with the token in the Authorization header: never in a URL
    time.sleep(0.5)
    log = server.log_text()
    polls = re.findall(r'"GET /v1/jobs\?limit=\d+ HTTP/1.1" 200', log)
    assert len(polls) >= 4, log[-3000:]  # 5 s of page time for each user: 2 polls or more each
    for token in server.tokens.values():
        assert token not in log

    # a wrong token: the form again, with the reason; no token: just the form
    out, _ = chromium(tmp_path, f"{server.url}/#token=not-a-token", "--dump-dom", budget_ms=2000)
    dom = Dom(out)
    assert dom.hidden("jobs") and not dom.hidden("login") and not dom.rows
    assert "does not know that token" in dom.text("login-error")
    out, _ = chromium(tmp_path, server.url + "/", "--dump-dom", budget_ms=1000)
    dom = Dom(out)
    assert dom.hidden("jobs") and not dom.hidden("login") and dom.hidden("login-error")

    # a picture of alice's page
    shot = tmp_path / "alice.png"
    chromium(
        tmp_path,
        f"{server.url}/#token={server.tokens['alice']}",
        f"--screenshot={shot}",
        "--window-size=1280,400",
        "--hide-scrollbars",
        budget_ms=3000,
    )
    assert is_png(shot) == (1280, 400)
    assert 5_000 < shot.stat().st_size < 2_000_000
