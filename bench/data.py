"""Real Aer results for the benchmark, replicated to size.

Outcomes come from ``AerSimulator(method="stabilizer")`` running circuits with a 27-qubit register,
an H on every qubit and a measurement of each into a 27-bit classical register: uniformly random
27-bit outcomes, written by Aer as hex without leading zeros (so their lengths vary inside one
experiment, as on any Aer result). Where a size would take minutes to simulate (10,000 experiments
of 1,000 distinct keys), a pool of real experiments is replicated and each copy is perturbed: its
keys are XORed with a random 27-bit mask (a bijection, so every copy keeps the pool's number of
distinct keys and its counts, and stays uniformly random), then written back as Aer writes them
(``hex(x)``). Every replicated experiment is a distinct object with its own strings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData

WIDTH = 27  # clbits of every benchmark outcome


def _sim():
    from qiskit_aer import AerSimulator

    return AerSimulator(method="stabilizer")


def h_circuit(name: str, width: int = WIDTH) -> QuantumCircuit:
    """``width`` qubits, H on each, each measured into its own clbit of one ``width``-bit register."""
    qc = QuantumCircuit(width, width, name=name)
    qc.h(range(width))
    qc.measure(range(width), range(width))
    return qc


def run_h(
    n: int, shots: int, memory: bool, seed: int, prefix: str, same_name: bool = False
) -> Result:
    """One Aer job of ``n`` random-outcome circuits of ``shots`` shots each (named ``prefix``
    when ``same_name``: the shot parts of one experiment, else ``prefix0``, ``prefix1``...)."""
    circuits = [h_circuit(prefix if same_name else f"{prefix}{i}") for i in range(n)]
    return _sim().run(circuits, shots=shots, memory=memory, seed_simulator=seed).result()


def result_fields(result: Result) -> dict:
    """The keyword arguments that rebuild ``result`` around other experiments."""
    return dict(
        backend_name=result.backend_name,
        backend_version=result.backend_version,
        job_id=result.job_id,
        success=result.success,
        date=result.date,
        status=result.status,
        header=result.header,
        **result._metadata,
    )


def with_experiments(template: Result, experiments: list, job_id: str | None = None) -> Result:
    """A ``Result`` like ``template`` (same backend fields) holding ``experiments``."""
    fields = result_fields(template)
    if job_id is not None:
        fields["job_id"] = job_id
    return Result(results=list(experiments), **fields)


def split_experiments(result: Result) -> list[Result]:
    """One single-experiment ``Result`` per experiment of ``result`` (as separate jobs return)."""
    return [
        with_experiments(result, [exp], job_id=f"{result.job_id}-{i}")
        for i, exp in enumerate(result.results)
    ]


def _perturbed(exp: ExperimentResult, name: str, mask: int) -> ExperimentResult:
    """A copy of ``exp`` named ``name`` with every outcome XORed with ``mask`` (new strings)."""
    d = exp.to_dict()
    data = d.pop("data")
    header = dict(d.pop("header"))
    header["name"] = name
    new_data = {}
    m = np.uint64(mask)
    if "counts" in data:
        counts = data["counts"]
        keys = np.array([int(k, 16) for k in counts], dtype=np.uint64) ^ m
        new_data["counts"] = dict(zip(map(hex, keys.tolist()), counts.values()))
    if "memory" in data:
        mem = np.array([int(k, 16) for k in data["memory"]], dtype=np.uint64) ^ m
        new_data["memory"] = list(map(hex, mem.tolist()))
    return ExperimentResult(
        d.pop("shots"), d.pop("success"), ExperimentResultData(**new_data), header=header, **d
    )


def replicate(pool: Result, n: int, seed: int, prefix: str = "c") -> list[ExperimentResult]:
    """``n`` experiments: the pool's own first (renamed), then perturbed copies of it."""
    rng = np.random.default_rng(seed)
    out = []
    size = len(pool.results)
    for j in range(n):
        mask = 0 if j < size else int(rng.integers(1, 1 << WIDTH))
        out.append(_perturbed(pool.results[j % size], f"{prefix}{j}", mask))
    return out


@dataclass
class Sizes:
    """Sizes of every case; ``full()`` is issue 3's table, ``quick()`` a small one for tests."""

    merge_parts: int  # jobs (shot parts) merged into one experiment
    merge_shots: int  # shots per part (about as many distinct keys)
    memory_experiments: int  # experiments of memory for get_memory
    memory_shots: int  # shots per such experiment; decode uses all of them as one list
    counts_experiments: int  # experiments for get_counts and the memory footprint
    counts_shots: int  # shots per experiment (about as many distinct keys)
    counts_pool: int  # real Aer experiments behind them (the rest are perturbed copies)
    counts_chunk: int  # experiments per job of the ManagedResults
    marginal_shots: int  # shots of the marginal case (about as many distinct keys)
    marginal_bits: int  # bits kept by the marginal
    e2e_circuits: int  # circuits of the end-to-end case
    e2e_qubits: int
    e2e_shots: int
    e2e_chunk: int  # max_experiments_per_job of the end-to-end qjm run
    e2e_workers: int  # max_workers of the end-to-end qjm run
    sampler_shots: int  # shots of the one Sampler V2 PUB of the bitarray_counts case
    join_parts: int  # shot parts joined by the join_shots case (slices of that PUB's shots)
    join_shots: int  # shots per part
    sampler_e2e_pubs: int  # PUBs (random transpiled circuits) of the sampler end-to-end case
    sampler_e2e_qubits: int
    sampler_e2e_depth: int  # depth given to qiskit's random_circuit
    sampler_e2e_shots: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            merge_parts=100,
            merge_shots=10_000,
            memory_experiments=10,
            memory_shots=100_000,
            counts_experiments=10_000,
            counts_shots=1_000,
            counts_pool=100,
            counts_chunk=100,
            marginal_shots=100_000,
            marginal_bits=10,
            e2e_circuits=10_000,
            e2e_qubits=5,
            e2e_shots=1_000,
            e2e_chunk=1_000,
            e2e_workers=2,
            sampler_shots=1_000_000,
            join_parts=100,
            join_shots=10_000,
            sampler_e2e_pubs=10_000,
            sampler_e2e_qubits=5,
            sampler_e2e_depth=4,
            sampler_e2e_shots=1_000,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            merge_parts=10,
            merge_shots=1_000,
            memory_experiments=2,
            memory_shots=10_000,
            counts_experiments=200,
            counts_shots=100,
            counts_pool=20,
            counts_chunk=20,
            marginal_shots=10_000,
            marginal_bits=10,
            e2e_circuits=200,
            e2e_qubits=5,
            e2e_shots=100,
            e2e_chunk=50,
            e2e_workers=2,
            sampler_shots=20_000,
            join_parts=10,
            join_shots=1_000,
            sampler_e2e_pubs=200,
            sampler_e2e_qubits=5,
            sampler_e2e_depth=4,
            sampler_e2e_shots=100,
        )


class Data:
    """The Aer results the cases read, each made on first use (so ``--only`` makes only its own)
    and kept for the run. ``seconds`` records how long each took to make."""

    def __init__(self, sizes: Sizes, log=print):
        self.sizes = sizes
        self.log = log
        self.seconds: dict[str, float] = {}
        self._cache: dict[str, object] = {}

    def _step(self, key: str, what: str, fn):
        if key not in self._cache:
            t = time.perf_counter()
            self._cache[key] = fn()
            self.seconds[what] = time.perf_counter() - t
            self.log(f"  data: {what} ({self.seconds[what]:.1f} s)")
        return self._cache[key]

    @property
    def merge(self) -> Result:
        """``merge_parts`` experiments of ``merge_shots`` shots: the shot parts of one experiment."""
        s = self.sizes
        return self._step(
            "merge",
            f"merge: Aer {s.merge_parts} x {s.merge_shots} shots",
            lambda: run_h(s.merge_parts, s.merge_shots, False, 11, "h27", same_name=True),
        )

    @property
    def memory(self) -> Result:
        """``memory_experiments`` experiments of ``memory_shots`` shots with memory."""
        s = self.sizes
        return self._step(
            "memory",
            f"memory: Aer {s.memory_experiments} x {s.memory_shots} shots, memory=True",
            lambda: run_h(s.memory_experiments, s.memory_shots, True, 12, "m"),
        )

    @property
    def memory2(self) -> Result:
        """As many again, another seed: the second fetch thread's result."""
        s = self.sizes
        return self._step(
            "memory2",
            f"memory (second list): Aer {s.memory_experiments} x {s.memory_shots} shots, "
            "memory=True",
            lambda: run_h(s.memory_experiments, s.memory_shots, True, 13, "n"),
        )

    @property
    def counts_experiments(self) -> list[ExperimentResult]:
        """``counts_experiments`` experiments: ``counts_pool`` real ones, then perturbed copies."""
        s = self.sizes
        pool = self._step(
            "pool",
            f"counts pool: Aer {s.counts_pool} x {s.counts_shots} shots",
            lambda: run_h(s.counts_pool, s.counts_shots, False, 14, "pool"),
        )
        return self._step(
            "replicas",
            f"counts: replicate the pool to {s.counts_experiments} experiments",
            lambda: replicate(pool, s.counts_experiments, seed=15),
        )

    @property
    def counts(self) -> Result:
        """Every counts experiment in one ``Result``."""
        exps = self.counts_experiments
        pool = self._cache["pool"]
        return self._step(
            "counts", "counts: one Result", lambda: with_experiments(pool, exps, "bench-counts")
        )

    @property
    def counts_jobs(self) -> list[Result]:
        """The same experiments as jobs of ``counts_chunk`` experiments each."""
        exps = self.counts_experiments
        pool = self._cache["pool"]
        k = self.sizes.counts_chunk
        return self._step(
            "counts_jobs",
            f"counts: Results of {k} experiments",
            lambda: [
                with_experiments(pool, exps[i : i + k], job_id=f"bench-counts-{i // k}")
                for i in range(0, len(exps), k)
            ],
        )

    @property
    def marginal(self) -> Result:
        """One experiment of ``marginal_shots`` shots."""
        s = self.sizes
        return self._step(
            "marginal",
            f"marginal: Aer 1 x {s.marginal_shots} shots",
            lambda: run_h(1, s.marginal_shots, False, 16, "marg"),
        )

    @property
    def sampler(self):
        """The ``BitArray`` of one PUB of ``sampler_shots`` shots, from Aer's ``SamplerV2``
        (stabilizer method) on the 27-qubit H circuit: as a Sampler V2 result holds it."""
        s = self.sizes

        def run():
            from qiskit_aer.primitives import SamplerV2

            sampler = SamplerV2(seed=18, options={"backend_options": {"method": "stabilizer"}})
            result = sampler.run([h_circuit("sampler")], shots=s.sampler_shots).result()
            return result[0].data.c

        return self._step("sampler", f"sampler: Aer SamplerV2 1 PUB x {s.sampler_shots} shots", run)

    @property
    def sampler_parts(self) -> list:
        """``join_parts`` BitArrays of ``join_shots`` shots each: consecutive slices of the
        sampler PUB's shots, each copied into an array of its own (as separate jobs return
        them)."""
        from qiskit.primitives import BitArray

        s = self.sizes
        ba = self.sampler
        if s.join_parts * s.join_shots > ba.num_shots:
            raise ValueError("join_parts * join_shots exceeds sampler_shots")
        return self._step(
            "sampler_parts",
            f"sampler parts: {s.join_parts} slices of {s.join_shots} shots",
            lambda: [
                BitArray(
                    ba.array[..., i * s.join_shots : (i + 1) * s.join_shots, :].copy(),
                    ba.num_bits,
                )
                for i in range(s.join_parts)
            ],
        )

    @property
    def sampler_pubs(self) -> list[QuantumCircuit]:
        """``sampler_e2e_pubs`` random circuits transpiled for ``AerSimulator``: the PUBs of the
        sampler end-to-end case (see :func:`sampler_circuits`)."""
        s = self.sizes
        return self._step(
            "sampler_pubs",
            f"sampler PUBs: {s.sampler_e2e_pubs} random {s.sampler_e2e_qubits}-qubit circuits "
            f"of depth {s.sampler_e2e_depth}, transpiled for AerSimulator",
            lambda: sampler_circuits(s.sampler_e2e_pubs, s.sampler_e2e_qubits, s.sampler_e2e_depth),
        )


def sampler_circuits(n: int, qubits: int, depth: int) -> list[QuantumCircuit]:
    """``n`` circuits ``qiskit.circuit.random.random_circuit(qubits, depth, seed=i)`` for ``i`` in
    ``0..n-1``, each with ``measure_all()`` (one register, ``meas``), transpiled for
    ``AerSimulator`` (optimization level 1, one pass manager over the list): PUBs of a Sampler
    V2, as a user hands them after transpiling."""
    from qiskit.circuit.random import random_circuit
    from qiskit.transpiler import generate_preset_pass_manager
    from qiskit_aer import AerSimulator

    raw = []
    for i in range(n):
        qc = random_circuit(qubits, depth, measure=False, seed=i)
        qc.measure_all()
        raw.append(qc)
    return generate_preset_pass_manager(backend=AerSimulator(), optimization_level=1).run(raw)


def e2e_circuits(n: int, qubits: int, seed: int = 17) -> list[QuantumCircuit]:
    """``n`` named random circuits: two layers of seeded RX angles (H on about half), a CX chain,
    every qubit measured."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        qc = QuantumCircuit(qubits, qubits, name=f"e{i}")
        for _layer in range(2):
            for q in range(qubits):
                if rng.random() < 0.5:
                    qc.h(q)
                qc.rx(float(rng.uniform(0, np.pi)), q)
            for q in range(qubits - 1):
                qc.cx(q, q + 1)
        qc.measure(range(qubits), range(qubits))
        out.append(qc)
    return out
