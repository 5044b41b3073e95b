"""Draw docs/status-page.png: the status page of ``qjm serve`` (``GET /``) in headless Chromium.

    python docs/make_status_page_picture.py     # qjm[server] installed, and chromium on PATH

Starts a ``qjm serve`` on a free port of 127.0.0.1 (one worker, every job 2 s, a temporary tokens
file and data directory), submits a few jobs as one user (one fails on the backend, one is
cancelled while queued), waits until some are done while one runs and one waits, and takes a
screenshot of the page with that user's token (given in the URL fragment, as the tests do).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from qiskit import QuantumCircuit, qpy

HERE = Path(__file__).resolve().parent
OUT = HERE / "status-page.png"
TOKEN = "alice-" + os.urandom(12).hex()
SIZE = (1360, 540)


def circuits(n: int, t_gate: bool = False, name: str = "c") -> str:
    out = []
    for i in range(n):
        qc = QuantumCircuit(3, 3, name=f"{name}{i}")
        qc.h(0)
        if t_gate:
            qc.t(0)
        qc.cx(0, 1)
        qc.cx(1, 2)
        qc.measure(range(3), range(3))
        out.append(qc)
    buf = io.BytesIO()
    qpy.dump(out, buf)
    return base64.b64encode(buf.getvalue()).decode()


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        (Path(tmp) / "tokens").write_text(f"alice {TOKEN}\n")
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "qjm.server", "--port", str(port), "--tokens",
             f"{tmp}/tokens", "--data", f"{tmp}/data", "--workers", "1",
             "--job-delay-ms", "2000", "--log-level", "warning"],
        )  # fmt: skip
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            deadline = time.monotonic() + 60
            while True:
                try:
                    if requests.get(url + "/v1/limits", headers=auth, timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("qjm serve did not start")
                time.sleep(0.2)

            def submit(body: dict) -> str:
                r = requests.post(url + "/v1/jobs", json=body, headers=auth, timeout=30)
                r.raise_for_status()
                return r.json()["id"]

            jobs = [
                {"circuits": circuits(40, name="rabi-"), "options": {"shots": 4000},
                 "tags": ["rabi-sweep", "paper-3"]},
                {"circuits": circuits(40, name="rabi-"), "options": {"shots": 4000},
                 "tags": ["rabi-sweep", "paper-3"]},
                {"circuits": circuits(8, t_gate=True, name="tomo-"),
                 "options": {"shots": 1000, "method": "stabilizer"}, "tags": ["tomography"]},
                {"circuits": circuits(100, name="rb-"), "options": {"shots": 2000},
                 "tags": ["randomized-benchmarking", "q0-q2"]},
                {"circuits": circuits(100, name="rb-"), "options": {"shots": 2000},
                 "tags": ["randomized-benchmarking", "q0-q2"]},
                {"circuits": circuits(12, name="xeb-"), "options": {"shots": 8000},
                 "tags": ["xeb"]},
                {"circuits": circuits(1, name="bell-"), "options": {"shots": 100},
                 "tags": ["scratch"]},
            ]  # fmt: skip
            ids = [submit(body) for body in jobs]
            requests.post(f"{url}/v1/jobs/{ids[-1]}/cancel", headers=auth, timeout=10)
            # jobs run one after another, 2 s each: wait for the first four, then the fifth runs
            while True:
                r = requests.get(url + "/v1/jobs", params={"id": ids[:4]}, headers=auth, timeout=10)
                if all(j["status"] in ("DONE", "ERROR") for j in r.json()["jobs"]):
                    break
                time.sleep(0.1)
            time.sleep(1.0)
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                     "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
                     f"--window-size={SIZE[0]},{SIZE[1]}", "--virtual-time-budget=3000",
                     f"--screenshot={OUT}", f"{url}/#token={TOKEN}"],
                    check=True, timeout=60, capture_output=True,
                )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
