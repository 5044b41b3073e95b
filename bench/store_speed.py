"""``python -m bench.store_speed``: what a user pays for the store and the pool, qjm before and after
issue 13 (batched writes, lazy loads, each result held once), side by side in one run.

    python -m bench.store_speed --before /tmp/qjm-before     # writes bench/RESULTS-store.md
    python -m bench.store_speed --quick                      # small sizes, prints only

``--before DIR`` names a directory holding another qjm package (``DIR/qjm``, with its compiled
kernels), e.g. the tree before a change::

    mkdir -p /tmp/qjm-before && git archive <commit> qjm | tar -x -C /tmp/qjm-before
    cp qjm/_merge.cpython-*.so /tmp/qjm-before/qjm/

Every measurement runs in a fresh child process (``python bench/store_speed.py --child ...``) with
``PYTHONPATH`` naming the qjm tree it measures, so "before" and "after" never share a process, a
heap or a store. What a user gets, in every headline row:

* ``JobManager()`` defaults: the SQLite file at ``$QJM_HOME/jobsets.sqlite`` (a fresh
  ``QJM_HOME`` per repetition), 8 worker threads;
* Python's garbage collector as a user has it (enabled, never frozen, no ``gc.collect()`` inside
  a timer);
* memory: what a live job set (and its ``results()``) holds, measured with ``tracemalloc``, next to
  the qiskit ``Result`` a user would hold instead.

The backend of the throughput rows is :class:`InstantBackend`: a real ``BackendV2`` whose jobs are
``JobV1`` objects DONE at once, whose ``Result`` is built in ``run()`` from precomputed
``AerSimulator`` experiments (5 qubits, 40 shots: ~22 count keys per experiment, Aer's real
headers and metadata), one new ``ExperimentResult`` per circuit, named after the circuit. So the
times are qjm's own costs (plus building the ``Result`` objects, which the baseline pays too).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "RESULTS-store.md"
POOL_SIZE = 64
QUBITS = 5
SHOTS = 40


# ------------------------------------------------------------------------------------------------
# The instant backend (built in the child)
# ------------------------------------------------------------------------------------------------


def make_pool(path: Path) -> None:
    """Run Aer once on POOL_SIZE circuits; keep the Result as a pickle (bench data, trusted)."""
    from qiskit_aer import AerSimulator

    circuits = make_circuits(POOL_SIZE)
    result = AerSimulator(method="stabilizer").run(circuits, shots=SHOTS, seed_simulator=7).result()
    path.write_bytes(pickle.dumps(result))


def make_circuits(n: int) -> list:
    from qiskit.circuit import QuantumCircuit

    base = QuantumCircuit(QUBITS, QUBITS)
    base.h(range(QUBITS))
    base.measure(range(QUBITS), range(QUBITS))
    return [base.copy(name=f"c{i}") for i in range(n)]


def instant_backend(pool_path: Path) -> Any:
    import itertools
    import threading
    import uuid

    from qiskit.circuit.library import HGate, Measure
    from qiskit.providers import BackendV2, JobStatus, JobV1, Options
    from qiskit.result import Result
    from qiskit.result.models import ExperimentResult, ExperimentResultData
    from qiskit.transpiler import Target

    pool = pickle.loads(pool_path.read_bytes())
    templates = []
    for exp in pool.results:
        templates.append(
            (
                dict(exp.data.counts),
                dict(exp.header),
                dict(exp._metadata.get("metadata") or exp.to_dict().get("metadata") or {}),
                exp.meas_level,
                exp.seed_simulator if hasattr(exp, "seed_simulator") else None,
                getattr(exp, "time_taken", 0.0),
            )
        )
    job_metadata = dict(vars(pool).get("_metadata", {}))

    class InstantJob(JobV1):
        def __init__(self, backend: Any, job_id: str, result: Result):
            super().__init__(backend, job_id)
            self._result = result

        def submit(self) -> None:
            return None

        def status(self) -> JobStatus:
            return JobStatus.DONE

        def result(self, timeout: float | None = None) -> Result:
            return self._result

    class InstantBackend(BackendV2):
        def __init__(self) -> None:
            super().__init__(name="instant_backend", backend_version="1.0")
            # as a simulator's Target: every operation on any qubits (as AerSimulator's)
            target = Target(num_qubits=QUBITS)
            target.add_instruction(HGate())
            target.add_instruction(Measure())
            self._target = target
            self._serial = itertools.count()
            self._prefix = uuid.uuid4().hex[:8]
            self._lock = threading.Lock()

        @classmethod
        def _default_options(cls) -> Options:
            return Options(shots=SHOTS, memory=False, seed_simulator=None)

        @property
        def target(self) -> Target:
            return self._target

        @property
        def max_circuits(self) -> None:
            return None

        def run(self, run_input: Any, **options: Any) -> InstantJob:
            circuits = run_input if isinstance(run_input, list) else [run_input]
            with self._lock:
                serial = next(self._serial)
            job_id = f"instant-{self._prefix}-{serial:07d}"
            experiments = []
            for k, circuit in enumerate(circuits):
                # the experiment a circuit gets depends on its name only (the same in any
                # process and in any submission order)
                name = circuit.name
                i = int(name[1:]) if name[:1] == "c" and name[1:].isdigit() else k
                counts, header, metadata, level, seed, taken = templates[i % len(templates)]
                experiments.append(
                    ExperimentResult(
                        SHOTS,
                        True,
                        ExperimentResultData(counts=dict(counts)),
                        meas_level=level,
                        status="DONE",
                        seed_simulator=i if seed is None else seed + i,
                        header=dict(header, name=circuit.name),
                        metadata=dict(metadata),
                        time_taken=taken,
                    )
                )
            result = Result(
                backend_name=self.name,
                backend_version=self.backend_version,
                job_id=job_id,
                success=True,
                results=experiments,
                date=datetime.datetime.now().isoformat(),
                status="COMPLETED",
                header=None,
                **{k: v for k, v in job_metadata.items() if k not in ("header",)},
            )
            return InstantJob(self, job_id, result)

    return InstantBackend()


# ------------------------------------------------------------------------------------------------
# Child cases (each prints one JSON line)
# ------------------------------------------------------------------------------------------------


def _qjm_info() -> dict:
    import qjm
    from qjm._kernels import IMPLEMENTATION

    return {"qjm_file": qjm.__file__, "kernels": IMPLEMENTATION}


def child_throughput(args: argparse.Namespace) -> dict:
    """run + results (+ get_counts of all) of n circuits on the instant backend."""
    backend = instant_backend(Path(args.pool))
    circuits = make_circuits(args.n)
    per_job = args.per_job or None
    out: dict[str, Any] = {"n": args.n, "per_job": per_job}
    if args.side == "baseline":
        k = per_job or args.n
        t0 = time.perf_counter()
        jobs = [backend.run(circuits[i : i + k], shots=SHOTS) for i in range(0, args.n, k)]
        results = [job.result() for job in jobs]
        t1 = time.perf_counter()
        counts = [r.get_counts(j) for r in results for j in range(len(r.results))]
        t2 = time.perf_counter()
        out.update(run_results=t1 - t0, get_counts=t2 - t1, keys=sum(map(len, counts)))
        return out
    import qjm

    home = tempfile.mkdtemp(prefix="qjm-bench-home-")
    os.environ["QJM_HOME"] = home
    try:
        t0 = time.perf_counter()
        manager = qjm.JobManager()
        job_set = manager.run(
            circuits, backend=backend, max_experiments_per_job=per_job, shots=SHOTS
        )
        results = job_set.results()
        t1 = time.perf_counter()
        counts = [results.get_counts(i) for i in range(args.n)]
        t2 = time.perf_counter()
        assert results.success
        out.update(
            run_results=t1 - t0,
            get_counts=t2 - t1,
            keys=sum(map(len, counts)),
            jobs=len(job_set.managed_jobs()),
            store=manager.store_path,
            store_bytes=sum(
                os.path.getsize(manager.store_path + suffix)
                for suffix in ("", "-wal")
                if os.path.exists(manager.store_path + suffix)
            ),
        )
        out.update(_qjm_info())
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


def child_make_set(args: argparse.Namespace) -> dict:
    """A finished job set in the store at args.store (and the Results a user would pickle)."""
    import qjm

    backend = instant_backend(Path(args.pool))
    circuits = make_circuits(args.n)
    manager = qjm.JobManager(store=args.store)
    job_set = manager.run(
        circuits, backend=backend, max_experiments_per_job=args.per_job or None, shots=SHOTS
    )
    results = job_set.results()
    assert results.success
    if args.pickle:  # what a user without qjm would keep: the Results of the same jobs
        k = args.per_job or args.n
        kept = [backend.run(circuits[i : i + k]).result() for i in range(0, args.n, k)]
        Path(args.pickle).write_bytes(pickle.dumps(kept, protocol=5))
    digest = _counts_digest([results.get_counts(i) for i in range(args.n)])
    return {"id": job_set.job_set_id(), "digest": digest, **_qjm_info()}


def _counts_digest(counts: list) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in counts:
        h.update(json.dumps(sorted(dict(c).items())).encode())
    return h.hexdigest()[:16]


def child_retrieve(args: argparse.Namespace) -> dict:
    """In a new process: retrieve_job_set + statuses(), report(), results() + get_counts of all,
    and job_sets(); or the baseline: pickle.load of the Results + get_counts of all."""
    if args.side == "baseline":
        t0 = time.perf_counter()
        kept = pickle.loads(Path(args.pickle).read_bytes())
        t1 = time.perf_counter()
        counts = [r.get_counts(j) for r in kept for j in range(len(r.results))]
        t2 = time.perf_counter()
        return {
            "load": t1 - t0,
            "get_counts": t2 - t1,
            "total": t2 - t0,
            "digest": _counts_digest(counts),
        }
    import qjm

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    manager = qjm.JobManager(store=args.store)
    job_set = manager.retrieve_job_set(args.id)
    t1 = time.perf_counter()
    statuses = job_set.statuses()
    t2 = time.perf_counter()
    job_set.report(detailed=False)
    t3 = time.perf_counter()
    results = job_set.results()
    t4 = time.perf_counter()
    counts = [results.get_counts(i) for i in range(len(results))]
    t5 = time.perf_counter()
    out.update(
        retrieve=t1 - t0,
        statuses=t2 - t1,
        retrieve_statuses=t2 - t0,
        report=t3 - t2,
        results=t4 - t3,
        get_counts=t5 - t4,
        results_get_counts=t5 - t3,
        n_jobs=len(statuses),
        digest=_counts_digest(counts),
    )
    out.update(_qjm_info())
    return out


def child_job_sets(args: argparse.Namespace) -> dict:
    """In a new process: JobManager(store).job_sets(), then the name and len of each."""
    import qjm

    t0 = time.perf_counter()
    sets = qjm.JobManager(store=args.store).job_sets()
    t1 = time.perf_counter()
    names = [(s.name(), s.job_set_id()) for s in sets]
    t2 = time.perf_counter()
    return {"job_sets": t1 - t0, "names": t2 - t1, "n_sets": len(names), **_qjm_info()}


def child_memory(args: argparse.Namespace) -> dict:
    """Memory held: the qiskit Result of an Aer run (baseline), or a live qjm job set and its
    results() (JobManager() defaults), measured with tracemalloc."""
    import tracemalloc

    from qiskit.circuit import QuantumCircuit
    from qiskit_aer import AerSimulator

    qubits, n, shots = args.bits, args.n, args.shots
    circuits = []
    for i in range(n):
        qc = QuantumCircuit(qubits, qubits, name=f"m{i}")
        qc.h(range(qubits))
        qc.measure(range(qubits), range(qubits))
        circuits.append(qc)
    backend = AerSimulator(method="stabilizer")
    out: dict[str, Any] = {"n": n, "shots": shots, "bits": qubits}
    if args.side == "baseline":
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        result = backend.run(circuits, shots=shots, memory=True, seed_simulator=11).result()
        out["seconds"] = time.perf_counter() - t0
        gc.collect()
        out["held"] = tracemalloc.get_traced_memory()[0] - base
        out["peak"] = tracemalloc.get_traced_memory()[1] - base
        assert len(result.get_memory(0)) == shots
        return out
    import qjm

    home = tempfile.mkdtemp(prefix="qjm-bench-home-")
    os.environ["QJM_HOME"] = home
    try:
        manager = qjm.JobManager()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        job_set = manager.run(
            circuits, backend=backend, shots=shots, memory=True, seed_simulator=11
        )
        results = job_set.results()
        out["seconds"] = time.perf_counter() - t0
        gc.collect()
        out["held"] = tracemalloc.get_traced_memory()[0] - base
        out["peak"] = tracemalloc.get_traced_memory()[1] - base
        assert results.success and len(results.get_memory(0)) == shots
        del results, job_set
        gc.collect()
        out["after_drop"] = tracemalloc.get_traced_memory()[0] - base
        out.update(_qjm_info())
        return out
    finally:
        shutil.rmtree(home, ignore_errors=True)


CHILDREN = {
    "throughput": child_throughput,
    "make_set": child_make_set,
    "retrieve": child_retrieve,
    "job_sets": child_job_sets,
    "memory": child_memory,
}


# ------------------------------------------------------------------------------------------------
# The parent
# ------------------------------------------------------------------------------------------------


class Runner:
    def __init__(self, before: str | None, pool: Path, timeout: float):
        self.trees = {"after": str(REPO)}
        if before:
            self.trees["before"] = str(Path(before).resolve())
        self.pool = pool
        self.timeout = timeout
        self.log: list[str] = []

    def child(self, tree: str | None, case: str, **kw: Any) -> dict:
        args = [
            sys.executable,
            str(HERE / "store_speed.py"),
            "--child",
            case,
            "--pool",
            str(self.pool),
        ]
        for key, value in kw.items():
            if value is not None:
                args += [f"--{key.replace('_', '-')}", str(value)]
        env = dict(os.environ)
        path = [self.trees[tree]] if tree else []
        env["PYTHONPATH"] = os.pathsep.join(path + [str(REPO)])
        env.pop("QJM_PUREPYTHON", None)
        t0 = time.perf_counter()
        proc = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=self.timeout, cwd="/"
        )
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"child {case} {tree} {kw} failed:\n{proc.stderr[-4000:]}")
        line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
        out = json.loads(line)
        out["wall"] = took
        out["load"] = os.getloadavg()[0]
        msg = f"{case:10s} {tree or 'baseline':8s} {kw}: " + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in out.items()
            if k not in ("qjm_file", "store")
        )
        print(msg, flush=True)
        self.log.append(msg)
        return out


def _best(runs: list[dict], key: str) -> float:
    return min(r[key] for r in runs)


def _fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _fmt_rate(n: float, s: float) -> str:
    r = n / s
    return f"{r / 1e3:.1f} k/s" if r >= 1e3 else f"{r:.0f}/s"


def _mb(b: float) -> str:
    return f"{b / 1e6:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="a directory holding the qjm package to compare with")
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800)
    # child arguments
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--pool")
    parser.add_argument("--side", default="qjm")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--per-job", type=int, default=0)
    parser.add_argument("--store")
    parser.add_argument("--id")
    parser.add_argument("--pickle")
    parser.add_argument("--bits", type=int, default=20)
    parser.add_argument("--shots", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)), flush=True)
        return 0

    started = time.time()
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="qjm-store-speed-"))
    pool = work / "pool.pickle"
    make_pool(pool)
    runner = Runner(args.before, pool, args.timeout)
    trees = list(runner.trees)  # "after", maybe "before"
    quick = args.quick
    sizes = [2_000, 5_000, 10_000] if quick else [10_000, 50_000, 100_000]
    single_sizes = [2_000, 5_000] if quick else [10_000, 50_000, 100_000]
    one_n = 1_000 if quick else 10_000
    rep = 1 if quick else args.repeat
    flat: list[dict] = []

    def throughput(n: int, per_job: int, label: str, reps: int) -> dict:
        found: dict[str, list[dict]] = {}
        for _ in range(reps):
            found.setdefault("baseline", []).append(
                runner.child(None, "throughput", side="baseline", n=n, per_job=per_job)
            )
            for tree in trees:
                found.setdefault(tree, []).append(
                    runner.child(tree, "throughput", side="qjm", n=n, per_job=per_job)
                )
        entry = {"label": label, "n": n, "per_job": per_job, "runs": found}
        flat.append(entry)
        return entry

    try:
        # 1. throughput, 100-circuit jobs, 10k..100k (per-circuit table); one-circuit jobs;
        #    the default single job
        for n in sizes:
            throughput(n, 100, "100-circuit jobs", rep if n < 100_000 else max(1, rep))
        throughput(one_n, 1, "one-circuit jobs", rep)
        for n in single_sizes:
            throughput(n, 0, "one job (the default)", 1)

        # 2. retrieval in a new process: a 100k-experiment set in 100-circuit jobs
        n_ret = sizes[-1]
        retrieval: dict[str, Any] = {}
        for tree in trees:
            store = work / f"retrieve-{tree}.sqlite"
            made = runner.child(
                tree,
                "make_set",
                n=n_ret,
                per_job=100,
                store=store,
                pickle=(work / "results.pickle") if tree == "after" else None,
            )
            runs = [runner.child(tree, "retrieve", store=store, id=made["id"]) for _ in range(3)]
            assert all(r["digest"] == made["digest"] for r in runs), "retrieved counts differ"
            sets = [runner.child(tree, "job_sets", store=store) for _ in range(3)]
            retrieval[tree] = {"runs": runs, "job_sets": sets, "digest": made["digest"]}
        base_runs = [
            runner.child(None, "retrieve", side="baseline", pickle=work / "results.pickle")
            for _ in range(3)
        ]
        assert all(r["digest"] == retrieval["after"]["digest"] for r in base_runs)
        retrieval["baseline"] = base_runs
        # job_sets() of a store holding one set of 10,000 one-circuit jobs
        for tree in trees:
            store = work / f"many-{tree}.sqlite"
            runner.child(tree, "make_set", n=one_n, per_job=1, store=store)
            retrieval[tree]["job_sets_many"] = [
                runner.child(tree, "job_sets", store=store) for _ in range(3)
            ]

        # 3. memory of a live job set
        memory: dict[str, Any] = {}
        if not args.skip_memory:
            mem_n, mem_shots = (10, 20_000) if quick else (100, 100_000)
            memory["baseline"] = runner.child(
                None, "memory", side="baseline", n=mem_n, shots=mem_shots, bits=20
            )
            for tree in trees:
                memory[tree] = runner.child(
                    tree, "memory", side="qjm", n=mem_n, shots=mem_shots, bits=20
                )
    finally:
        pass
    load_end = os.getloadavg()
    text = report(
        flat, retrieval, memory, trees, load_start, load_end, time.time() - started, args, runner
    )
    print(text)
    output = args.output or (None if quick else DEFAULT_OUTPUT)
    if output is not None:
        output.write_text(text)
        print(f"written to {output}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def report(flat, retrieval, memory, trees, load_start, load_end, seconds, args, runner) -> str:
    from bench.report import environment

    command = "python -m bench.store_speed" + (f" --before {args.before}" if args.before else "")
    if args.repeat != 2:
        command += f" --repeat {args.repeat}"
    lines = [
        "# qjm benchmark: the store and the pool (issue 13)",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"- load average at start: {', '.join(f'{x:.2f}' for x in load_start)}; at the end: "
        f"{', '.join(f'{x:.2f}' for x in load_end)} (on {os.cpu_count()} CPUs: the machine is shared;"
        " each row also gives the 1-minute load average when its last child ended)",
        *[f"- {k}: {v}" for k, v in environment().items() if k != "load average at start"],
        "- after: that qjm"
        + (f"; before: {runner.trees['before']}/qjm" if "before" in trees else ""),
        f"- whole run: {seconds:.0f} s",
        "",
        "Every row: what a user gets: `JobManager()` with its defaults (the SQLite file store at "
        "`$QJM_HOME/jobsets.sqlite`, a fresh `QJM_HOME` per run; 8 worker threads), the garbage "
        "collector as Python leaves it (not frozen, no collection inside a timer), every "
        "measurement in a fresh child process. Throughput rows: `InstantBackend` (a real "
        "`BackendV2` whose jobs are DONE at once with precomputed Aer experiments, ~22 count keys "
        "each, one new `ExperimentResult` per circuit); times are best of the repetitions shown.",
        "",
    ]

    def best(entry, tree, key="run_results"):
        return _best(entry["runs"][tree], key)

    # headline
    lines += [
        "## Headline",
        "",
        "| measure | size | baseline | before | after | after vs before | target | met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    big = [e for e in flat if e["per_job"] == 100][-1]
    one = [e for e in flat if e["per_job"] == 1][-1]
    has_before = "before" in trees

    def row_tp(entry, target_x, target_rate, what):
        n = entry["n"]
        b = best(entry, "baseline")
        a = best(entry, "after")
        bf = best(entry, "before") if has_before else None
        ratio = f"{bf / a:.2f}x" if bf else "-"
        met = []
        if bf and target_x:
            met.append(bf / a >= target_x)
        if target_rate:
            met.append(n / a >= target_rate)
        target = " and ".join(
            x
            for x in (
                f">= {target_x}x before" if target_x else "",
                f">= {target_rate / 1e3:g}k circuits/s" if target_rate else "",
            )
            if x
        )
        lines.append(
            f"| {what} | {n:,} circuits, {entry['label']} | {_fmt_rate(n, b)} ({_fmt_s(b)}) | "
            + (f"{_fmt_rate(n, bf)} ({_fmt_s(bf)})" if bf else "-")
            + f" | {_fmt_rate(n, a)} ({_fmt_s(a)}) | {ratio} | {target} | "
            + ("yes" if met and all(met) else "no")
            + " |"
        )

    row_tp(big, 4, 40_000, "run + results(), circuits/s")
    row_tp(one, 0, 5_000, "run + results(), circuits/s")
    ra = retrieval["after"]["runs"]
    rb = retrieval.get("before", {}).get("runs")
    base = retrieval["baseline"]
    n_ret = big["n"]
    for key, what, target in (
        ("retrieve_statuses", "new process: `retrieve_job_set` + `statuses()`", 0.05),
        ("results_get_counts", "new process: then `results()` + `get_counts` of all", 2.0),
    ):
        a = _best(ra, key)
        bf = _best(rb, key) if rb else None
        bl = (
            f"`pickle.load` of the Results + `get_counts` of all: {_fmt_s(_best(base, 'total'))}"
            if key == "results_get_counts"
            else "-"
        )
        lines.append(
            f"| {what} | {n_ret:,} experiments in {n_ret // 100:,} jobs | {bl} | "
            + (_fmt_s(bf) if bf else "-")
            + f" | {_fmt_s(a)} | "
            + (f"{bf / a:.1f}x" if bf else "-")
            + f" | <= {_fmt_s(target)} | {'yes' if a <= target else 'no'} |"
        )
    for case, what, size in (
        (
            "job_sets",
            "new process: `job_sets()`, 1 set of 100k experiments",
            f"{n_ret:,} experiments",
        ),
        (
            "job_sets_many",
            "new process: `job_sets()`, 1 set of one-circuit jobs",
            f"{one['n']:,} jobs",
        ),
    ):
        a = _best(retrieval["after"][case], "job_sets")
        bf = _best(retrieval["before"][case], "job_sets") if has_before else None
        lines.append(
            f"| {what} | {size} | - | "
            + (_fmt_s(bf) if bf else "-")
            + f" | {_fmt_s(a)} | "
            + (f"{bf / a:.1f}x" if bf else "-")
            + " | reads only job rows | - |"
        )
    if memory:
        m = memory["baseline"]
        a = memory["after"]
        bf = memory.get("before")
        size = f"{m['n']} x {m['shots']:,} shots x {m['bits']} bits, memory=True"
        lines.append(
            f"| memory held by a live job set and its `results()` (tracemalloc) | {size} | "
            f"qiskit `Result`: {_mb(m['held'])} | "
            + (f"{_mb(bf['held'])} ({bf['held'] / m['held']:.2f}x)" if bf else "-")
            + f" | {_mb(a['held'])} ({a['held'] / m['held']:.2f}x) | "
            + (f"{bf['held'] / a['held']:.1f}x less" if bf else "-")
            + f" | <= 0.5x the `Result` | {'yes' if a['held'] <= 0.5 * m['held'] else 'no'} |"
        )
        lines.append(
            f"| memory still held once the set and its results are dropped (manager alive) | {size}"
            " | - | "
            + (f"{_mb(bf['after_drop'])}" if bf else "-")
            + f" | {_mb(a['after_drop'])} | - | ~0 (the manager keeps no finished set) | "
            + ("yes" if a["after_drop"] <= 0.02 * m["held"] else "no")
            + " |"
        )
    lines.append("")

    # per-circuit table
    lines += [
        "## Per-circuit cost, run + results() (flat from 10k to 100k?)",
        "",
        "| jobs | circuits | baseline us/circuit | "
        + ("before us/circuit | " if has_before else "")
        + "after us/circuit | after: get_counts of all, us/circuit | load |",
        "|---|---|---|" + ("---|" if has_before else "") + "---|---|---|",
    ]
    for e in flat:
        n = e["n"]
        cells = [e["label"], f"{n:,}", f"{best(e, 'baseline') / n * 1e6:.1f}"]
        if has_before:
            cells.append(f"{best(e, 'before') / n * 1e6:.1f}")
        cells.append(f"{best(e, 'after') / n * 1e6:.1f}")
        cells.append(f"{best(e, 'after', 'get_counts') / n * 1e6:.1f}")
        cells.append(f"{max(r['load'] for runs in e['runs'].values() for r in runs):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "baseline: `jobs = [backend.run(chunk) for chunk in chunks]; [job.result() for job in jobs]`"
        " on the same `InstantBackend` (no store, nothing kept beyond the `Result` objects); its "
        "`get_counts` of all is in the details below.",
        "",
        "## Retrieval in a new process (best of 3 children)",
        "",
        "| step | " + ("before | " if has_before else "") + "after |",
        "|---|" + ("---|" if has_before else "") + "---|",
    ]
    for key in ("retrieve", "statuses", "report", "results", "get_counts"):
        cells = [f"`{key}`"]
        if has_before:
            cells.append(_fmt_s(_best(retrieval["before"]["runs"], key)))
        cells.append(_fmt_s(_best(ra, key)))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Baseline (a user who pickled the {n_ret // 100:,} qiskit `Result`s): `pickle.load` "
        f"{_fmt_s(_best(base, 'load'))}, `get_counts` of all {_fmt_s(_best(base, 'get_counts'))}. "
        "Every child checked that the counts it read equal those of the set when it ran (sha256).",
        "",
    ]
    if memory:
        lines += ["## Memory (tracemalloc, one child each)", ""]
        for side in ("baseline", *trees):
            m = memory[side]
            lines.append(
                f"- {side}: held {_mb(m['held'])}, peak {_mb(m['peak'])}"
                + (f", after dropping the set {_mb(m['after_drop'])}" if "after_drop" in m else "")
                + f", run {m['seconds']:.1f} s (under tracemalloc)"
            )
        lines += [
            "",
            "baseline: `AerSimulator(method='stabilizer').run(circuits, shots, memory=True)"
            ".result()` held; qjm: `JobManager().run(circuits, backend=AerSimulator(...), shots, "
            "memory=True)` and its `results()` held, the manager alive.",
            "",
        ]
    lines += ["## Every child", "", "```"] + runner.log + ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
