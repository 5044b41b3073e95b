"""The ``qjm`` command: ``demo`` runs qjm's main job, ``show``/``list`` read the store, ``serve`` runs a job service, ``bench`` the benchmarks."""

from __future__ import annotations

import argparse
import logging
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
    if not getattr(args, "dask", None):
        return _demo(args)
    try:
        from qjm.dask import cluster_client
    except ImportError as exc:
        print(f"qjm demo --dask: {exc}", file=sys.stderr)
        return 2
    with cluster_client(args.dask) as client:  # a local cluster is stopped at the end
        print(f"Running the jobs on the Dask cluster at {client.scheduler.address}")
        return _demo(args, client)


def _on_dask(client, target, sampler: bool = False):
    """``target`` itself, or run on the Dask cluster of ``client`` (``qjm demo --dask``)."""
    if client is None:
        return target
    from qjm.dask import DaskBackend, DaskSampler

    return (DaskSampler if sampler else DaskBackend)(target, client)


def _demo(args: argparse.Namespace, client=None) -> int:
    from qiskit_aer import AerSimulator

    manager = JobManager(store=args.store)
    print(
        f"Building {args.circuits} random circuits of {args.qubits} qubits, depth {args.depth}..."
    )
    circuits = _random_circuits(args.circuits, args.qubits, args.depth, args.seed)
    if args.sampler:
        return _demo_sampler(args, manager, circuits, client)
    backend = _on_dask(client, AerSimulator())
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


def _demo_sampler(
    args: argparse.Namespace, manager: JobManager, circuits: list, client=None
) -> int:
    """The demo's circuits as sampler PUBs on Aer's ``SamplerV2``."""
    from qiskit_aer.primitives import SamplerV2

    start = time.monotonic()
    job_set = manager.run(
        circuits,
        sampler=_on_dask(client, SamplerV2(seed=args.seed), sampler=True),
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
    if args.plot:
        try:
            job_set.plot_timeline(args.plot)
        except ImportError as exc:  # matplotlib missing: the message says what to install
            print(f"qjm show --plot: {exc}", file=sys.stderr)
            return 2
        print(f"\nTimeline written to {args.plot}")
    return 0


def list_sets(args: argparse.Namespace) -> int:
    """One line per stored set: id, name, state (``done 20/20``, ``failed 3 of 20 (2
    partial)``, ``running 5 of 20``...), created, backend, tags. From the store alone: no
    backend is asked, no result decoded."""
    manager = JobManager(store=args.store)
    sets = manager.job_set_summaries(name=args.name)
    for summary in sets:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(summary.created))
        print(
            f"{summary.job_set_id}  {summary.name or '-':20}  {summary.describe():28}  "
            f"{created}  {summary.backend_name}  tags={summary.tags}"
        )
    if not sets:
        print("No job sets in the store.")
    return 0


def remove(args: argparse.Namespace) -> int:
    """``qjm rm ID [ID...]``: all the sets or, when an id is unknown, none."""
    manager = JobManager(store=args.store)
    before = _store_bytes(manager.store_path)
    removed = manager.delete_job_sets(args.job_set_ids)
    for job_set_id in removed:
        print(f"removed {job_set_id}")
    _print_freed(manager.store_path, before)
    return 0


def gc(args: argparse.Namespace) -> int:
    """``qjm gc --older-than 7d``: remove the sets created before then, free the space."""
    try:
        age = parse_duration(args.older_than)
    except ValueError as exc:
        print(f"qjm gc: {exc}", file=sys.stderr)
        return 2
    manager = JobManager(store=args.store)
    if args.dry_run:
        cutoff = time.time() - age
        old = [s for s in manager.job_set_summaries() if s.created < cutoff]
        for summary in old:
            print(f"would remove {summary.job_set_id}  {summary.name or '-'}  {summary.describe()}")
        print(f"{len(old)} job set(s) created more than {args.older_than} ago")
        return 0
    before = _store_bytes(manager.store_path)
    removed = manager.gc(older_than=age)
    for job_set_id in removed:
        print(f"removed {job_set_id}")
    print(f"{len(removed)} job set(s) created more than {args.older_than} ago removed")
    _print_freed(manager.store_path, before)
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"``, ``"1.5h"`` or a plain
    number of seconds.

    Raises:
        ValueError: anything else, or a negative duration.
    """
    value = str(text).strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "s"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration: give a number and a unit, s m h d or w (7d, 12h, 30m)"
        ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{text!r} is not a duration of 0 s or more")
    return seconds


def _store_bytes(path: str) -> int | None:
    """The store's size on disk (the file and its write-ahead log), or None for ":memory:"."""
    import os

    if path == ":memory:":
        return None
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _print_freed(path: str, before: int | None) -> None:
    after = _store_bytes(path)
    if before is not None and after is not None:
        print(f"store {path}: {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB after")


_NO_CHECKOUT = (
    "qjm bench needs a source checkout of qjm: the benchmark harness (the bench/ folder) is not "
    "part of the installed package. Clone the qjm repository, install it from there "
    "(pip install -e .), and run `qjm bench` or `python -m bench` in the checkout."
)


def _find_checkout() -> str | None:
    """The qjm source checkout holding the benchmark harness: the current directory, or the
    folder above the imported qjm package (an editable install), when it has ``bench/`` next
    to ``qjm/``."""
    import os

    import qjm

    here = os.path.dirname(os.path.dirname(os.path.abspath(qjm.__file__)))
    for root in (os.getcwd(), here):
        if os.path.isfile(os.path.join(root, "bench", "__main__.py")) and os.path.isdir(
            os.path.join(root, "qjm")
        ):
            return root
    return None


def bench(args: argparse.Namespace) -> int:
    root = _find_checkout()
    if root is None:
        print(_NO_CHECKOUT, file=sys.stderr)
        return 2
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from bench.__main__ import main as bench_main
    except ImportError as exc:
        if exc.name not in ("bench", "bench.__main__"):
            raise  # the harness is there and needs something: say what
        print(_NO_CHECKOUT, file=sys.stderr)
        return 2
    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qjm", description=__doc__)
    parser.add_argument(
        "--store",
        default=None,
        help="SQLite store (default: $QJM_HOME/jobsets.sqlite, QJM_HOME defaulting to ~/.qjm)",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what is submitted, retried and fetched on stderr (-vv: debug)",
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
    p.add_argument(
        "--dask",
        default=None,
        metavar="N|ADDRESS",
        help="run the jobs on Dask: N starts a local cluster of N worker processes, ADDRESS "
        "connects to a scheduler (tcp://head:8786); needs qjm[dask]",
    )
    p.add_argument("--detailed", action="store_true", help="report every job")
    p.set_defaults(func=demo)

    p = sub.add_parser("show", help="print the report of a stored job set")
    p.add_argument("job_set_id")
    p.add_argument("--detailed", action="store_true", help="report every job")
    p.add_argument(
        "--plot",
        metavar="FILE",
        default=None,
        help="also draw a timeline of the jobs to FILE (.png, .svg, .pdf; needs qjm[plot])",
    )
    p.set_defaults(func=show)

    from qjm.server import add_subparser as add_serve

    add_serve(sub)

    p = sub.add_parser(
        "bench", help="run the benchmark harness (from a source checkout: python -m bench)"
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of python -m bench")
    p.set_defaults(func=bench)

    p = sub.add_parser(
        "list", help="list the job sets in the store: state (done, failed, running...) of each"
    )
    p.add_argument("--name", default=None, help="only sets with this name")
    p.set_defaults(func=list_sets)

    p = sub.add_parser(
        "rm", help="delete job sets from the store (jobs, results, journal) and free the space"
    )
    p.add_argument("job_set_ids", nargs="+", metavar="ID", help="job set ids (all or none)")
    p.set_defaults(func=remove)

    p = sub.add_parser(
        "gc", help="delete the job sets created more than a given time ago and free the space"
    )
    p.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="remove sets created before this long ago: 7d, 12h, 30m, 45s, 2w",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=gc)
    return parser


def _version() -> str:
    import platform

    import qiskit

    import qjm
    from qjm._kernels import IMPLEMENTATION

    kernels = "compiled" if IMPLEMENTATION == "cython" else "pure Python"
    return (
        f"qjm {qjm.__version__} (qiskit {qiskit.__version__}, Python "
        f"{platform.python_version()}, {kernels} kernels)"
    )


def _split_bench(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``qjm [options] bench ARGS...``: the arguments before ``bench`` and ARGS, given to the
    harness untouched (argparse would take ``--quick`` as one of qjm's own options)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "bench":
            return argv[: i + 1], argv[i + 1 :]
        if arg == "--store":
            i += 2
            continue
        if not arg.startswith("-"):
            break
        i += 1
    return argv, None


def main(argv: Sequence[str] | None = None) -> int:
    from qjm.exceptions import JobManagerError

    argv = list(sys.argv[1:] if argv is None else argv)
    argv, bench_args = _split_bench(argv)
    args = build_parser().parse_args(argv)
    if bench_args is not None:
        args.bench_args = bench_args
    from qjm.logs import log_to_stderr

    logger = logging.getLogger("qjm")
    level = logger.level
    handler = log_to_stderr(("WARNING", "INFO", "DEBUG")[min(args.verbose, 2)])
    try:
        return args.func(args)
    except JobManagerError as exc:
        print(f"qjm {args.command}: {exc}", file=sys.stderr)
        return 2
    finally:  # main() may run again in this process (tests, bench)
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
