"""Shot splitting: an experiment over more shots than a job may take runs in parts, merged back."""

from __future__ import annotations

import numpy as np
import pytest
from backends import WrappedBackend
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.result import Counts
from qiskit_aer import AerSimulator

from qjm.plan import make_plan, split_shots


def circuits(n: int, width: int = 4) -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qr = QuantumRegister(width)
        lo = ClassicalRegister(width // 2, "lo")
        hi = ClassicalRegister(width - width // 2, "hi")
        qc = QuantumCircuit(qr, lo, hi, name=f"s{i}")
        qc.h(range(width))
        qc.rx(0.2 * i, 0)
        qc.measure(qr[: width // 2], lo)
        qc.measure(qr[width // 2 :], hi)
        out.append(qc)
    return out


def test_split_shots_parts():
    assert split_shots(1000, None) == [1000]
    assert split_shots(1000, 1000) == [1000]
    assert split_shots(1000, 300) == [250, 250, 250, 250]
    assert split_shots(10, 4) == [4, 3, 3]
    assert sum(split_shots(123457, 1000)) == 123457
    assert max(split_shots(123457, 1000)) <= 1000


def test_plan_rounds_keep_the_unsplit_layout_for_part_zero():
    plan = make_plan(25, 10, [4, 3, 3])
    assert plan.n_parts == 3 and len(plan.jobs) == 9
    for i in range(25):
        assert plan.locate(i) == (i // 10, i % 10)
        assert plan.parts(i) == [(p * 3 + i // 10, i % 10) for p in range(3)]
    assert [j.shots for j in plan.jobs] == [4] * 3 + [3] * 3 + [3] * 3


def test_split_experiment_looks_like_one(manager):
    circs = circuits(7)
    job_set = manager.run(
        circs,
        backend=AerSimulator(),
        max_experiments_per_job=3,
        shots=1000,
        max_shots_per_job=300,
        memory=True,
        seed_simulator=17,
    )
    results = job_set.results()
    assert results.success
    assert len(job_set.managed_jobs()) == 3 * 4
    for i, circuit in enumerate(circs):
        parts = job_set.parts(i)
        assert len(parts) == 4
        assert job_set.job(i) == parts[0]
        own = [job.result() for job, _ in parts]
        memory = sum((r.get_memory(k) for r, (_, k) in zip(own, parts)), [])
        assert results.get_memory(circuit) == memory  # concatenated in part order
        expected = Counts({})
        for r, (_, k) in zip(own, parts):
            for key, value in r.get_counts(k).items():
                expected[key] = expected.get(key, 0) + value
        assert results.get_counts(i) == dict(expected)
        assert sum(results.get_counts(i).values()) == 1000
        assert len(results.memory_array(i)) == 1000
        # each part ran with its own, reproducible seed
        seeds = [r.results[k].seed_simulator for r, (_, k) in zip(own, parts)]
        assert len(set(seeds)) == 4
    combined = results.combine_results()
    assert [r.shots for r in combined.results] == [1000] * 7
    assert combined.get_counts(2) == results.get_counts(2)


def test_split_runs_are_reproducible(manager):
    kwargs = dict(
        backend=AerSimulator(), shots=900, max_shots_per_job=200, memory=True, seed_simulator=5
    )
    a = manager.run(circuits(3), **kwargs).results()
    b = manager.run(circuits(3), **kwargs).results()
    for i in range(3):
        assert a.get_memory(i) == b.get_memory(i)


def test_backend_max_shots_is_the_default_limit(manager):
    class LimitedBackend(WrappedBackend):
        max_shots = 250

    backend = LimitedBackend(inner=AerSimulator())
    job_set = manager.run(circuits(2), backend=backend, shots=1000)
    assert len(job_set.managed_jobs()) == 4
    results = job_set.results()
    assert [job.result().results[0].shots for job in job_set.jobs()] == [250] * 4
    assert sum(results.get_counts(1).values()) == 1000


def test_counts_arrays_of_a_split_experiment_are_merged(manager):
    job_set = manager.run(
        circuits(1, width=6),
        backend=AerSimulator(),
        shots=5000,
        max_shots_per_job=1000,
        seed_simulator=2,
    )
    keys, counts = job_set.results().counts_arrays(0)
    assert keys.dtype == np.uint64 and counts.dtype == np.int64
    assert len(np.unique(keys)) == len(keys)
    assert counts.sum() == 5000
    with pytest.raises(ValueError):
        keys[0] = 1  # read-only: the kept result cannot be changed through it
