"""ManagedResults beyond qiskit's Result: arrays, marginals, expectation values, wide registers."""

from __future__ import annotations

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.result import (
    Counts,
    marginal_distribution,
    marginal_memory,
    sampled_expectation_value,
)
from qiskit_aer import AerSimulator


def uniform(width: int, name: str, registers: int = 1) -> QuantumCircuit:
    """H on every qubit, measured: uniformly random outcomes of ``width`` bits."""
    qr = QuantumRegister(width)
    sizes = [width // registers] * registers
    sizes[-1] += width - sum(sizes)
    cregs = [ClassicalRegister(size, f"r{k}") for k, size in enumerate(sizes)]
    qc = QuantumCircuit(qr, *cregs, name=name)
    qc.h(qr)
    qc.measure(qr, [bit for reg in cregs for bit in reg])
    return qc


def test_aer_memory_marginals_are_right_where_qiskit_is_wrong(manager):
    circuit = uniform(27, "wide27")
    job_set = manager.run(
        [circuit],
        backend=AerSimulator(method="stabilizer"),
        shots=5000,
        memory=True,
        seed_simulator=8,
    )
    results = job_set.results()
    hex_memory = job_set.jobs()[0].result().data(0)["memory"]
    assert len({len(x) for x in hex_memory}) > 1  # Aer's hex has no leading zeros
    indices = list(range(10))
    truth = [int(x, 16) & 0x3FF for x in hex_memory]
    ours = results.marginal_memory(0, indices)
    assert ours.tolist() == truth
    theirs = [int(x, 16) for x in marginal_memory(hex_memory, indices)]
    wrong = sum(a != b for a, b in zip(theirs, truth))
    assert wrong > len(truth) // 2  # qiskit takes the width from the first string
    # marginal counts agree with qiskit's marginal_distribution (which is right on counts)
    expected = marginal_distribution(results.get_counts(0), indices)
    assert results.marginal_counts(0, indices) == expected
    assert results.marginal_counts(0, [26, 0, 13]) == marginal_distribution(
        results.get_counts(0), [26, 0, 13]
    )


def test_expectation_value_matches_qiskit(manager):
    qc = QuantumCircuit(4, 4, name="ev")
    qc.h(0)
    qc.cx(0, 1)
    qc.rx(0.7, 2)
    qc.ry(1.1, 3)
    qc.measure(range(4), range(4))
    results = manager.run([qc], backend=AerSimulator(), shots=4000, seed_simulator=1).results()
    counts = results.get_counts(0)
    for pauli in ("ZZII", "IIZZ", "ZIZI", "IIII", "ZZZZ", "izzi"):
        assert results.expectation_value("ev", pauli) == pytest.approx(
            sampled_expectation_value(counts, pauli.upper())
        )
    with pytest.raises(ValueError, match="Z and I"):
        results.expectation_value(0, "XZII")
    with pytest.raises(ValueError, match="4 clbits"):
        results.expectation_value(0, "ZZ")


def test_wide_registers_use_packed_rows(manager):
    width = 100
    circuit = uniform(width, "w100", registers=3)
    results = manager.run(
        [circuit],
        backend=AerSimulator(method="stabilizer"),
        shots=300,
        memory=True,
        seed_simulator=3,
    ).results()
    own = (
        AerSimulator(method="stabilizer")
        .run(circuit, shots=300, memory=True, seed_simulator=3)
        .result()
    )
    assert results.get_counts(0) == own.get_counts(0)
    assert results.get_memory(0) == own.get_memory(0)
    memory = results.memory_array(0)
    assert memory.dtype == np.uint8 and memory.shape == (300, 13)
    first = int.from_bytes(memory[0].tobytes(), "big")
    assert first == int(own.data(0)["memory"][0], 16)
    keys, counts = results.counts_arrays(0)
    assert keys.shape[1] == 13 and counts.sum() == 300
    assert results.marginal_counts(0, [99, 0]) == marginal_distribution(own.get_counts(0), [99, 0])


def test_columnar_counts_is_a_qiskit_counts(manager):
    qr = QuantumRegister(5)
    a, b = ClassicalRegister(2, "a"), ClassicalRegister(3, "b")
    qc = QuantumCircuit(qr, a, b, name="cc")
    qc.h(qr)
    qc.measure(qr[:2], a)
    qc.measure(qr[2:], b)
    results = manager.run([qc], backend=AerSimulator(), shots=500, seed_simulator=2).results()
    ours = results.get_counts(0)
    theirs = AerSimulator().run(qc, shots=500, seed_simulator=2).result().get_counts(0)
    assert isinstance(ours, Counts)
    assert ours == theirs
    assert ours.int_raw == theirs.int_raw and ours.hex_raw == theirs.hex_raw
    assert ours.int_outcomes() == theirs.int_outcomes()
    assert ours.hex_outcomes() == theirs.hex_outcomes()
    assert ours.most_frequent() == theirs.most_frequent()
    assert ours.creg_sizes == theirs.creg_sizes and ours.memory_slots == theirs.memory_slots
