"""``python -m bench.dask_scale``: a job set on a Dask cluster's worker processes vs one Aer job.

    python -m bench.dask_scale              # 10,000 random 5-qubit circuits, 1,000 shots, a local
                                            # cluster of 2 worker processes; writes
                                            # bench/RESULTS-dask.md
    python -m bench.dask_scale --quick      # 1,000 circuits, one round; prints only
    python -m bench.dask_scale --circuits 20000 --workers 4 --per-job 1000 --no-write

Side by side in one run (each round runs every case once, in an interleaved order; the table
gives the best round of each, and every round's time is listed under it):

1. ``AerSimulator().run(all circuits, shots, seed_simulator)`` in this process, then
   ``get_counts(i)`` of every experiment: the baseline.
2. The same with ``max_parallel_experiments=0`` (Aer's own parallelism over experiments), and
   with ``max_parallel_threads=1`` (one thread, as each Dask worker runs it: Dask's nannies set
   ``OMP_NUM_THREADS=1``).
3. ``qjm.JobManager`` on the same ``AerSimulator()`` in this process (jobs of ``--per-job``
   circuits; Aer runs the jobs of one process one after another).
4. ``qjm.JobManager`` on ``qjm.DaskBackend(AerSimulator(), client)``: a ``LocalCluster`` of
   ``--workers`` worker processes, one thread each, started (and warmed: Aer and qjm imported)
   before the clock starts; a store file as by default; counts of every experiment read. The
   run's counts are checked against case 1 (the same seed gives the same samples).
5. The floor of case 4 on this machine: the same jobs' tasks (qjm's worker function, the same
   seeds) submitted straight to the same cluster with their QPY written before the clock starts,
   and their records gathered as bytes, never read: what the cluster alone takes, with nothing
   of the job manager (no check, journal, QPY, store, decoding or counts) in this process.

Also measured: the CPU time this process spends per circuit during case 4 (``time.process_time``:
every thread, including the LocalCluster's scheduler, which runs in this process) and the
workers' CPU; the bytes that cross to this process per experiment (the records the workers send)
vs a pickled qiskit ``Result`` of the same experiments; the bytes to the workers per circuit (QPY)
vs pickled circuits; and qjm's time per job on a trivially fast backend (every job DONE at once)
next to Dask's own time per task (a task that does nothing, and qjm's worker function submitted
straight to Dask without the job manager).
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-dask.md"
SPEED_TARGET = 1.6  # DaskBackend on 2 workers vs one Aer job
OVERHEAD_TARGET_MS = 5.0  # qjm's time per job on a trivially fast backend


# -- a trivially fast backend (pickled by value to the workers) ----------------------------------


def _instant_classes():
    from qiskit.providers import BackendV2, JobStatus, JobV1, Options
    from qiskit.result import Result
    from qiskit.result.models import ExperimentResult, ExperimentResultData
    from qiskit.transpiler import Target

    class InstantJob(JobV1):
        def __init__(self, backend, job_id, result):
            super().__init__(backend, job_id)
            self._result = result

        def submit(self):
            pass

        def status(self):
            return JobStatus.DONE

        def result(self, timeout=None):
            return self._result

    class InstantBackend(BackendV2):
        """Every job DONE at once: each experiment's counts are ``{"0x0": shots}``."""

        def __init__(self):
            super().__init__(name="instant")
            from qiskit.circuit.library import Measure

            self._target = Target(num_qubits=32)
            self._target.add_instruction(Measure())  # on any qubit

        @classmethod
        def _default_options(cls):
            return Options(shots=1, seed_simulator=None)

        @property
        def target(self):
            return self._target

        @property
        def max_circuits(self):
            return None

        def run(self, circuits, **options):
            shots = options.get("shots", 1)
            job_id = uuid.uuid4().hex
            experiments = [
                ExperimentResult(
                    shots,
                    True,
                    ExperimentResultData(counts={"0x0": shots}),
                    header={"name": c.name, "memory_slots": c.num_clbits},
                )
                for c in circuits
            ]
            result = Result(
                backend_name="instant",
                backend_version="0",
                job_id=job_id,
                success=True,
                results=experiments,
            )
            return InstantJob(self, job_id, result)

    return InstantBackend


def _noop(x: Any) -> int:
    return 0


# -- cases ------------------------------------------------------------------------------------


def _aer_case(backend: Any, circuits: list, shots: int, seed: int) -> tuple[float, Any]:
    start = time.perf_counter()
    result = backend.run(circuits, shots=shots, seed_simulator=seed).result()
    for i in range(len(circuits)):
        result.get_counts(i)
    return time.perf_counter() - start, result


def _qjm_case(
    backend: Any, circuits: list, shots: int, seed: int, per_job: int, store: str
) -> dict[str, Any]:
    import qjm

    manager = qjm.JobManager(store=store)
    before = backend.traffic() if hasattr(backend, "traffic") else None
    cpu = time.process_time()
    wall = time.time()
    start = time.perf_counter()
    job_set = manager.run(
        circuits, backend=backend, max_experiments_per_job=per_job, shots=shots, seed_simulator=seed
    )
    run_call = time.perf_counter() - start
    results = job_set.results(timeout=3600)
    counts = [results.get_counts(i) for i in range(len(circuits))]
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    traffic = None
    if before is not None:
        traffic = {k: v - before[k] for k, v in backend.traffic().items()}
    manager.shutdown()
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "counts": counts,
        "traffic": traffic,
        "wall_start": wall,
        "run_call": run_call,
        "jobs": len(job_set.managed_jobs()),
        "success": results.success,
    }


def _floor_case(client: Any, circuits: list, shots: int, seed: int, per_job: int) -> float:
    """The cluster alone on the same jobs: qjm's worker function submitted straight to Dask
    (the seeds of case 4), the QPY written before the clock starts, the records gathered as
    bytes and not read."""
    from qiskit_aer import AerSimulator

    from qjm.runoptions import AER_SEED_STRIDE
    from qjm.wire import dump_circuits

    starts = range(0, len(circuits), per_job)
    payloads = [dump_circuits(circuits[k : k + per_job]) for k in starts]
    options = [{"shots": shots, "seed_simulator": seed + AER_SEED_STRIDE * k} for k in starts]
    return _raw_tasks(client, AerSimulator(), payloads, options, "floor")


def _raw_tasks(client: Any, backend: Any, payloads: list, options: list, prefix: str) -> float:
    """Seconds to run qjm's worker function on each payload (QPY) straight on Dask, the records
    gathered as bytes and not read."""
    from qjm.dask import _blob, run_circuits_task

    token, blob = _blob(backend, None)
    start = time.perf_counter()
    futures = [
        client.submit(
            run_circuits_task,
            token,
            blob,
            payload,
            opts,
            None,
            f"{prefix}-{uuid.uuid4().hex}",
            True,
            pure=False,
        )
        for payload, opts in zip(payloads, options)
    ]
    client.gather(futures)
    seconds = time.perf_counter() - start
    del futures
    return seconds


def _worker_cpu(client: Any) -> float:
    return sum(client.run(time.process_time).values())


def _overhead(client: Any, jobs: int, store: str) -> dict[str, float]:
    """Time per job: qjm on DaskBackend(InstantBackend), Dask's no-op task, and qjm's worker
    function submitted straight to Dask."""
    import distributed

    import qjm
    from qjm.dask import DaskBackend
    from qjm.wire import dump_circuits

    InstantBackend = _instant_classes()
    from qiskit import QuantumCircuit

    circuits = []
    for i in range(jobs):
        qc = QuantumCircuit(1, 1, name=f"t{i}")
        qc.measure(0, 0)
        circuits.append(qc)
    backend = DaskBackend(InstantBackend(), client)
    # warm: the backend unpickled on every worker
    qjm.JobManager(store=":memory:").run(
        circuits[:8], backend=backend, max_experiments_per_job=1, shots=10
    ).results(timeout=120)

    out: dict[str, float] = {}
    start = time.perf_counter()
    futures = [client.submit(_noop, i, pure=False) for i in range(jobs)]
    distributed.wait(futures)
    out["dask_noop"] = (time.perf_counter() - start) / jobs
    del futures

    payloads = [dump_circuits([c]) for c in circuits]
    seconds = _raw_tasks(client, InstantBackend(), payloads, [{"shots": 10}] * jobs, "raw")
    out["dask_worker_fn"] = seconds / jobs

    manager = qjm.JobManager(store=store)
    start = time.perf_counter()
    job_set = manager.run(circuits, backend=backend, max_experiments_per_job=1, shots=10)
    results = job_set.results(timeout=600)
    out["qjm"] = (time.perf_counter() - start) / jobs
    assert results.success and results.get_counts(jobs - 1) == {"0": 10}
    manager.shutdown()
    return out


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    import cloudpickle
    import distributed
    from qiskit_aer import AerSimulator

    from qjm.cli import _random_circuits
    from qjm.dask import DaskBackend

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    n, shots, seed = args.circuits, args.shots, args.seed
    log = print if args.verbose else (lambda *a, **k: None)
    log(f"building {n:,} random 5-qubit circuits...")
    circuits = _random_circuits(n, 5, args.depth, seed)
    tmp = tempfile.mkdtemp(prefix="qjm-bench-dask-")
    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    times: dict[str, list[float]] = {
        k: [] for k in ("aer", "aer_par", "aer_1thread", "qjm_local", "qjm_dask", "dask_floor")
    }
    info: dict[str, Any] = {"load_start": os.getloadavg()}
    try:
        client.wait_for_workers(args.workers, timeout=120)

        def warm() -> int:
            import qiskit_aer  # noqa: F401

            import qjm.dask  # noqa: F401

            return os.getpid()

        info["worker_pids"] = sorted(client.run(warm).values())
        # warm this process too (Aer's first run, qjm's imports)
        AerSimulator().run(circuits[:20], shots=10).result()
        dask_backend = DaskBackend(AerSimulator(), client)
        reference = None
        for rnd in range(args.repeat):
            log(f"round {rnd + 1} of {args.repeat}")
            for case in ("aer", "qjm_dask", "aer_par", "qjm_local", "aer_1thread", "dask_floor"):
                if case == "dask_floor":
                    seconds = _floor_case(client, circuits, shots, seed, args.per_job)
                elif case.startswith("aer"):
                    kw = {"aer": {}, "aer_par": {"max_parallel_experiments": 0}}.get(
                        case, {"max_parallel_threads": 1}
                    )
                    seconds, result = _aer_case(AerSimulator(**kw), circuits, shots, seed)
                    if case == "aer" and reference is None:
                        reference = result
                        info["pickled_result"] = len(pickle.dumps(result))
                else:
                    store = os.path.join(tmp, f"{case}-{rnd}.sqlite")
                    backend = dask_backend if case == "qjm_dask" else AerSimulator()
                    wcpu = _worker_cpu(client) if case == "qjm_dask" else 0.0
                    with distributed.get_task_stream(client) as stream:
                        out = _qjm_case(backend, circuits, shots, seed, args.per_job, store)
                    seconds = out["seconds"]
                    assert out["success"], f"{case}: not every experiment succeeded"
                    if case == "qjm_dask":
                        info.setdefault("client_cpu", []).append(out["cpu"])
                        info.setdefault("worker_cpu", []).append(_worker_cpu(client) - wcpu)
                        info["traffic"] = out["traffic"]
                        spans = [
                            (t["startstops"][0]["start"], t["startstops"][-1]["stop"])
                            for t in stream.data
                            if str(t["key"]).startswith("qjm-")
                        ]
                        info.setdefault("timeline", []).append(
                            {
                                "seconds": seconds,
                                "run_call": out["run_call"],
                                "first": min(a for a, _ in spans) - out["wall_start"],
                                "last": max(b for _, b in spans) - out["wall_start"],
                                "busy": sum(b - a for a, b in spans) / args.workers,
                            }
                        )
                        info["jobs"] = out["jobs"]
                        info.setdefault("counts", out["counts"])
                times[case].append(seconds)
                log(f"  {case}: {seconds:.2f} s   (load {os.getloadavg()[0]:.2f})")
        same = all(info["counts"][i] == reference.get_counts(i) for i in range(n))
        info["same_counts"] = same
        del info["counts"]
        # what crosses to the workers, per circuit: QPY vs pickled circuits (on a sample)
        sample = circuits[: min(n, 1000)]
        buf = io.BytesIO()
        from qiskit import qpy

        start = time.perf_counter()
        qpy.dump(sample, buf)
        info["qpy_s"] = (time.perf_counter() - start) / len(sample)
        info["qpy_bytes"] = len(buf.getvalue()) / len(sample)
        start = time.perf_counter()
        blob = pickle.dumps(sample)
        info["pickle_s"] = (time.perf_counter() - start) / len(sample)
        info["pickle_bytes"] = len(blob) / len(sample)
        log("overhead per job on a trivially fast backend...")
        info["overhead"] = _overhead(client, args.overhead_jobs, os.path.join(tmp, "o.sqlite"))
        info["load_end"] = os.getloadavg()
    finally:
        client.close()
        cluster.close()
    return render(args, times, info), info


def _load(x: tuple) -> str:
    return ", ".join(f"{v:.2f}" for v in x)


def render(args: argparse.Namespace, times: dict[str, list[float]], info: dict) -> list[str]:
    from bench.report import environment

    n = args.circuits
    best = {k: min(v) for k, v in times.items()}
    aer = best["aer"]
    env = environment()
    env["load average at start"] = _load(info["load_start"])
    env["load average at end"] = _load(info["load_end"])
    env["dask / distributed"] = f"{_version('dask')} / {_version('distributed')}"
    command = "python -m bench.dask_scale" + (
        " " + " ".join(shlex.quote(a) for a in args.argv) if args.argv else ""
    )
    size = f"{n:,} random 5-qubit circuits (depth {args.depth}), {args.shots:,} shots"
    out = ["# qjm benchmark: a job set on Dask worker processes", "", "Produced by:", ""]
    out += ["```", command, "```", ""]
    out += [f"- {k}: {v}" for k, v in env.items()]
    out += [
        "",
        "| measure | size | qjm | baseline | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(what, qjm_s, base, base_s, target=None):
        ratio = base_s / qjm_s
        met = "-" if target is None else ("yes" if ratio >= target else "no")
        out.append(
            f"| {what} | {size} | {qjm_s:.2f} s | {base}: {base_s:.2f} s | {ratio:.2f}x | "
            f"{'-' if target is None else f'>= {target}x'} | {met} |"
        )

    dask_what = (
        f"`JobManager` on `DaskBackend(AerSimulator(), client)`, {args.workers} worker processes "
        f"x 1 thread, {info['jobs']} jobs of {args.per_job}, every count read"
    )
    row(
        dask_what,
        best["qjm_dask"],
        "one `AerSimulator().run(all)` in one process",
        aer,
        SPEED_TARGET,
    )
    row(
        dask_what,
        best["qjm_dask"],
        "`AerSimulator(max_parallel_experiments=0).run(all)`",
        best["aer_par"],
    )
    row(
        dask_what,
        best["qjm_dask"],
        "`AerSimulator(max_parallel_threads=1).run(all)` (one thread, as a worker runs it)",
        best["aer_1thread"],
    )
    row(
        f"the floor of the Dask row: the same {info['jobs']} tasks (qjm's worker function) "
        "submitted straight to the cluster, their QPY written before the clock starts, records "
        "gathered as bytes and not read (no job manager in this process)",
        best["dask_floor"],
        "one `AerSimulator().run(all)` in one process",
        aer,
    )
    row(
        "Aer's own parallelism: `AerSimulator(max_parallel_experiments=0).run(all)`",
        best["aer_par"],
        "one `AerSimulator().run(all)`",
        aer,
    )
    row(
        f"`JobManager` on `AerSimulator()` in this process, jobs of {args.per_job}",
        best["qjm_local"],
        "one `AerSimulator().run(all)`",
        aer,
    )
    o = info["overhead"]
    out.append(
        f"| qjm's time per job on a trivially fast backend (`DaskBackend` over a backend whose "
        f"jobs are DONE at once; {args.overhead_jobs} jobs of 1 circuit, store file) | "
        f"{args.overhead_jobs} jobs | {o['qjm'] * 1e3:.2f} ms per job | Dask's own: a no-op task "
        f"{o['dask_noop'] * 1e3:.2f} ms, qjm's worker function submitted straight to Dask "
        f"{o['dask_worker_fn'] * 1e3:.2f} ms per task | - | <= {OVERHEAD_TARGET_MS:g} ms per job | "
        f"{'yes' if o['qjm'] * 1e3 <= OVERHEAD_TARGET_MS else 'no'} |"
    )
    wire = info["traffic"]["bytes_from_workers"] / n
    pickled = info["pickled_result"] / n
    out.append(
        f"| bytes that cross to the client per experiment (the workers' compressed columnar "
        f"records) | {size} | {wire:.0f} B | a pickled qiskit `Result` of the same experiments: "
        f"{pickled:.0f} B | {pickled / wire:.1f}x fewer | - | - |"
    )
    out.append(
        f"| bytes to the workers per circuit (QPY) and the time to write them | 1,000 of the "
        f"circuits | {info['qpy_bytes']:.0f} B, {info['qpy_s'] * 1e3:.3f} ms | pickled circuits: "
        f"{info['pickle_bytes']:.0f} B, {info['pickle_s'] * 1e3:.3f} ms | "
        f"{info['pickle_s'] / info['qpy_s']:.1f}x faster to write | - | - |"
    )
    cpu = min(info["client_cpu"]) / n * 1e3
    wcpu = min(info["worker_cpu"]) / n * 1e3
    t = info["traffic"]
    out += ["", "## Notes", ""]
    out.append(
        f"- Through Dask during the run (`DaskBackend.traffic()`): {t['tasks']} tasks, "
        f"{t['bytes_to_workers'] / n:.0f} B per circuit to the workers (QPY, and the pickled "
        f"`AerSimulator` once per task: {t['bytes_to_workers'] / 1e6:.1f} MB in all), "
        f"{t['bytes_from_workers'] / n:.0f} B per experiment back "
        f"({t['bytes_from_workers'] / 1e6:.2f} MB in all)."
    )
    out.append(
        f"- Counts of every experiment of the Dask run equal those of the one Aer job with the "
        f"same seed: {'yes' if info['same_counts'] else 'NO'}."
    )
    out.append(
        f"- What this process still does per circuit during the Dask run: {cpu:.3f} ms of CPU "
        "(all its threads: checking the circuits against the target, writing the journal's QPY "
        "once, which is also what is sent to the workers, submitting, decoding the records, "
        "storing them, merging and formatting the counts, and the LocalCluster's scheduler, which "
        f"runs in this process). The workers spent {wcpu:.3f} ms of CPU per circuit (reading "
        "QPY, Aer, decoding and encoding the record)."
    )
    if aer > 1.3 * best["aer_1thread"]:
        out.append(
            f"- WARNING: the default `AerSimulator().run(all)` took {aer / best['aer_1thread']:.1f}x "
            "as long as its one-thread run: Aer's OpenMP threads were contending with other load "
            "on the cores, so the ratios against the default baseline overstate qjm's speedup; "
            "read the one-thread row instead."
        )
    tl = min(info["timeline"], key=lambda x: x["seconds"])
    out.append(
        f"- Where the Dask run's {tl['seconds']:.2f} s went (its best round, from Dask's task "
        f"stream): `JobManager.run()` itself took {tl['run_call']:.2f} s (it checks every "
        f"circuit against the backend's target before returning); the first task started on a "
        f"worker {tl['first']:.2f} s after `run()` was called (each job is submitted as soon as "
        "its own QPY is committed to the journal, while later jobs' QPY is still being "
        f"written); the last task ended at {tl['last']:.2f} s; each worker was busy "
        f"{tl['busy']:.2f} s. Before the first task starts, the workers are idle and only this "
        "process works."
    )
    out.append(
        f"- The floor row is what the cluster alone takes for the same tasks "
        f"({best['dask_floor']:.2f} s, {aer / best['dask_floor']:.2f}x the one Aer job): qjm's "
        f"Dask row ({best['qjm_dask']:.2f} s) is {best['qjm_dask'] - best['dask_floor']:.2f} s "
        "above it, the job manager's work in this process (checking, QPY for the journal and "
        "the workers, submitting, storing, reading every count) on the cores the two workers "
        "use. A ratio above the floor's is not reachable on this machine by the client alone."
    )
    out.append(
        "- On this machine each Dask worker runs Aer on one thread (the nanny sets "
        "`OMP_NUM_THREADS=1`); the in-process baselines use Aer's defaults, so the "
        "`max_parallel_threads=1` row is the like-for-like comparison per core."
    )
    out.append(
        f"- The machine is shared: load average {_load(info['load_start'])} at the start and "
        f"{_load(info['load_end'])} at the end (2 cores); times are the best of "
        f"{args.repeat} round(s)."
    )
    out += ["", "## Every round (seconds)", ""]
    for k, v in times.items():
        out.append(f"- {k}: " + ", ".join(f"{x:.2f}" for x in v))
    o = info["overhead"]
    out.append(
        f"- overhead per job (ms): qjm {o['qjm'] * 1e3:.2f}, Dask no-op {o['dask_noop'] * 1e3:.2f}, "
        f"worker function straight to Dask {o['dask_worker_fn'] * 1e3:.2f}"
    )
    return out


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m bench.dask_scale", description=__doc__.split("\n")[0]
    )
    p.add_argument("--circuits", type=int, default=10_000)
    p.add_argument("--shots", type=int, default=1000)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--per-job", type=int, default=500, help="circuits per job (default 500)")
    p.add_argument("--repeat", type=int, default=2, help="rounds (default 2; best is reported)")
    p.add_argument("--overhead-jobs", type=int, default=400)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--quick", action="store_true", help="1,000 circuits, one round; prints only")
    p.add_argument("--output", default=None, help=f"write here (default {DEFAULT_OUTPUT})")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    args.argv = argv
    args.verbose = not args.quiet
    if args.quick:
        args.circuits, args.repeat, args.overhead_jobs = 1000, 1, 100
        args.per_job = min(args.per_job, 100)
    lines, _info = run(args)
    text = "\n".join(lines) + "\n"
    print(text)
    write = args.output is not None or not (args.no_write or args.quick)
    if write:
        path = Path(args.output) if args.output else DEFAULT_OUTPUT
        path.write_text(text)
        print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
