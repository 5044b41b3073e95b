"""The ``qjm`` command: ``demo`` runs qjm's main job, ``show``/``list`` read the store, ``serve`` runs a job service, ``bench`` the benchmarks."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from qjm.jobmanager import JobManager


def _random_circuits(n: int, qubits: int, depth: int, seed: int) -> list:
    """Random layers of single-qubit rotations and CX gates, measured into two registers.

    Built from gates every simulator runs without transpiling (qjm runs circuits as given).
    """
    import numpy as np
    from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

    rng = np.random.default_rng(seed)
    circuits = []
    low = max(1, qubits // 2)
    for i in range(n):
        qr = QuantumRegister(qubits, "q")
        regs = [ClassicalRegister(low, "c0")]
        if qubits > low:
            regs.append(ClassicalRegister(qubits - low, "c1"))
        circuit = QuantumCircuit(qr, *regs, name=f"random-{i}")
        for _ in range(depth):
            for q in range(qubits):
                gate = rng.integers(3)
                angle = float(rng.uniform(0, 2 * np.pi))
                (circuit.rx, circuit.ry, circuit.rz)[gate](angle, q)
            order = rng.permutation(qubits)
            for a, b in zip(order[::2], order[1::2]):
                circuit.cx(int(a), int(b))
        circuit.measure(qr, [bit for reg in regs for bit in reg])
        circuits.append(circuit)
    return circuits


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * (max(len(v) for _, v in rows) + 2) + "+"
    out = [line]
    for key, value in rows:
        out.append(f"| {key.ljust(width)} | {value.ljust(len(line) - width - 7)} |")
    out.append(line)
    return "\n".join(out)


def demo(args: argparse.Namespace) -> int:
    from qiskit_aer import AerSimulator

    manager = JobManager(store=args.store)
    print(
        f"Building {args.circuits} random circuits of {args.qubits} qubits, depth {args.depth}..."
    )
    circuits = _random_circuits(args.circuits, args.qubits, args.depth, args.seed)
    if args.sampler:
        return _demo_sampler(args, manager, circuits)
    backend = AerSimulator()
    start = time.monotonic()
    job_set = manager.run(
        circuits,
        backend=backend,
        name=args.name,
        max_experiments_per_job=args.max_experiments_per_job,
        max_workers=args.workers,
        tags=["demo"],
        shots=args.shots,
        memory=args.memory,
        seed_simulator=args.seed,
    )
    results = job_set.results(timeout=args.timeout, partial=True, progress=True)
    elapsed = time.monotonic() - start
    outcomes = 0
    available = 0
    for i in range(len(circuits)):
        try:
            keys, _ = results.counts_arrays(i)
        except Exception:  # noqa: BLE001 - a missing experiment shows in the table
            continue
        outcomes += len(keys)
        available += 1
    rows = [
        ("backend", str(results.backend_name)),
        ("jobs", str(len(job_set.managed_jobs()))),
        ("experiments", f"{available} of {len(circuits)} available"),
        ("shots per experiment", str(args.shots)),
        ("distinct outcomes (mean)", f"{outcomes / max(available, 1):.1f}"),
        ("wall time", f"{elapsed:.2f} s"),
        ("experiments per second", f"{len(circuits) / elapsed:,.0f}"),
    ]
    return _finish_demo(args, manager, job_set, results, rows)


def _finish_demo(
    args: argparse.Namespace, manager: JobManager, job_set, results, rows: list
) -> int:
    """The demo's report, its summary table, errors and the job set id."""
    print(job_set.report(detailed=args.detailed))
    print()
    rows = rows + [("success", str(results.success)), ("store", manager.store_path)]
    print(_table(rows))
    if not results.success:
        print(job_set.error_messages())
    print()
    print(f"Job set id: {job_set.job_set_id()}")
    print(f"Show it again later with: qjm show {job_set.job_set_id()}")
    manager.shutdown()
    return 0 if results.success else 1


def _demo_sampler(args: argparse.Namespace, manager: JobManager, circuits: list) -> int:
    """The demo's circuits as sampler PUBs on Aer's ``SamplerV2``."""
    from qiskit_aer.primitives import SamplerV2

    start = time.monotonic()
    job_set = manager.run(
        circuits,
        sampler=SamplerV2(seed=args.seed),
        name=args.name,
        max_pubs_per_job=args.max_experiments_per_job,
        max_workers=args.workers,
        tags=["demo", "sampler"],
        shots=args.shots,
    )
    results = job_set.results(timeout=args.timeout, progress=True)
    elapsed = time.monotonic() - start
    outcomes = available = 0
    for i in range(len(circuits)):
        try:
            outcomes += len(results.get_counts(i))
        except Exception:  # noqa: BLE001 - a missing PUB shows in the table
            continue
        available += 1
    rows = [
        ("sampler", str(results.backend_name)),
        ("jobs", str(len(job_set.managed_jobs()))),
        ("PUBs", f"{available} of {len(circuits)} available"),
        ("shots per PUB", str(args.shots)),
        ("distinct outcomes (mean)", f"{outcomes / max(available, 1):.1f}"),
        ("wall time", f"{elapsed:.2f} s"),
        ("PUBs per second", f"{len(circuits) / elapsed:,.0f}"),
    ]
    return _finish_demo(args, manager, job_set, results, rows)


def show(args: argparse.Namespace) -> int:
    manager = JobManager(store=args.store)
    job_set = manager.retrieve_job_set(args.job_set_id)
    print(job_set.report(detailed=args.detailed))
    errors = job_set.error_messages()
    if errors:
        print("\nErrors:\n" + errors)
    return 0


def list_sets(args: argparse.Namespace) -> int:
    manager = JobManager(store=args.store)
    sets = manager.job_sets(name=args.name)
    for job_set in sets:
        statuses = job_set.statuses()
        done = sum(1 for s in statuses if s is not None and s.name == "DONE")
        print(
            f"{job_set.job_set_id()}  {job_set.name() or '-':20}  {done}/{len(statuses)} jobs done  "
            f"{job_set.backend_name()}  tags={job_set.tags()}"
        )
    if not sets:
        print("No job sets in the store.")
    return 0


def bench(args: argparse.Namespace) -> int:
    try:
        from bench.__main__ import main as bench_main
    except ImportError:
        print(
            "qjm bench: the benchmark harness lives in the bench/ folder of a source checkout; "
            "run this from there (or: python -m bench)",
            file=sys.stderr,
        )
        return 2
    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qjm", description=__doc__)
    parser.add_argument(
        "--store",
        default=None,
        help="SQLite store (default: $QJM_HOME/jobsets.sqlite, QJM_HOME defaulting to ~/.qjm)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", help="run random circuits on a local AerSimulator through JobManager"
    )
    p.add_argument("--circuits", type=int, default=2000, help="number of circuits (default 2000)")
    p.add_argument("--qubits", type=int, default=5, help="qubits per circuit (default 5)")
    p.add_argument("--depth", type=int, default=10, help="depth of each circuit (default 10)")
    p.add_argument("--shots", type=int, default=1000, help="shots per circuit (default 1000)")
    p.add_argument("--memory", action="store_true", help="keep per-shot memory")
    p.add_argument(
        "--sampler",
        action="store_true",
        help="run the circuits as PUBs on Aer's SamplerV2 instead of AerSimulator.run",
    )
    p.add_argument(
        "--max-experiments-per-job",
        type=int,
        default=100,
        help="circuits (or PUBs with --sampler) per job (default 100)",
    )
    p.add_argument("--workers", type=int, default=8, help="submit/fetch threads (default 8)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for results")
    p.add_argument("--seed", type=int, default=1234, help="seed of circuits and simulator")
    p.add_argument("--name", default="demo", help="job set name (default 'demo')")
    p.add_argument("--detailed", action="store_true", help="report every job")
    p.set_defaults(func=demo)

    p = sub.add_parser("show", help="print the report of a stored job set")
    p.add_argument("job_set_id")
    p.add_argument("--detailed", action="store_true", help="report every job")
    p.set_defaults(func=show)

    from qjm.server import add_subparser as add_serve

    add_serve(sub)

    p = sub.add_parser(
        "bench", help="run the benchmark harness (from a source checkout: python -m bench)"
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m bench")
    p.set_defaults(func=bench)

    p = sub.add_parser("list", help="list the job sets in the store")
    p.add_argument("--name", default=None, help="only sets with this name")
    p.set_defaults(func=list_sets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from qjm.exceptions import JobManagerError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JobManagerError as exc:
        print(f"qjm {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
