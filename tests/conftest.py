"""Shared fixtures of qjm's tests. Fixtures only: no tests here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"


@pytest.fixture(autouse=True)
def qjm_home(tmp_path, monkeypatch) -> Path:
    """Point ``QJM_HOME`` at a fresh directory, so no test ever touches the user's ~/.qjm."""
    home = tmp_path / "qjm_home"
    monkeypatch.setenv("QJM_HOME", str(home))
    return home


@pytest.fixture
def aer():
    from qiskit_aer import AerSimulator

    return AerSimulator()


def _make_circuits(n: int, qubits: int = 3, seed: int = 0, prefix: str = "c") -> list:
    """``n`` named circuits: H and RX layers with seeded angles, a CX chain, and measurements
    into two classical registers (``a``: the first ``qubits // 2`` clbits, ``b``: the rest), so
    count keys carry register spacing ("b a")."""
    if qubits < 2:
        raise ValueError("two classical registers need at least 2 qubits")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        q = QuantumRegister(qubits, "q")
        a = ClassicalRegister(qubits // 2, "a")
        b = ClassicalRegister(qubits - qubits // 2, "b")
        qc = QuantumCircuit(q, a, b, name=f"{prefix}{i}")
        for _layer in range(2):
            for k in range(qubits):
                if rng.random() < 0.5:
                    qc.h(k)
                qc.rx(float(rng.uniform(0, np.pi)), k)
            for k in range(qubits - 1):
                qc.cx(k, k + 1)
        qc.measure(range(qubits), range(qubits))
        out.append(qc)
    return out


@pytest.fixture
def make_circuits():
    """``make_circuits(n, qubits=3, seed=0, prefix="c")``: named, seeded, measured circuits."""
    return _make_circuits


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a child Python: this one (with the test's ``QJM_HOME``), plus the
    directory of the imported qjm and tests/ on ``PYTHONPATH`` and ``QJM_PUREPYTHON`` passed through."""
    from servers import child_env

    env = child_env()  # the qjm these tests import (installed, or the source tree)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env["PYTHONPATH"]])
    return env


@pytest.fixture
def run_python(subprocess_env):
    """``run_python(code, *args, timeout=120)``: run ``code`` in a new Python process and return
    the ``CompletedProcess``; fails the test (showing stderr) when it exits non-zero."""

    def run(code: str, *args: str, timeout: float = 120, check: bool = True):
        proc = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"child process exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
                f"--- stderr\n{proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def manager():
    """A ``JobManager`` that keeps nothing beyond the test (``store=":memory:"``), shut down after."""
    import qjm

    m = qjm.JobManager(store=":memory:")
    yield m
    m.shutdown()


@pytest.fixture
def server_factory(tmp_path):
    """``server_factory(*args)``: a started ``qjm serve`` with these arguments (tests/servers.py),
    stopped when the test ends."""
    from servers import ServerFactory

    factory = ServerFactory(tmp_path)
    yield factory
    factory.stop_all()
