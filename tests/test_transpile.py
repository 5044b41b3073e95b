"""Circuits checked against the backend's Target before anything is submitted, and transpiled
on the way in (run(..., transpile=True)) in worker processes, pipelined with submission."""

from __future__ import annotations

import io

import pytest
from backends import WrappedBackend
from qiskit import QuantumCircuit, qpy, transpile
from qiskit.circuit.random import random_circuit
from qiskit.primitives import StatevectorSampler
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit_aer import AerSimulator

import qjm
from qjm.store import Store


def random_circuits(n: int) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        circuit = random_circuit(4, 6, measure=True, seed=i)
        circuit.name = f"rc-{i}"
        out.append(circuit)
    return out


def test_a_circuit_the_target_cannot_run_is_refused_before_anything_is_submitted():
    backend = WrappedBackend(AerSimulator())
    circuits = random_circuits(40)
    with pytest.raises(ValueError) as info:
        qjm.JobManager(store=":memory:").run(circuits, backend=backend, shots=10)
    message = str(info.value)
    assert "circuit 'rc-0' (circuits[0])" in message
    assert "transpile=True" in message and "Nothing was submitted" in message
    assert backend.run_calls == 0


def test_a_device_refuses_uncoupled_qubits_and_too_many_qubits():
    device = GenericBackendV2(num_qubits=3, coupling_map=[[0, 1], [1, 0], [1, 2], [2, 1]], seed=1)
    far = QuantumCircuit(3, 3, name="far")
    far.cx(0, 2)
    far.measure(range(3), range(3))
    with pytest.raises(ValueError, match=r"'far' .* applies 'cx' to qubits \(0, 2\).* couple"):
        qjm.JobManager(store=":memory:").run([far], backend=device, shots=10)
    big = QuantumCircuit(4, name="big")
    with pytest.raises(ValueError, match="'big' .* has 4 qubits; .* has 3"):
        qjm.JobManager(store=":memory:").run([big], backend=device, shots=10)
    # transpiled, the same circuit runs
    job_set = qjm.JobManager(store=":memory:").run(
        [far], backend=device, shots=10, transpile={"seed_transpiler": 3}
    )
    assert job_set.results(timeout=120).success


def test_only_operations_limited_to_some_qubits_make_the_check_walk_a_circuit():
    """A simulator lists ``measure`` (and ``delay``) on each of its qubits: that limits nothing
    but the qubit count, so its circuits are checked by their operation names alone; a device's
    coupled ``cx`` is still checked instruction by instruction."""
    from qjm.transpiling import _coupled_operations

    aer = AerSimulator().target
    assert _coupled_operations(aer) == ({}, aer.num_qubits)
    device = GenericBackendV2(num_qubits=3, coupling_map=[[0, 1], [1, 0], [1, 2], [2, 1]], seed=1)
    restricted, qubits = _coupled_operations(device.target)
    assert qubits == 3 and set(restricted) == {"cx"}
    assert restricted["cx"] == {(0, 1), (1, 0), (1, 2), (2, 1)}
    every = GenericBackendV2(num_qubits=3, seed=1)  # all to all: nothing to walk for
    assert _coupled_operations(every.target) == ({}, 3)


@pytest.mark.parametrize("processes", [0, 2])
def test_transpiled_on_the_way_in_equals_transpile_then_run(tmp_path, processes):
    """80 circuits in 8 jobs (worker processes when processes > 0): the counts equal qiskit's
    transpile(...) then one backend.run with the same seeds, and the journal holds the
    transpiled circuits (what a resumed job runs)."""
    backend = AerSimulator()
    circuits = random_circuits(80)
    options = {"seed_transpiler": 11, "optimization_level": 1}
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        circuits,
        backend=backend,
        max_experiments_per_job=10,
        shots=200,
        seed_simulator=5,
        transpile=options,
        transpile_processes=processes,
    )
    results = job_set.results(timeout=300)
    assert results.success, job_set.error_messages()
    expected = backend.run(
        transpile(circuits, backend, **options), shots=200, seed_simulator=5
    ).result()
    assert all(results.get_counts(f"rc-{i}") == expected.get_counts(i) for i in range(80))
    blob = Store(store).job_work(job_set.job_set_id(), 3)
    journaled = qpy.load(io.BytesIO(blob))
    names = set(backend.target.operation_names) | {"barrier"}
    assert [c.name for c in journaled] == [f"rc-{i}" for i in range(30, 40)]
    assert all(set(c.count_ops()) <= names for c in journaled)
    # a retrieved set resumes from the journal without transpiling again
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), backend=backend)
    assert again.results().get_counts("rc-33") == results.get_counts("rc-33")


def test_transpile_options_are_checked():
    circuits = random_circuits(2)
    with pytest.raises(ValueError, match="optimization_level must be 0, 1, 2 or 3"):
        qjm.JobManager(store=":memory:").run(circuits, backend=AerSimulator(), optimization_level=7)
    with pytest.raises(TypeError, match="transpile must be True, False, or a dict"):
        qjm.JobManager(store=":memory:").run(circuits, backend=AerSimulator(), transpile="yes")
    with pytest.raises(ValueError, match="cannot transpile for"):
        qjm.JobManager(store=":memory:").run(
            circuits, backend=AerSimulator(), transpile={"no_such_option": 1}
        )
    with pytest.raises(ValueError, match="for circuits on a backend="):
        qjm.JobManager(store=":memory:").run(
            [(c,) for c in circuits], sampler=StatevectorSampler(), transpile=True
        )


def test_a_transpiling_process_killed_mid_set_loses_nothing(tmp_path):
    """SIGKILL one worker process while a set is being transpiled: its task goes to another
    worker (or to this process), the set completes, equal to transpile-then-run."""
    import os
    import signal
    import time
    from pathlib import Path

    backend = AerSimulator()
    circuits = random_circuits(120)
    options = {"seed_transpiler": 5, "optimization_level": 1}
    job_set = qjm.JobManager(store=tmp_path / "s.sqlite").run(
        circuits,
        backend=backend,
        max_experiments_per_job=10,
        shots=100,
        seed_simulator=2,
        transpile=options,
        transpile_processes=2,
    )
    killed = 0
    for _ in range(200):  # bounded: find a worker of this process and kill it
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if b"qjm._transpile_worker" in cmdline and f"PPid:\t{os.getpid()}\n" in status:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
                break
        if killed:
            break
        time.sleep(0.01)
    results = job_set.results(timeout=300)
    assert killed == 1
    assert results.success, job_set.error_messages()
    expected = backend.run(
        transpile(circuits, backend, **options), shots=100, seed_simulator=2
    ).result()
    assert all(results.get_counts(i) == expected.get_counts(i) for i in range(120))
    print("a transpiling process SIGKILLed mid-set: 120 of 120 experiments, equal to qiskit's")
