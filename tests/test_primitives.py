"""Sampler V2 and Estimator V2 work as one job set: split, run, kept, merged back exactly."""

from __future__ import annotations

import time

import numpy as np
import pytest
from backends import OnceBackend, SlowBackend, SubmitFailBackend, WrappedBackend
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import (
    BackendSamplerV2,
    BaseEstimatorV2,
    BasePrimitiveJob,
    BaseSamplerV2,
    PrimitiveResult,
    StatevectorEstimator,
    StatevectorSampler,
)
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2 as AerEstimator
from qiskit_aer.primitives import SamplerV2 as AerSampler

import qjm
from qjm.exceptions import JobManagerTimeoutError, ManagedResultDataNotAvailable

THETA = Parameter("θ")
PHI = Parameter("φ")


def sampler_pubs(n: int = 6) -> list:
    """PUBs of several shapes, two registers, parameterised and not."""
    out = []
    for i in range(n):
        qc = QuantumCircuit(3, name=f"q{i}")
        qc.h(0)
        qc.rx(THETA, 1)
        qc.ry(PHI, 2)
        qc.cx(0, 2)
        qc.measure_all()
        if i % 3 == 2:
            out.append((qc.assign_parameters([0.3 * i, 0.1]),))
        else:
            values = np.linspace(0, np.pi, 2 * (i + 2)).reshape(i + 2, 2)
            out.append((qc, values.reshape(1, i + 2, 2) if i % 3 == 1 else values))
    qc = QuantumCircuit(4, name="two-registers")
    qc.h(range(4))
    qc.add_register(*[__import__("qiskit").ClassicalRegister(2, "alpha")])
    qc.add_register(*[__import__("qiskit").ClassicalRegister(2, "beta")])
    qc.measure([0, 1], qc.cregs[0])
    qc.measure([2, 3], qc.cregs[1])
    out.append(qc)
    return out


def estimator_pubs(n: int = 4) -> list:
    qc = QuantumCircuit(2, name="ansatz")
    qc.ry(THETA, 0)
    qc.cx(0, 1)
    qc.rx(PHI, 1)
    out = []
    for i in range(n):
        observables = [[SparsePauliOp("ZZ")], [SparsePauliOp.from_list([("XI", 0.5), ("IY", 1)])]]
        values = np.linspace(0, 1 + i, 6 * (i + 1)).reshape(3 * (i + 1), 2)
        out.append((qc, observables, values))
    return out


def _untimed(metadata: dict) -> dict:
    """Metadata without Aer's timings (which differ from run to run)."""
    return {k: v for k, v in metadata.items() if k != "simulator_metadata"}


def assert_same_sampler_result(got: PrimitiveResult, want: PrimitiveResult) -> None:
    assert isinstance(got, PrimitiveResult) and len(got) == len(want)
    assert got.metadata == want.metadata
    for i, (a, b) in enumerate(zip(got, want)):
        assert type(a) is type(b)
        assert list(a.data.keys()) == list(b.data.keys()), i
        assert a.data.shape == b.data.shape, i
        assert _untimed(a.metadata) == _untimed(b.metadata), i
        for name in b.data.keys():
            x, y = a.data[name], b.data[name]
            assert (x.shape, x.num_shots, x.num_bits) == (y.shape, y.num_shots, y.num_bits)
            assert np.array_equal(x.array, y.array), (i, name)


@pytest.mark.parametrize(
    "limits",
    [
        dict(max_pubs_per_job=2),
        dict(max_executions_per_job=700),  # cuts the larger PUBs along their sweeps
        dict(max_pubs_per_job=1, max_executions_per_job=300),
    ],
)
def test_statevector_sampler_split_equals_unsplit(limits):
    pubs = sampler_pubs()
    want = StatevectorSampler(seed=11).run(pubs, shots=100).result()
    job_set = qjm.JobManager(store=":memory:").run(
        pubs, sampler=StatevectorSampler(seed=11), shots=100, max_workers=3, **limits
    )
    results = job_set.results(timeout=120)
    assert len(job_set.managed_jobs()) > 2
    assert results.success and len(results) == len(pubs)
    assert_same_sampler_result(results.primitive_result(), want)
    for i in range(len(pubs)):
        for name in want[i].data.keys():
            assert results.get_counts(i, name) == want[i].data[name].get_counts()
    assert results.get_counts(len(pubs) - 1) == want[-1].join_data().get_counts()


def test_sweep_cut_report_names_the_parameter_sets():
    qc = QuantumCircuit(1, name="one")
    qc.rx(THETA, 0)
    qc.measure_all()
    job_set = qjm.JobManager(store=":memory:").run(
        [(qc, np.linspace(0, 1, 10))],
        sampler=StatevectorSampler(seed=1),
        shots=10,
        max_executions_per_job=40,
    )
    job_set.results(timeout=60)
    report = job_set.report(detailed=True)
    assert "PUB 0, parameter sets 0-3" in report and "PUB 0, parameter sets 8-9" in report
    assert len(job_set.managed_jobs()) == 3


def test_shot_parts_join_every_shot_with_seeds_of_their_own():
    pubs = sampler_pubs(4)
    job_set = qjm.JobManager(store=":memory:").run(
        pubs, sampler=StatevectorSampler(seed=5), shots=1000, max_shots_per_job=300
    )
    results = job_set.results(timeout=120)
    first_part = StatevectorSampler(seed=5).run(pubs, shots=250).result()
    seeds = {mj.seed for mj in job_set.managed_jobs()}
    assert len(seeds) == 4 and 5 not in seeds  # part 0: the sampler's own seed (None here)
    for i, pub_result in enumerate(results.primitive_result()):
        for name in pub_result.data.keys():
            bits = pub_result.data[name]
            assert bits.num_shots == 1000 and bits.shape == first_part[i].data[name].shape
            assert np.array_equal(bits.array[..., :250, :], first_part[i].data[name].array)
            parts = [bits.array[..., 250 * p : 250 * (p + 1), :] for p in range(4)]
            assert not any(np.array_equal(parts[a], parts[b]) for a in range(4) for b in range(a))
        assert pub_result.metadata["shots"] == 1000


def test_statevector_estimator_split_equals_unsplit():
    pubs = estimator_pubs()
    want = StatevectorEstimator().run(pubs).result()
    for limits in (dict(max_pubs_per_job=1), dict(max_executions_per_job=5)):
        results = (
            qjm.JobManager(store=":memory:")
            .run(pubs, estimator=StatevectorEstimator(), **limits)
            .results(timeout=60)
        )
        got = results.primitive_result()
        for a, b in zip(got, want):
            assert a.data.evs.shape == b.data.evs.shape
            assert np.array_equal(a.data.evs, b.data.evs)
            assert np.array_equal(a.data.stds, b.data.stds)
            assert a.metadata == b.metadata


@pytest.mark.parametrize("limits", [dict(max_executions_per_job=200), dict(max_pubs_per_job=1)])
def test_aer_sampler_split_equals_unsplit(limits):
    pubs = sampler_pubs(4)
    direct = AerSampler(seed=3).run(pubs, shots=64).result()
    job_set = qjm.JobManager(store=":memory:").run(
        pubs, sampler=AerSampler(seed=3), shots=64, **limits
    )
    results = job_set.results(timeout=120)
    assert len(job_set.managed_jobs()) > 3
    # Aer seeds bound circuit k of a run with seed + 2113 k: each job is seeded where the
    # unsplit run would be, so the samples are the same
    assert_same_sampler_result(results.primitive_result(), direct)
    for i in range(len(pubs)):
        bits = results.bitarray(i)  # the two-register PUB: both registers joined
        assert sum(results.get_counts(i).values()) == 64 * max(1, int(np.prod(bits.shape)))


def test_aer_estimator_split_equals_unsplit():
    epubs = estimator_pubs(2)
    exact = AerEstimator().run(epubs).result()
    got = qjm.JobManager(store=":memory:").run(
        epubs, estimator=AerEstimator(), max_executions_per_job=4
    )
    for a, b in zip(got.results(timeout=60).primitive_result(), exact):
        assert a.data.evs.shape == b.data.evs.shape
        np.testing.assert_allclose(a.data.evs, b.data.evs, atol=1e-12)


def test_expectation_value_and_counts_match_qiskit():
    pubs = sampler_pubs(3)
    results = (
        qjm.JobManager(store=":memory:")
        .run(pubs, sampler=StatevectorSampler(seed=2), shots=200, max_pubs_per_job=1)
        .results(timeout=60)
    )
    for i in range(3):
        bits = results[i].data.meas
        np.testing.assert_array_equal(
            np.asarray(results.expectation_value(i, "ZIZ", register="meas")),
            np.asarray(bits.expectation_values("ZIZ")),
        )
        assert results.get_counts(i, "meas") == bits.get_counts()
    with pytest.raises(Exception, match="no register 'nope'"):
        results.get_counts(0, "nope")


# -- backends that are slow, fail, serve a result once -----------------------------------------


def test_backend_sampler_over_a_read_once_backend_is_answered_from_the_store(tmp_path):
    backend = OnceBackend(inner=AerSimulator())
    pubs = sampler_pubs(4)
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        pubs, sampler=BackendSamplerV2(backend=backend), shots=50, max_pubs_per_job=2
    )
    first = job_set.results(timeout=120)
    assert first.success
    served = backend.results_served
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    second = again.results(timeout=10)
    assert backend.results_served == served  # nothing asked of the backend again
    assert_same_sampler_result(second.primitive_result(), first.primitive_result())
    assert again.report().count("PUBs") >= 1


def test_a_failed_job_leaves_its_pubs_missing_with_the_reason():
    pubs = sampler_pubs(6)
    # BackendSamplerV2 renames the bound circuits ("q3-17"): refuse by prefix
    backend = SubmitFailBackend(
        inner=AerSimulator(),
        fail_if=lambda circuits: any(c.name.startswith("q3") for c in circuits),
    )
    job_set = qjm.JobManager(store=":memory:").run(
        pubs, sampler=BackendSamplerV2(backend=backend), shots=20, max_pubs_per_job=2
    )
    results = job_set.results(timeout=120)
    assert not results.success and results.missing() == [2, 3]
    assert results[0].data.meas.num_shots == 20
    with pytest.raises(ManagedResultDataNotAvailable, match="submit refused"):
        results[3]
    with pytest.raises(ManagedResultDataNotAvailable):
        results.primitive_result()
    assert "submit refused" in job_set.error_messages()
    assert "partial results: none" in job_set.report(detailed=True)


class ShotLimitedBackend(WrappedBackend):
    """A backend that states a shot limit, as IBM backends do (``max_shots``)."""

    max_shots = 100


def test_the_primitives_backend_shot_limit_is_honoured():
    backend = ShotLimitedBackend(inner=AerSimulator())
    job_set = qjm.JobManager(store=":memory:").run(
        sampler_pubs(2), sampler=BackendSamplerV2(backend=backend), shots=250
    )
    results = job_set.results(timeout=60)
    assert len(job_set.managed_jobs()) == 3  # 250 shots as 84 + 83 + 83
    assert results[0].data.meas.num_shots == 250


def test_slow_backend_deadline_then_the_rest():
    backend = SlowBackend(inner=AerSimulator(), delay=1.5)
    job_set = qjm.JobManager(store=":memory:").run(
        sampler_pubs(3), sampler=BackendSamplerV2(backend=backend), shots=10, max_pubs_per_job=1
    )
    with pytest.raises(JobManagerTimeoutError) as info:
        job_set.results(timeout=0.2)
    assert "PUB" in str(info.value)
    assert job_set.results(timeout=60).success


# -- string statuses: a real BaseSamplerV2 whose jobs answer as qiskit-ibm-runtime's do -----------


class StringStatusJob(BasePrimitiveJob):
    """Wraps a qiskit PrimitiveJob; ``status()`` answers with a string, as runtime jobs do."""

    def __init__(self, inner: BasePrimitiveJob, polls_before_done: int = 3):
        super().__init__(inner.job_id())
        self._inner = inner
        self._polls = polls_before_done
        self.seen: list[str] = []

    def result(self):
        return self._inner.result()

    def status(self) -> str:
        self._polls -= 1
        if self._polls > 0:
            answer = "QUEUED"
        else:
            self._inner.result()
            answer = "DONE"
        self.seen.append(answer)
        return answer

    def done(self):
        return self.status() == "DONE"

    def running(self):
        return False

    def cancelled(self):
        return False

    def in_final_state(self):
        return self.done()

    def cancel(self):
        return False


class StringStatusSampler(BaseSamplerV2):
    def __init__(self, seed: int):
        self._inner = StatevectorSampler(seed=seed)
        self.jobs: list[StringStatusJob] = []

    def run(self, pubs, *, shots=None):
        job = StringStatusJob(self._inner.run(pubs, shots=shots))
        self.jobs.append(job)
        return job


def test_string_statuses_are_understood():
    sampler = StringStatusSampler(seed=4)
    job_set = qjm.JobManager(store=":memory:").run(
        sampler_pubs(3), sampler=sampler, shots=30, max_pubs_per_job=1
    )
    assert job_set.results(timeout=60).success
    assert all("QUEUED" in job.seen and job.seen[-1] == "DONE" for job in sampler.jobs)
    assert job_set.statuses() == [JobStatus.DONE] * 4  # three PUBs and the two-register one


# -- ManagedSampler / ManagedEstimator ----------------------------------------------------------


def test_managed_sampler_and_estimator_are_drop_in(tmp_path):
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    sampler = qjm.ManagedSampler(StatevectorSampler(seed=9), manager=manager, max_pubs_per_job=2)
    assert isinstance(sampler, BaseSamplerV2)
    pubs = sampler_pubs(5)
    job = sampler.run(pubs, shots=40)
    assert isinstance(job, BasePrimitiveJob)
    assert_same_sampler_result(
        job.result(), StatevectorSampler(seed=9).run(pubs, shots=40).result()
    )
    assert job.status() == JobStatus.DONE and job.done() and job.in_final_state()
    assert manager.retrieve_job_set(job.job_id()).results().success
    estimator = qjm.ManagedEstimator(StatevectorEstimator(), manager=manager)
    assert isinstance(estimator, BaseEstimatorV2)
    epubs = estimator_pubs(2)
    got = estimator.run(epubs, precision=0.0).result()
    want = StatevectorEstimator().run(epubs, precision=0.0).result()
    assert all(np.array_equal(a.data.evs, b.data.evs) for a, b in zip(got, want))


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "work, kwargs, error, match",
    [
        ([object()], dict(sampler=StatevectorSampler()), TypeError, "PUB 0 is not a valid"),
        ("abc", dict(sampler=StatevectorSampler()), TypeError, "list of PUBs"),
        ([], dict(sampler=StatevectorSampler()), ValueError, "no PUBs"),
        (
            [QuantumCircuit(1)],
            dict(estimator=StatevectorEstimator()),
            ValueError,
            "needs observables",
        ),
        (
            [QuantumCircuit(1)],
            dict(sampler=StatevectorSampler(), backend=AerSimulator()),
            ValueError,
            "exactly one of",
        ),
        ([QuantumCircuit(1)], dict(), ValueError, "exactly one of"),
        ([], dict(sampler=StatevectorSampler(), max_pubs_per_job=0), ValueError, "at least 1"),
        (
            [],
            dict(sampler=StatevectorSampler(), max_executions_per_job=-1),
            ValueError,
            "at least 1",
        ),
        ([], dict(sampler=StatevectorSampler(), shot=10), ValueError, "did you mean 'shots'"),
        ([], dict(estimator=StatevectorEstimator(), max_shots_per_job=5), ValueError, "no shots"),
        ([], dict(sampler=StatevectorSampler(), max_experiments_per_job=5), ValueError, "backend="),
    ],
)
def test_bad_input_is_refused_before_anything_is_submitted(work, kwargs, error, match):
    manager = qjm.JobManager(store=":memory:")
    with pytest.raises(error, match=match):
        manager.run(work, **kwargs)
    assert manager.job_sets() == []


class NoDefaultShotsSampler(StatevectorSampler):
    """A real sampler that states no default shots (as qiskit-ibm-runtime's leaves it unset)."""

    @property
    def default_shots(self):
        return None


def test_limits_on_shots_need_known_shots():
    manager = qjm.JobManager(store=":memory:")
    for limits in (dict(max_shots_per_job=10), dict(max_executions_per_job=100)):
        with pytest.raises(ValueError, match="pass shots="):
            manager.run(sampler_pubs(2), sampler=NoDefaultShotsSampler(), **limits)
    assert manager.job_sets() == []
    job_set = manager.run(
        sampler_pubs(2), sampler=NoDefaultShotsSampler(), shots=30, max_shots_per_job=10
    )
    assert job_set.results(timeout=60)[0].data.meas.num_shots == 30


def test_retrieved_local_sampler_set_says_it_cannot_reattach(tmp_path):
    store = tmp_path / "s.sqlite"
    backend = SlowBackend(inner=AerSimulator(), delay=None)  # held until released
    job_set = qjm.JobManager(store=store).run(
        sampler_pubs(2), sampler=BackendSamplerV2(backend=backend), shots=10
    )
    job_set.jobs()  # submitted
    again = qjm.JobManager(store=store).retrieve_job_set(
        job_set.job_set_id(), sampler=StatevectorSampler()
    )
    results = again.results(timeout=5)
    assert not results.success
    assert "cannot look up jobs by id" in again.error_messages()
    # BackendSamplerV2 calls backend.run in its job's thread: release once that job exists
    for _ in range(500):
        if backend.submitted:
            break
        time.sleep(0.01)
    backend.release_all()
    assert job_set.results(timeout=60).success
