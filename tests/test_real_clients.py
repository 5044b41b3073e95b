"""Real Qiskit client libraries, unchanged, run through qjm give what they give run directly.

qiskit-experiments (``T1``, ``StandardRB``) gets its data from ``combine_results()`` in an
``ExperimentData``; mthree calibrates from qjm's counts and corrects qjm's counts. Each run through
qjm is split into several jobs and uses the seed of the direct run, and a split run samples as the
unsplit run does, so the fitted and corrected values must be equal, not merely close.

The packages are in the ``test`` extra: a missing one fails these tests, it does not skip them.
"""

from __future__ import annotations

import math

import mthree
import mthree.utils
import numpy as np
import pytest
from client_backends import JobManagerBackend
from qiskit import QuantumCircuit, transpile
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.result import Result
from qiskit_aer import AerSimulator
from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
from qiskit_experiments.framework import AnalysisStatus, ExperimentData
from qiskit_experiments.library import T1, StandardRB

import qjm

REL = 1e-9  # "equal": the same samples give the same fit up to float noise
DEVICE_GATES = ["cx", "id", "rz", "sx", "x"]  # GenericBackendV2's default basis


def _noisy_backend(num_qubits: int, seed: int, noise_model: NoiseModel | None = None):
    """An Aer simulator of a generic device: its target (with each qubit's T1 and T2) and, unless
    ``noise_model`` is given, the noise model Aer derives from it (thermal relaxation during
    delays, gate and readout errors)."""
    device = GenericBackendV2(num_qubits=num_qubits, basis_gates=DEVICE_GATES, seed=seed)
    if noise_model is None:
        return AerSimulator.from_backend(device)
    return AerSimulator.from_backend(device, noise_model=noise_model)


def _fitted(expdata: ExperimentData) -> dict:
    """Every analysis result (value, error, quality) and the fit's parameters and chi-square."""
    assert expdata.analysis_status() == AnalysisStatus.DONE, expdata.analysis_errors()
    frame = expdata.analysis_results(dataframe=True)
    assert len(frame) > 0
    out = {}
    for _, row in frame.iterrows():
        value = row["value"]
        out[row["name"]] = (
            float(getattr(value, "nominal_value", value)),
            float(getattr(value, "std_dev", 0.0)),
            row["quality"],
        )
    fit = expdata.artifacts("fit_summary").data
    for name, param in fit.ufloat_params.items():
        out[f"param:{name}"] = (float(param.nominal_value), float(param.std_dev), None)
    out["chisq"] = (float(fit.chisq), 0.0, None)
    return out


def _assert_same_fit(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, (value, error, quality) in want.items():
        g_value, g_error, g_quality = got[name]
        assert g_value == pytest.approx(value, rel=REL, abs=1e-300), name
        assert g_error == pytest.approx(error, rel=REL, abs=1e-300), name
        assert g_quality == quality, name


def _run_experiment_through_qjm(exp, backend, max_experiments_per_job, manager=None):
    """What ``exp.run(backend)`` submits, submitted through qjm instead: the experiment's
    transpiled circuits and its run options (defaults such as ``meas_level`` included), unchanged.
    """
    circuits = exp._transpiled_circuits()
    run_options = dict(exp.run_options.__dict__)
    assert "meas_level" in run_options  # a default run option Aer does not declare
    manager = manager if manager is not None else qjm.JobManager(store=":memory:")
    job_set = manager.run(
        circuits, backend=backend, max_experiments_per_job=max_experiments_per_job, **run_options
    )
    return circuits, run_options, job_set


def _analyse(exp, combined: Result) -> ExperimentData:
    """The experiment's own analysis on an ``ExperimentData`` fed with qjm's combined result."""
    expdata = ExperimentData(experiment=exp)
    expdata.add_data(combined)
    return exp.analysis.run(expdata).block_for_results()


def _check_experiment_data(expdata, direct, circuits, results, job_set, shots) -> None:
    """qjm's data, as the experiment reads it, is the direct run's: counts per circuit, metadata
    (headers), shots, measurement level; it carries the job set id as its one job id."""
    assert expdata.job_ids == [job_set.job_set_id()]
    assert len(expdata.data()) == len(circuits) == len(direct.data())
    for i, circuit in enumerate(circuits):
        got, want = expdata.data(i), direct.data(i)
        assert got["counts"] == want["counts"] == results.get_counts(i), i
        assert sum(got["counts"].values()) == shots
        assert got["metadata"] == want["metadata"] == circuit.metadata, i
        assert got["shots"] == shots
        assert got["meas_level"] == want["meas_level"] == 2
        assert got["job_id"] == job_set.job_set_id()


# -- qiskit-experiments: T1 ----------------------------------------------------------------------

T1_SEED = 2718
T1_SHOTS = 400


@pytest.fixture(scope="module")
def t1_direct():
    """T1 on qubit 0 of a noisy simulator, run directly (qiskit-experiments' default path)."""
    backend = _noisy_backend(2, seed=42)
    t1 = backend.target.qubit_properties[0].t1
    exp = T1(physical_qubits=(0,), delays=np.linspace(0, 3 * t1, 9), backend=backend)
    exp.set_run_options(seed_simulator=T1_SEED, shots=T1_SHOTS)
    direct = exp.run(backend).block_for_results()
    fit = _fitted(direct)
    # a sane fit, so that the comparison below compares something meaningful
    assert fit["T1"][0] == pytest.approx(t1, rel=0.3)
    return backend, exp, direct, fit


@pytest.mark.parametrize(
    "max_experiments_per_job, num_jobs",
    [(2, 5), (4, 3), (None, 1)],
    ids=["5-jobs", "3-jobs", "1-job"],
)
def test_t1_through_qjm_fits_the_same_t1(t1_direct, max_experiments_per_job, num_jobs):
    backend, exp, direct, direct_fit = t1_direct
    circuits, run_options, job_set = _run_experiment_through_qjm(
        exp, backend, max_experiments_per_job
    )
    assert len(job_set.jobs()) == num_jobs
    results = job_set.results(timeout=120)
    assert results.success
    combined = results.combine_results()
    assert isinstance(combined, Result)
    assert combined.job_id == job_set.job_set_id()
    assert len(combined.results) == len(circuits)
    for i, circuit in enumerate(circuits):
        assert combined.results[i].header["metadata"] == circuit.metadata
        assert combined.get_counts(i) == results.get_counts(i)

    expdata = _analyse(exp, combined)
    _check_experiment_data(expdata, direct, circuits, results, job_set, run_options["shots"])
    _assert_same_fit(_fitted(expdata), direct_fit)


# -- qiskit-experiments: StandardRB, through the default (SQLite) store --------------------------


def test_standard_rb_from_a_retrieved_job_set_fits_the_same_epc():
    """RB circuits carry tuples in their metadata (``count_ops``), which its analysis reads; the
    job set is read back from the store by a new manager before the analysis."""
    noise = NoiseModel(basis_gates=DEVICE_GATES)
    noise.add_all_qubit_quantum_error(depolarizing_error(0.004, 1), ["sx", "x"])
    noise.add_all_qubit_readout_error(ReadoutError([[0.97, 0.03], [0.05, 0.95]]))
    backend = _noisy_backend(2, seed=42, noise_model=noise)
    exp = StandardRB(
        physical_qubits=(0,), lengths=[1, 30, 90, 200], num_samples=3, seed=5, backend=backend
    )
    exp.set_run_options(seed_simulator=31415, shots=300)
    direct = exp.run(backend).block_for_results()
    direct_fit = _fitted(direct)
    assert {"alpha", "EPC"} <= direct_fit.keys()

    circuits, run_options, job_set = _run_experiment_through_qjm(
        exp, backend, 5, manager=qjm.JobManager()
    )
    assert len(job_set.jobs()) == math.ceil(len(circuits) / 5) > 1
    job_set.results(timeout=120)
    retrieved = qjm.JobManager().retrieve_job_set(job_set.job_set_id())
    results = retrieved.results(timeout=120)
    combined = results.combine_results()
    assert combined.job_id == job_set.job_set_id()

    expdata = _analyse(exp, combined)
    _check_experiment_data(expdata, direct, circuits, results, job_set, run_options["shots"])
    _assert_same_fit(_fitted(expdata), direct_fit)


# -- mthree: calibration through qjm, correction of qjm's counts ----------------------------------

M3_QUBITS = [0, 1, 2]
M3_CAL_SHOTS = 2000
M3_CAL_SEED = 4242
M3_SHOTS = 2000
M3_SEED = 777


def _m3_backend():
    """Three qubits with distinct, asymmetric readout errors and nothing else."""
    noise = NoiseModel(basis_gates=DEVICE_GATES)
    for qubit, p in zip(M3_QUBITS, (0.03, 0.05, 0.08)):
        noise.add_readout_error(ReadoutError([[1 - p, p], [2 * p, 1 - 2 * p]]), [qubit])
    return _noisy_backend(len(M3_QUBITS), seed=7, noise_model=noise)


def _m3_circuits(backend) -> list:
    ghz = QuantumCircuit(3, name="ghz")
    ghz.h(0)
    ghz.cx(0, 1)
    ghz.cx(1, 2)
    ones = QuantumCircuit(3, name="ones")
    ones.x([0, 1, 2])
    mixed = QuantumCircuit(3, name="mixed")
    mixed.h(0)
    mixed.x(2)
    for circuit in (ghz, ones, mixed):
        circuit.measure_all()
    return transpile(
        [ghz, ones, mixed],
        backend,
        initial_layout=M3_QUBITS,
        optimization_level=0,
        seed_transpiler=1,
    )


@pytest.mark.parametrize("method", ["independent", "balanced"])
def test_mthree_calibrated_and_applied_through_qjm_corrects_the_same(method):
    # mthree passes no seed of its own: the backends carry it in their options, as a user would
    # seed a simulator that mthree runs on.
    direct_backend = _m3_backend()
    direct_backend.set_options(seed_simulator=M3_CAL_SEED)
    backend = _m3_backend()
    backend.set_options(seed_simulator=M3_CAL_SEED)

    # Directly: mthree runs its calibration circuits on the backend (in one job).
    direct_mit = mthree.M3Mitigation(direct_backend)
    direct_mit.cals_from_system(M3_QUBITS, shots=M3_CAL_SHOTS, method=method)

    # Through qjm: the same calls of mthree; its backend.run goes to JobManager.run, split into
    # jobs of 2 circuits, and it reads the calibration counts from qjm's ManagedResults.
    manager = qjm.JobManager(store=":memory:")
    system = JobManagerBackend(backend, manager, max_experiments_per_job=2)
    mit = mthree.M3Mitigation(system)
    mit.cals_from_system(M3_QUBITS, shots=M3_CAL_SHOTS, method=method)
    cals = mit.cals_to_matrices()  # waits for mthree's calibration thread, raises its error
    assert len(system.job_sets) == 1
    assert len(system.job_sets[0].jobs()) > 1
    direct_cals = direct_mit.cals_to_matrices()
    for qubit in M3_QUBITS:
        assert np.array_equal(cals[qubit], direct_cals[qubit]), (qubit, cals, direct_cals)

    # The circuits to correct, seeded by a run option: directly, read with qiskit's Result, and
    # through qjm (3 jobs of 1), read with qjm's get_counts.
    circuits = _m3_circuits(direct_backend)
    direct_result = direct_backend.run(circuits, shots=M3_SHOTS, seed_simulator=M3_SEED).result()
    direct_counts = [direct_result.get_counts(i) for i in range(len(circuits))]
    job_set = manager.run(
        circuits,
        backend=backend,
        max_experiments_per_job=1,
        shots=M3_SHOTS,
        seed_simulator=M3_SEED,
    )
    results = job_set.results(timeout=120)
    counts = [results.get_counts(i) for i in range(len(circuits))]
    assert counts == direct_counts

    quasis = mit.apply_correction(counts, M3_QUBITS, return_mitigation_overhead=True)
    direct_quasis = direct_mit.apply_correction(
        direct_counts, M3_QUBITS, return_mitigation_overhead=True
    )
    for i, (quasi, direct_quasi) in enumerate(zip(quasis, direct_quasis)):
        assert quasi.keys() == direct_quasi.keys(), i
        for key, value in direct_quasi.items():
            assert quasi[key] == pytest.approx(value, rel=REL, abs=1e-15), (i, key)
        assert quasi.shots == direct_quasi.shots == M3_SHOTS
        assert quasi.mitigation_overhead == pytest.approx(direct_quasi.mitigation_overhead, rel=REL)
    expvals = np.asarray(quasis.expval())
    assert expvals == pytest.approx(np.asarray(direct_quasis.expval()), rel=REL, abs=1e-15)

    # The raw expectation values agree too (qjm's own, exact, reading of its counts included;
    # mthree computes in float32), and the correction from qjm's calibration moves the prepared
    # |111> towards its ideal <ZZZ> = -1.
    raw = np.asarray(mthree.utils.expval(counts))
    assert raw == pytest.approx(np.asarray(mthree.utils.expval(direct_counts)), rel=REL)
    for i, direct in enumerate(direct_counts):
        parity = sum((-1) ** key.count("1") * n for key, n in direct.items()) / M3_SHOTS
        assert results.expectation_value(i, "ZZZ") == pytest.approx(parity, rel=1e-12, abs=1e-15)
        assert raw[i] == pytest.approx(parity, abs=1e-6)
    ones = [c.name for c in circuits].index("ones")
    assert abs(expvals[ones] + 1) < abs(raw[ones] + 1) / 3
