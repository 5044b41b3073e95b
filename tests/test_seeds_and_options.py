"""Seeds that make a split run equal the unsplit run; run options as the backend takes them;
parameter binds split with the circuits; the old job manager's API."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.exceptions import QiskitError
from qiskit_aer import AerSimulator

import qjm
from qjm.plan import make_plan
from qjm.runoptions import (
    AER_SEED_STRIDE,
    decode_run_options,
    encode_run_options,
    job_seeds,
    part_seed_bases,
)


def sweep(n: int, qubits: int = 4) -> list[QuantumCircuit]:
    """Circuits whose counts differ from one another (so equal counts mean equal samples)."""
    out = []
    for i in range(n):
        qc = QuantumCircuit(qubits, qubits, name=f"s{i}")
        qc.h(range(qubits))
        qc.rx(0.013 * i, 0)
        qc.ry(0.007 * i, 1)
        qc.measure(range(qubits), range(qubits))
        out.append(qc)
    return out


@pytest.mark.parametrize("chunk", [10, 7])
def test_split_run_equals_the_unsplit_run(chunk):
    circuits = sweep(200)
    options = dict(shots=64, seed_simulator=9, memory=True)
    unsplit = AerSimulator().run(circuits, **options).result()
    job_set = qjm.JobManager(store=":memory:").run(
        circuits, backend=AerSimulator(), max_experiments_per_job=chunk, max_workers=2, **options
    )
    results = job_set.results(timeout=300)
    assert results.success and len(job_set.managed_jobs()) == -(-200 // chunk)
    differ = [i for i in range(200) if results.get_memory(i) != unsplit.get_memory(i)]
    assert not differ, f"experiments whose samples differ from the unsplit run: {differ[:10]}"
    assert all(results.get_counts(i) == unsplit.get_counts(i) for i in range(200))
    # experiments 10 and 0 (same circuit shape, one job apart) no longer share samples
    seeds = [results.combine_results().results[i].seed_simulator for i in range(200)]
    assert len(set(seeds)) == 200
    assert seeds == [unsplit.results[i].seed_simulator for i in range(200)]


def test_report_states_the_seed_of_every_job():
    job_set = qjm.JobManager(store=":memory:").run(
        sweep(25), backend=AerSimulator(), max_experiments_per_job=10, shots=10, seed_simulator=3
    )
    job_set.results(timeout=120)
    report = job_set.report(detailed=True)
    for start in (0, 10, 20):
        assert f"seed_simulator: {3 + AER_SEED_STRIDE * start}" in report


def test_shot_parts_never_share_a_seed():
    circuits = sweep(12, qubits=3)
    job_set = qjm.JobManager(store=":memory:").run(
        circuits,
        backend=AerSimulator(),
        max_experiments_per_job=5,
        max_shots_per_job=100,
        shots=400,
        memory=True,
        seed_simulator=11,
    )
    results = job_set.results(timeout=120)
    assert results.success
    seeds = [mj.seed for mj in job_set.managed_jobs()]
    per_experiment = []
    for mj in job_set.managed_jobs():
        per_experiment += [
            mj.seed + AER_SEED_STRIDE * k for k in range(mj.end_index - mj.start_index + 1)
        ]
    assert len(per_experiment) == 12 * 4 and len(set(per_experiment)) == len(per_experiment)
    assert len(set(seeds)) == len(seeds)
    for i in range(12):
        memory = results.memory_array(i)
        parts = memory.reshape(4, 100)
        assert not any(np.array_equal(parts[a], parts[b]) for a in range(4) for b in range(a))
    # part 0 of every experiment is where an unsplit run puts it
    first = AerSimulator().run(circuits, shots=100, memory=True, seed_simulator=11).result()
    for i in range(12):
        assert results.get_memory(i)[:100] == first.get_memory(i)


def test_part_bases_are_reproducible_and_never_meet():
    for seed in (0, 1, 2**40, 123456789):
        bases = part_seed_bases(seed, 6, 10_000)
        assert bases == part_seed_bases(seed, 6, 10_000) and bases[0] == seed
        span = AER_SEED_STRIDE * 10_000
        for a in range(6):
            for b in range(a):
                assert (bases[a] - bases[b]) % AER_SEED_STRIDE or abs(bases[a] - bases[b]) >= span
    plan = make_plan(25, 10, [4, 3, 3])
    seeds = job_seeds(plan, 5)
    assert seeds[:3] == [5, 5 + AER_SEED_STRIDE * 10, 5 + AER_SEED_STRIDE * 20]
    assert job_seeds(plan, None) == [None] * 9


def test_backend_option_seed_is_followed_too():
    backend = AerSimulator(seed_simulator=4)
    circuits = sweep(20)
    unsplit = AerSimulator().run(circuits, shots=50, seed_simulator=4).result()
    results = (
        qjm.JobManager(store=":memory:")
        .run(circuits, backend=backend, max_experiments_per_job=6, shots=50)
        .results(timeout=120)
    )
    assert all(results.get_counts(i) == unsplit.get_counts(i) for i in range(20))


# -- run options ---------------------------------------------------------------------------------


def test_options_real_clients_pass_are_passed_on(caplog):
    manager = qjm.JobManager(store=":memory:")
    options = dict(
        meas_level=2,
        meas_return="avg",
        rep_delay=None,
        coupling_map=[[0, 1]],
        basis_gates=["h", "rx", "ry", "measure"],
        init_qubits=True,
    )
    with caplog.at_level(logging.WARNING, logger="qjm"):
        job_set = manager.run(
            sweep(3), backend=AerSimulator(), shots=20, job_share_level="none", **options
        )
        assert job_set.results(timeout=60).success
        first = [r.getMessage() for r in caplog.records]
        caplog.clear()
        manager.run(sweep(3), backend=AerSimulator(), shots=20, **options).results(timeout=60)
        again = [r.getMessage() for r in caplog.records]
    for key in options:
        assert sum(f"'{key}'" in m for m in first) == 1, (key, first)
        assert not any(f"'{key}'" in m for m in again)  # logged once per process
    assert any("job_share_level" in m for m in first)


@pytest.mark.parametrize(
    "typo, hint", [("shot", "shots"), ("memroy", "memory"), ("seed_simulater", "seed_simulator")]
)
def test_a_typo_is_refused_before_anything_is_submitted(typo, hint):
    manager = qjm.JobManager(store=":memory:")
    with pytest.raises(ValueError, match=f"did you mean '{hint}'") as info:
        manager.run(sweep(2), backend=AerSimulator(), **{typo: 10})
    assert "check_options=False" in str(info.value)
    assert manager.job_sets() == []


def test_check_options_false_passes_a_typo_on():
    manager = qjm.JobManager(store=":memory:")
    job_set = manager.run(sweep(2), backend=AerSimulator(), shots=10, shot=5, check_options=False)
    assert job_set.results(timeout=60).success
    with pytest.raises(ValueError, match="shots"):
        manager.run(sweep(2), backend=AerSimulator(), shots=0, check_options=False)


# -- parameter binds -------------------------------------------------------------------------------


def test_parameter_binds_are_split_with_the_circuits_and_stored(tmp_path):
    theta = Parameter("θ")
    circuits = []
    for i in range(9):
        qc = QuantumCircuit(2, 2, name=f"p{i}")
        qc.rx(theta, 0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        circuits.append(qc)
    binds = [{theta: [0.3 * i]} for i in range(9)]
    options = dict(shots=200, seed_simulator=7, parameter_binds=binds)
    unsplit = AerSimulator().run(circuits, **options).result()
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        circuits, backend=AerSimulator(), max_experiments_per_job=4, **options
    )
    results = job_set.results(timeout=120)
    assert results.success, job_set.error_messages()
    assert all(results.get_counts(i) == unsplit.get_counts(i) for i in range(9))
    assert "kept in memory only" not in job_set.report()
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert again.results().get_counts(8) == unsplit.get_counts(8)
    row = qjm.JobManager(store=store)._store.job_set(job_set.job_set_id())
    stored, unstored = decode_run_options(row["run_options"])
    assert unstored == [] and stored["parameter_binds"] == binds


def test_parameter_binds_with_several_values_are_refused():
    theta = Parameter("t")
    qc = QuantumCircuit(1, 1, name="p")
    qc.rx(theta, 0)
    qc.measure(0, 0)
    manager = qjm.JobManager(store=":memory:")
    with pytest.raises(ValueError, match="one value per parameter"):
        manager.run(
            [qc, qc], backend=AerSimulator(), parameter_binds=[{theta: [1, 2]}, {theta: [3]}]
        )
    with pytest.raises(ValueError, match="one dict per circuit"):
        manager.run([qc, qc], backend=AerSimulator(), parameter_binds=[{theta: [1]}])
    assert manager.job_sets() == []


def test_run_options_encoding_round_trip_and_unstorable_noted():
    from qiskit_aer.noise import NoiseModel

    t = Parameter("t")
    options = {
        "a": [1, 2.5, None, True, "x"],
        "b": {t: [0.5]},
        "c": (1, 2),
        "d": 1 + 2j,
        "e": np.arange(3, dtype=np.int32),
        "f": {1: "one"},
        "noise_model": NoiseModel(),
    }
    text, unstored = encode_run_options(options)
    assert unstored == ["noise_model"]
    back, missing = decode_run_options(text)
    assert missing == ["noise_model"] and back["noise_model"] is None
    assert back["a"] == options["a"] and back["b"] == {t: [0.5]} and back["c"] == (1, 2)
    assert back["d"] == 1 + 2j and back["f"] == {1: "one"}
    assert back["e"].dtype == np.int32 and back["e"].tolist() == [0, 1, 2]
    job_set = qjm.JobManager(store=":memory:").run(
        sweep(2), backend=AerSimulator(), shots=10, noise_model=NoiseModel()
    )
    assert "kept in memory only (not in the store): noise_model" in job_set.report()


# -- the old job manager's API -------------------------------------------------------------------


class OneBackendProvider:
    """An old-style provider: ``get_backend(name)``."""

    def __init__(self, backend):
        self.backend = backend
        self.asked: list[str] = []

    def get_backend(self, name):
        self.asked.append(name)
        if name != self.backend.name:
            raise QiskitError(f"no backend {name}")
        return self.backend


def test_retrieve_job_set_with_a_provider_and_renames(tmp_path):
    store = tmp_path / "s.sqlite"
    backend = AerSimulator()
    job_set = qjm.IBMQJobManager(store=store).run(
        sweep(4), backend=backend, name="old", job_tags=["a", "b"], shots=10
    )
    job_set.results(timeout=60)
    assert job_set.update_name("new") == "new"
    assert job_set.update_tags(additional_tags=["c"], removal_tags=["a"]) == ["b", "c"]
    assert job_set.update_tags(replacement_tags=["z"]) == ["z"]
    provider = OneBackendProvider(backend)
    manager = qjm.JobManager(store=store)
    again = manager.retrieve_job_set(job_set_id=job_set.job_set_id(), provider=provider)
    assert provider.asked == [backend.name]
    assert again.name() == "new" and again.tags() == ["z"]
    assert again._backend is backend
    # the old positional form: retrieve_job_set(job_set_id, provider)
    positional = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), provider)
    assert positional._backend is backend
    with pytest.raises(TypeError, match="get_backend"):
        qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id(), provider=object())
    results = again.results()
    assert results.to_dict() == results.combine_results().to_dict()
    assert results.to_dict()["job_id"] == job_set.job_set_id()


# -- bad sizes -------------------------------------------------------------------------------------


class TinyShotsBackend(AerSimulator):
    """An Aer simulator that states a small shot limit, as devices do."""

    @property
    def max_shots(self):
        return 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shots=2**31), "2\\*\\*31"),
        (dict(shots=10**6, max_shots_per_job=10), "1000 parts|100000 parts"),
    ],
)
def test_absurd_shots_are_refused_before_anything_is_submitted(kwargs, match):
    manager = qjm.JobManager(store=":memory:")
    with pytest.raises(ValueError, match=match):
        manager.run(sweep(2), backend=AerSimulator(), **kwargs)
    with pytest.raises(ValueError, match="the backend's max_shots"):
        manager.run(sweep(2), backend=TinyShotsBackend(), shots=100_000)
    assert manager.job_sets() == []
    from qiskit.primitives import StatevectorSampler

    with pytest.raises(ValueError, match="2\\*\\*31"):
        manager.run([sweep(1)[0]], sampler=StatevectorSampler(), shots=2**31)
