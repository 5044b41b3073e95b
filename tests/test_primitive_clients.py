"""Real primitive clients through qjm: qiskit-ibm-runtime's V2 primitives in local mode on a fake
device, and qiskit-algorithms (VQE, SamplingVQE, Grover) unchanged on ManagedEstimator /
ManagedSampler.

Seeds in qiskit-ibm-runtime's local mode (measured on 0.51 with qiskit-aer 0.18.2): the primitive
hands ``options.simulator.seed_simulator`` to qiskit's ``BackendSamplerV2`` / ``BackendEstimatorV2``,
which bind every PUB of a job (every parameter set, and for the estimator every measurement basis)
into one flat list of circuits and run them as ONE ``backend.run(..., seed_simulator=S)``; Aer seeds
circuit ``k`` of that call with ``S + 2113 * k``. A PUB's samples therefore depend on how many
circuits come before it in its job. qjm gives every job of a split run the sampler's own seed ``S``
(only shot parts get seeds of their own), so a split run reproduces the unsplit run exactly for the
PUBs of the first job only; every later job samples exactly as the same PUBs run directly with seed
``S``. The tests assert both, and the Aer seeding rule that explains the difference.

qiskit's ``StatevectorSampler(seed=int)`` seeds every parameter set with the same integer, wherever
it sits, and ``StatevectorEstimator`` is exact: through qjm, split or not, the algorithms get
exactly the numbers they get directly, so their results must be equal, not merely close.

The packages are in the ``test`` extra: a missing one fails these tests, it does not skip them.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit import Parameter
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives import (
    PrimitiveResult,
    SamplerPubResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_algorithms import VQE, AmplificationProblem, Grover, SamplingVQE
from qiskit_algorithms.gradients import ParamShiftEstimatorGradient
from qiskit_algorithms.optimizers import SLSQP, SPSA
from qiskit_algorithms.utils import algorithm_globals
from qiskit_ibm_runtime import EstimatorV2 as RuntimeEstimator
from qiskit_ibm_runtime import SamplerV2 as RuntimeSampler
from qiskit_ibm_runtime.fake_provider import FakeManilaV2

import qjm

pytestmark = [
    # qiskit-ibm-runtime 0.50+ deprecates its SamplerV2 / EstimatorV2 classes (local mode still
    # works), and PUBs of different shots in one job; nothing else is silenced
    pytest.mark.filterwarnings("ignore:The (Sampler|Estimator)V2 class is deprecated"),
    pytest.mark.filterwarnings("ignore:Specifying different 'shots' across pubs"),
]

SEED = 1234
AER_SEED_STRIDE = 2113  # Aer seeds circuit k of one run with seed_simulator + 2113 * k
THETA = Parameter("θ")
ALPHA = Parameter("α")
BETA = Parameter("β")


# -- qiskit-ibm-runtime, local mode ------------------------------------------------------------


@pytest.fixture(scope="module")
def device():
    return FakeManilaV2()


@pytest.fixture(scope="module")
def isa(device):
    """``isa(circuit)``: the circuit transpiled to the fake device's target."""
    pm = generate_preset_pass_manager(backend=device, optimization_level=1, seed_transpiler=5)
    return pm.run


def runtime_sampler(device, seed: int | None = SEED) -> RuntimeSampler:
    sampler = RuntimeSampler(mode=device)
    if seed is not None:
        sampler.options.simulator.seed_simulator = seed
    return sampler


def runtime_estimator(device, seed: int = SEED) -> RuntimeEstimator:
    estimator = RuntimeEstimator(mode=device)
    estimator.options.simulator.seed_simulator = seed
    return estimator


def _sampler_pubs(isa) -> list:
    """Four PUBs in the fake device's ISA: two without parameters (registers "meas" and "c"), a
    sweep of shape (2, 3) over two registers ("a", "b") and a sweep of shape (4,) of two
    parameters. Each parameter set gives a different distribution."""
    bell = QuantumCircuit(2, name="bell")
    bell.h(0)
    bell.cx(0, 1)
    bell.measure_all()

    ghz = QuantumCircuit(3, 3, name="ghz")
    ghz.h(0)
    ghz.cx(0, 1)
    ghz.cx(1, 2)
    ghz.measure(range(3), range(3))

    q = QuantumRegister(3, "q")
    sweep = QuantumCircuit(q, ClassicalRegister(1, "a"), ClassicalRegister(2, "b"), name="sweep")
    sweep.h(0)
    sweep.cx(0, 1)
    sweep.rx(THETA, 2)
    sweep.measure(0, sweep.cregs[0][0])
    sweep.measure([1, 2], sweep.cregs[1])

    two = QuantumCircuit(2, name="two")
    two.ry(ALPHA, 0)
    two.rx(BETA, 1)
    two.cx(0, 1)
    two.measure_all()

    return [
        (isa(bell),),
        (isa(ghz),),
        (isa(sweep), np.linspace(0.0, np.pi, 6).reshape(2, 3, 1)),
        (isa(two), np.array([[0.2, 0.4], [0.9, 1.3], [1.7, 0.1], [2.8, 2.2]])),
    ]


def _assert_same_bits(got, want) -> None:
    """Two BitArrays hold the same shots, bit for bit."""
    assert got.shape == want.shape
    assert got.num_shots == want.num_shots
    assert got.num_bits == want.num_bits
    np.testing.assert_array_equal(got.array, want.array)


def _flat(bits, start: int, stop: int):
    """Parameter sets ``start .. stop-1`` of a BitArray's flattened shape."""
    return bits.reshape(bits.size)[start:stop]


def test_runtime_local_sampler_split_into_jobs(device, isa):
    """Runtime's SamplerV2 in local mode, split by PUBs per job and by executions per job (so two
    sweeps are cut), against the unsplit run with the same seed.

    Every PUB and register has the unsplit shape, shots and bits, and equals the unsplit run
    exactly: the job that starts at flat circuit k of the unsplit run is given seed + 2113 * k,
    Aer's own rule inside one run."""
    pubs = _sampler_pubs(isa)
    sampler = runtime_sampler(device)
    unsplit = sampler.run(pubs, shots=200).result()

    manager = qjm.JobManager(store=":memory:")
    try:
        # pieces: bell 200, ghz 200, sweep[0:3] 600, sweep[3:6] 600, two[0:3] 600, two[3:4] 200
        job_set = manager.run(
            pubs, sampler=sampler, shots=200, max_pubs_per_job=2, max_executions_per_job=600
        )
        res = job_set.results(timeout=120)

        # the jobs qjm gave the runtime sampler: the PUBs of each (LocalRuntimeJob.inputs)
        jobs = job_set.jobs()
        submitted = [[(tuple(p.shape), p.shots) for p in job.inputs["pubs"]] for job in jobs]
        assert submitted == [
            [((), 200), ((), 200)],
            [((3,), 200)],
            [((3,), 200)],
            [((3,), 200)],
            [((1,), 200)],
        ]
        # runtime's local-mode jobs are qiskit PrimitiveJobs: status() is a JobStatus, not a str
        for job in jobs:
            assert type(job.status()) is JobStatus
            assert job.status() is JobStatus.DONE
        assert job_set.statuses() == [JobStatus.DONE] * 5
        assert job_set.backend_name() == device.name

        combined = res.primitive_result()
        assert isinstance(combined, PrimitiveResult)
        assert len(combined) == len(res) == len(unsplit) == 4
        for i, want in enumerate(unsplit):
            got = res[i]
            assert isinstance(got, SamplerPubResult)
            assert list(got.data) == list(want.data)  # the same registers, in the same order
            assert got.data.shape == want.data.shape
            assert got.metadata["shots"] == want.metadata["shots"] == 200
            for reg in want.data:
                g, w = got.data[reg], want.data[reg]
                assert (g.shape, g.num_shots, g.num_bits) == (w.shape, w.num_shots, w.num_bits)
                _assert_same_bits(combined[i].data[reg], g)
                _assert_same_bits(res.bitarray(i, reg), g)
                assert res.get_counts(i, reg) == g.get_counts()
                assert sum(g.get_counts().values()) == w.size * 200
        assert [tuple(r.data.shape) for r in unsplit] == [(), (), (2, 3), (4,)]

        # every PUB equals the unsplit run exactly: the job whose first piece is flat circuit k
        # of the unsplit run was given seed + 2113 * k (Aer's own rule inside one run)
        for i in range(4):
            for reg in unsplit[i].data:
                _assert_same_bits(res[i].data[reg], unsplit[i].data[reg])
                assert res.get_counts(i, reg) == unsplit[i].data[reg].get_counts()
        # flat offsets of the jobs' first pieces: bell 0, sweep[0:3] 2, sweep[3:6] 5,
        # two[0:3] 8, two[3:4] 11
        seeds = [mj.seed for mj in job_set.managed_jobs()]
        assert seeds == [None] + [SEED + AER_SEED_STRIDE * k for k in (2, 5, 8, 11)]
    finally:
        manager.shutdown()


def test_runtime_local_sampler_shot_parts(device, isa):
    """A PUB of 900 shots cut into three parts of 300 (``max_shots_per_job=300``), on runtime's
    SamplerV2 directly and through ManagedSampler.

    The joined BitArray holds all 900 shots. Part 0 keeps the sampler's seed and equals the PUB
    run directly with 300 shots; parts 1 and 2 ran on copies of the sampler whose
    ``options.simulator.seed_simulator`` is the seed ``report()`` lists for their job (each equals
    a direct run with it), distinct from the sampler's; the sampler itself is not changed. The
    seeds derive from the sampler's, so a second run, through ManagedSampler, samples the same."""
    circuit = _sampler_pubs(isa)[1][0]  # ghz, register "c"
    sampler = runtime_sampler(device)
    manager = qjm.JobManager(store=":memory:")
    try:
        job_set = manager.run([circuit], sampler=sampler, shots=900, max_shots_per_job=300)
        res = job_set.results(timeout=120)
        assert [[p.shots for p in job.inputs["pubs"]] for job in job_set.jobs()] == [[300]] * 3
        assert sampler.options.simulator.seed_simulator == SEED  # a copy got the other seeds

        bits = res.bitarray(0, "c")
        assert (bits.shape, bits.num_shots, bits.num_bits) == ((), 900, 3)
        assert sum(res.get_counts(0, "c").values()) == 900
        assert res[0].metadata["shots"] == 900

        seeds = [int(s) for s in re.findall(r"shot part seed: (\d+)", job_set.report())]
        assert len(seeds) == 2 and len({SEED, *seeds}) == 3
        for part, seed in enumerate([SEED, *seeds]):
            direct = runtime_sampler(device, seed).run([circuit], shots=300).result()[0]
            _assert_same_bits(bits.slice_shots(range(300 * part, 300 * (part + 1))), direct.data.c)
        assert not np.array_equal(bits.array[300:600], bits.array[:300])

        managed = qjm.ManagedSampler(sampler, manager=manager, max_shots_per_job=300)
        job = managed.run([circuit], shots=900)
        again = job.result(timeout=120)
        assert job.status() is JobStatus.DONE
        assert len(manager.retrieve_job_set(job.job_id()).statuses()) == 3
        _assert_same_bits(again[0].data.c, bits)
    finally:
        manager.shutdown()


def test_runtime_local_sampler_retrieved_from_store(device, isa, tmp_path):
    """A runtime local-mode job set in a SQLite store, retrieved by another JobManager (with the
    sampler, and without): the same PUB results, bit for bit, from the store."""
    pubs = _sampler_pubs(isa)
    path = tmp_path / "jobsets.sqlite"
    manager = qjm.JobManager(store=str(path))
    try:
        job_set = manager.run(pubs, sampler=runtime_sampler(device), shots=100, max_pubs_per_job=1)
        first = job_set.results(timeout=120).primitive_result()
        job_set_id = job_set.job_set_id()
    finally:
        manager.shutdown()
    assert len(first) == 4

    other = qjm.JobManager(store=str(path))
    try:
        for kwargs in ({"sampler": runtime_sampler(device)}, {}):
            again = other.retrieve_job_set(job_set_id, **kwargs).results(timeout=30)
            assert again.success
            for i, want in enumerate(first):
                assert list(again[i].data) == list(want.data)
                for reg in want.data:
                    _assert_same_bits(again[i].data[reg], want.data[reg])
    finally:
        other.shutdown()


def _estimator_pubs(isa, precision: float | None = None) -> list:
    """Three estimator PUBs in the device's ISA, observables mapped to each circuit's layout: shape
    () , (2,) and (2, 3) (observables (2, 1) broadcast against 3 parameter sets). The (2, 3) PUB's
    values differ along both axes (cos θ, then sin θ), so a misplaced element shows."""
    bell = QuantumCircuit(2, name="bell")
    bell.h(0)
    bell.cx(0, 1)
    ry = QuantumCircuit(2, name="ry")
    ry.ry(THETA, 0)
    ry.cx(0, 1)

    bell_isa, ry_isa = isa(bell), isa(ry)

    def obs(label: str, circuit) -> SparsePauliOp:
        return SparsePauliOp(label).apply_layout(circuit.layout)

    return [
        (bell_isa, obs("ZZ", bell_isa)),
        (bell_isa, [obs("XX", bell_isa), obs("ZI", bell_isa)]),
        (ry_isa, [[obs("ZI", ry_isa)], [obs("XX", ry_isa)]], [[0.0], [np.pi / 2], [np.pi]]),
    ]


def test_runtime_local_estimator_split_into_jobs(device, isa):
    """Runtime's EstimatorV2 in local mode, split by PUBs and executions per job (the (2, 3) PUB
    is cut 4 + 2), against the unsplit run with the same seed: the same shapes and metadata; the
    first job's PUBs (flat circuits first in both runs) have the unsplit values exactly; the cut
    PUB's pieces equal the pieces run directly with the seed, and agree with the unsplit values
    within their standard errors (they were sampled at other seeds: see the module docstring)."""
    pubs = _estimator_pubs(isa)
    estimator = runtime_estimator(device)
    unsplit = estimator.run(pubs, precision=0.05).result()

    manager = qjm.JobManager(store=":memory:")
    try:
        job_set = manager.run(
            pubs, estimator=estimator, precision=0.05, max_pubs_per_job=2, max_executions_per_job=4
        )
        res = job_set.results(timeout=120)
        jobs = job_set.jobs()
        assert [[tuple(p.shape) for p in job.inputs["pubs"]] for job in jobs] == [
            [(), (2,)],
            [(4,)],
            [(2,)],
        ]
        for job in jobs:
            assert type(job.status()) is JobStatus

        combined = res.primitive_result()
        assert len(combined) == len(unsplit) == 3
        for i, want in enumerate(unsplit):
            got = res[i]
            assert type(got) is type(want)
            assert got.data.shape == want.data.shape
            assert got.data.evs.shape == want.data.evs.shape == got.data.stds.shape
            assert got.metadata["shots"] == want.metadata["shots"] == 400
            assert got.metadata["target_precision"] == want.metadata["target_precision"]
            np.testing.assert_array_equal(combined[i].data.evs, got.data.evs)
        assert [r.data.shape for r in unsplit] == [(), (2,), (2, 3)]

        for i in (0, 1):
            np.testing.assert_array_equal(res[i].data.evs, unsplit[i].data.evs)
            np.testing.assert_array_equal(res[i].data.stds, unsplit[i].data.stds)

        circuit, observables, values = pubs[2]
        flat_obs = [observables[0][0]] * 3 + [observables[1][0]] * 3
        flat_values = np.array(values * 2)
        for start, stop in [(0, 4), (4, 6)]:
            direct = runtime_estimator(device).run(
                [(circuit, flat_obs[start:stop], flat_values[start:stop])], precision=0.05
            )
            direct = direct.result()[0]
            np.testing.assert_array_equal(res[2].data.evs.reshape(-1)[start:stop], direct.data.evs)
            np.testing.assert_array_equal(
                res[2].data.stds.reshape(-1)[start:stop], direct.data.stds
            )

        got, want = res[2].data, unsplit[2].data
        error = np.hypot(got.stds, want.stds)
        assert np.all(np.abs(got.evs - want.evs) <= 6 * error + 0.02), (got.evs, want.evs)
        ideal = np.array([np.cos([0, np.pi / 2, np.pi]), np.sin([0, np.pi / 2, np.pi])])
        assert np.all(np.abs(got.evs - ideal) < 0.3), got.evs  # the device's noise, no more
    finally:
        manager.shutdown()


# -- qiskit-algorithms, unchanged, on ManagedEstimator / ManagedSampler ------------------------

# H2 at 0.735 Å, parity mapping with two-qubit reduction; ground energy -1.857275030202378
H2 = SparsePauliOp.from_list(
    [
        ("II", -1.052373245772859),
        ("IZ", 0.39793742484318045),
        ("ZI", -0.39793742484318045),
        ("ZZ", -0.01128010425623538),
        ("XX", 0.18093119978423156),
    ]
)
H2_GROUND = -1.857275030202378


def _vqe(estimator):
    """VQE on H2 with SLSQP and parameter-shift gradients, both through ``estimator``; the energy
    of every evaluation kept by the callback."""
    history = []
    vqe = VQE(
        estimator,
        real_amplitudes(2, reps=1),
        SLSQP(maxiter=15),
        gradient=ParamShiftEstimatorGradient(estimator),
        initial_point=np.array([0.1, -0.2, 0.3, 0.4]),
        callback=lambda count, params, value, meta: history.append((count, list(params), value)),
    )
    return vqe.compute_minimum_eigenvalue(H2), history


def test_vqe_on_managed_estimator_equals_direct():
    """qiskit-algorithms' VQE (and its parameter-shift gradient) on a ManagedEstimator over
    StatevectorEstimator, with gradient PUBs (8 parameter sets) cut 3 + 3 + 2 into jobs, gives
    the energy, optimal point, evaluation count and every evaluated energy of VQE on
    StatevectorEstimator, exactly."""
    manager = qjm.JobManager(store=":memory:")
    try:
        managed = qjm.ManagedEstimator(
            StatevectorEstimator(), manager=manager, max_executions_per_job=3
        )
        got, got_history = _vqe(managed)
        want, want_history = _vqe(StatevectorEstimator())

        assert got.eigenvalue == want.eigenvalue
        assert abs(want.eigenvalue - H2_GROUND) < 1e-6
        np.testing.assert_array_equal(got.optimal_point, want.optimal_point)
        assert got.cost_function_evals == want.cost_function_evals > 1
        assert got_history == want_history

        sets = manager.job_sets()
        jobs = [len(job_set.statuses()) for job_set in sets]
        assert len(sets) > want.cost_function_evals  # the gradients ran through qjm too
        assert 3 in jobs  # a gradient PUB of 8 parameter sets was cut 3 + 3 + 2
        assert all(s == JobStatus.DONE for job_set in sets for s in job_set.statuses())
    finally:
        manager.shutdown()


# a diagonal Hamiltonian on 3 qubits for SamplingVQE (ground state |100>: energy -1.3)
ISING = SparsePauliOp.from_list([("ZZI", 1.0), ("IZZ", 1.0), ("ZIZ", 1.0), ("ZII", 0.3)])


def _sampling_vqe(sampler):
    """SamplingVQE with SPSA (fixed learning rate and perturbation, seeded, evaluating its two
    perturbed points in one call: two PUBs per sampler run)."""
    algorithm_globals.random_seed = 7
    optimizer = SPSA(maxiter=8, learning_rate=0.2, perturbation=0.1)
    optimizer.set_max_evals_grouped(4)
    ansatz = real_amplitudes(3, reps=1)
    vqe = SamplingVQE(
        sampler, ansatz, optimizer, initial_point=np.linspace(0.1, 0.6, ansatz.num_parameters)
    )
    return vqe.compute_minimum_eigenvalue(ISING)


def test_sampling_vqe_on_managed_sampler_equals_direct():
    """qiskit-algorithms' SamplingVQE on ManagedSampler(StatevectorSampler(seed=S)), one PUB per
    job, gives the eigenvalue, optimal point, best measurement and eigenstate of SamplingVQE on
    StatevectorSampler(seed=S), exactly."""
    manager = qjm.JobManager(store=":memory:")
    try:
        managed = qjm.ManagedSampler(
            StatevectorSampler(seed=SEED, default_shots=500), manager=manager, max_pubs_per_job=1
        )
        got = _sampling_vqe(managed)
        want = _sampling_vqe(StatevectorSampler(seed=SEED, default_shots=500))

        assert got.eigenvalue == want.eigenvalue
        np.testing.assert_array_equal(got.optimal_point, want.optimal_point)
        assert got.best_measurement == want.best_measurement
        assert want.best_measurement["bitstring"] == "100"
        assert dict(got.eigenstate) == dict(want.eigenstate)
        assert got.cost_function_evals == want.cost_function_evals

        jobs = [len(job_set.statuses()) for job_set in manager.job_sets()]
        assert 2 in jobs  # SPSA's two points in one run: two PUBs, two jobs
    finally:
        manager.shutdown()


# qiskit-algorithms 0.4.0 builds its Grover operator with qiskit APIs deprecated in Qiskit 2.1
@pytest.mark.filterwarnings("ignore:The class ``qiskit.circuit.library.grover_operator")
@pytest.mark.filterwarnings("ignore:The method ``qiskit.circuit.library.standard_gates.x.MCXGate")
@pytest.mark.filterwarnings(r"ignore:``qiskit\.circuit\.quantumcircuit\.QuantumCircuit\.mcx\(\)``")
def test_grover_on_managed_sampler_equals_direct():
    """qiskit-algorithms' Grover on ManagedSampler(StatevectorSampler(seed=S)) gives the
    measured distributions, top measurement and iterations of Grover on the sampler itself."""
    oracle = QuantumCircuit(3)
    oracle.x(1)
    oracle.h(2)
    oracle.ccx(0, 1, 2)
    oracle.h(2)
    oracle.x(1)  # marks |101>

    def amplify(sampler):
        problem = AmplificationProblem(oracle, is_good_state=lambda bits: bits == "111")
        return Grover(iterations=[0, 1, 2], sampler=sampler).amplify(problem)

    manager = qjm.JobManager(store=":memory:")
    try:
        got = amplify(qjm.ManagedSampler(StatevectorSampler(seed=SEED), manager=manager))
        want = amplify(StatevectorSampler(seed=SEED))
    finally:
        manager.shutdown()

    assert want.iterations == [0, 1, 2]  # "111" is never good: every power ran
    assert want.top_measurement == "101"
    assert got.iterations == want.iterations
    assert got.circuit_results == want.circuit_results
    assert got.top_measurement == want.top_measurement
    assert got.max_probability == want.max_probability
    assert len(manager.job_sets()) == 3
