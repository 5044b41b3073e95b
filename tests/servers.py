"""Real ``qjm serve`` processes for the tests: on 127.0.0.1, a free port, a fresh tokens file and
data directory, stopped by the test that started them.

    with running_server(tmp_path, "--workers", "2") as server:
        backend = RemoteBackend(server.url, server.tokens["alice"])
        ...
        server.kill()          # SIGKILL (the whole process group: service and its workers)
        server.start()         # again, same --data dir and port

:class:`ServerFactory` starts any number of servers in one test (the test modules make it their
``server_factory`` fixture) and stops them all at its end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USERS = ("alice", "bob")
START_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """This environment (QJM_PUREPYTHON and PYTHONPATH pass through), with the directory of the
    ``qjm`` this process imports first on PYTHONPATH: the service runs the same qjm as the tests,
    installed or from the source tree."""
    import qjm

    env = dict(os.environ)
    home = str(Path(qjm.__file__).resolve().parent.parent)
    paths = [home] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Server:
    """A ``python -m qjm.server`` process and what a test needs to talk to it.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        tokens: ``{user: token}`` for alice and bob.
        data: the ``--data`` directory (kept across :meth:`kill` and :meth:`start`).
        log: the file that receives the service's stdout and stderr.
    """

    def __init__(self, root: Path, args: tuple[str, ...] = (), port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens = {user: f"{user}-token-{os.urandom(8).hex()}" for user in USERS}
        self.tokens_file = self.root / "tokens"
        self.tokens_file.write_text(
            "# test users\n" + "".join(f"{u} {t}\n" for u, t in self.tokens.items())
        )
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.args = tuple(str(a) for a in args)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "qjm.server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--tokens",
            str(self.tokens_file),
            "--data",
            str(self.data),
            "--log-level",
            "warning",
            *self.args,
        ]

    def headers(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start the service and wait until ``GET /v1/limits`` answers."""
        import requests

        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts}: {' '.join(self.command)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command,
                env=child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(self.root),
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"qjm serve exited with {self.proc.returncode} before answering:\n"
                    + self.log_text()[-4000:]
                )
            try:
                r = requests.get(self.url + "/v1/limits", headers=self.headers(), timeout=(1, 5))
                if r.status_code == 200:
                    return self
            except requests.exceptions.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"qjm serve did not answer within {timeout} s:\n" + self.log_text()[-4000:]
                )
            time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the service and its worker processes
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the service and its workers at once, as a crash would."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            self._signal_group(signal.SIGKILL)  # workers left behind, if any
            return
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(timeout=30)

    def restart(self) -> Server:
        """SIGKILL and start again on the same port and data directory."""
        self.kill()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


@contextmanager
def running_server(root: Path, *args: str, port: int | None = None) -> Iterator[Server]:
    """A started :class:`Server`; stopped (SIGTERM, then SIGKILL) at the end."""
    server = Server(root, args, port=port)
    try:
        yield server.start()
    finally:
        server.stop()


class ServerFactory:
    """``factory(*args)`` starts a server with these extra ``qjm serve`` arguments under
    ``root``; ``factory.stop_all()`` stops every one it started. The test modules wrap it in a
    ``server_factory`` fixture."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.started: list[Server] = []

    def __call__(self, *args: str) -> Server:
        server = Server(self.root / f"server{len(self.started)}", args)
        self.started.append(server)
        return server.start()

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def qpy_b64(circuits) -> str:
    """Circuits as one QPY file, base64: the body field the job service reads."""
    import base64

    from qjm.wire import dump_circuits

    return base64.b64encode(dump_circuits(list(circuits))).decode()


def bell(name: str = "bell"):
    """A measured 2-qubit Bell circuit."""
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, 2, name=name)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc
