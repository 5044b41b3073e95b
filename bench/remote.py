"""Benchmark of result transfer from ``qjm serve``: ``python -m bench.remote [--quick]``.

Two parts, both written to ``bench/RESULTS-remote.md`` with the command that made them:

1. Wire formats. One job of 100 experiments x 1,000 shots x 27 clbits with ``memory=True``
   (uniformly random outcomes: the worst case for both formats), encoded as qiskit's Result JSON
   (plain and gzip) and as qjm's columnar arrays (plain and gzip): bytes on the wire, the
   service's encoding time, and the client's decoding time into a ``JobRecord`` (what the job
   manager keeps) and into a ``qiskit.result.Result``. Then the same job fetched over HTTP from a
   running service in each format.

2. Fetching 1,000 finished jobs (small circuits: 8 qubits, 1,000 shots, memory) from a service on
   127.0.0.1 started with ``--latency-ms 0`` and ``--latency-ms 50``: one after another (the old
   job manager's way, a loop of ``job.result()``), and with 1, 8 and 32 threads
   (``ThreadPoolExecutor`` over ``RemoteJob.result()``, and 32 threads over
   ``columnar_result()``), and the real path, ``JobManager.retrieve_job_set(...).results()`` with
   32 workers. Reported: seconds, speed-up over one after another, results per second, MB/s of
   the transfer (compressed bytes as they came over the socket).

Every service this starts listens on 127.0.0.1 only and is stopped at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# -- a service ---------------------------------------------------------------------------------


class Service:
    """``python -m qjm.server`` on 127.0.0.1 and a free port, in its own process group."""

    def __init__(self, root: Path, *args: str):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "bench-" + os.urandom(8).hex()
        (root / "tokens").write_text(f"bench {self.token}\n")
        import qjm

        env = dict(os.environ)  # the service runs the qjm this process imports
        home = str(Path(qjm.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            [home] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        self.log = open(root / "server.log", "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qjm.server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--tokens",
                str(root / "tokens"),
                "--data",
                str(root / "data"),
                "--log-level",
                "warning",
                *args,
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import requests

        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((root / "server.log").read_text())
            try:
                if (
                    requests.get(
                        self.url + "/v1/limits",
                        timeout=2,
                        headers={"Authorization": f"Bearer {self.token}"},
                    ).status_code
                    == 200
                ):
                    break
            except requests.exceptions.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the service did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# -- part 1: wire formats ----------------------------------------------------------------------


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def wire_circuits(n: int = 100, bits: int = 27):
    from qiskit import QuantumCircuit

    out = []
    for i in range(n):
        qc = QuantumCircuit(bits, bits, name=f"w{i}")
        qc.h(range(bits))
        qc.measure(range(bits), range(bits))
        out.append(qc)
    return out


def bench_wire(repeat: int, work: Path) -> dict:
    from qiskit.result import Result
    from qiskit_aer import AerSimulator

    from qjm import wire
    from qjm._kernels import IMPLEMENTATION
    from qjm.records import decode_result
    from qjm.remote import RemoteBackend

    circuits = wire_circuits()
    options = dict(shots=1000, memory=True, seed_simulator=7)
    result = AerSimulator(method="stabilizer").run(circuits, **options).result()
    record = decode_result(result)
    js = wire.encode_result_json(result)
    js_gz = gzip.compress(js, 1)
    col = wire.encode_columnar(record)
    col_gz = gzip.compress(col, 1)

    def json_to_record(data: bytes, packed: bool):
        raw = gzip.decompress(data) if packed else data
        return decode_result(Result.from_dict(wire.decode_value(json.loads(raw))))

    def json_to_result(data: bytes, packed: bool):
        raw = gzip.decompress(data) if packed else data
        return Result.from_dict(wire.decode_value(json.loads(raw)))

    def col_to_record(data: bytes, packed: bool):
        return wire.decode_columnar(gzip.decompress(data) if packed else data)

    def col_to_result(data: bytes, packed: bool):
        return col_to_record(data, packed).to_result()

    # the decoded forms equal the original (checked once, untimed)
    assert json_to_result(js_gz, True).get_counts() == result.get_counts()
    assert col_to_result(col_gz, True).get_memory(5) == result.get_memory(5)

    rows = []
    for name, data, packed, to_record, to_result, encode in (
        (
            "Result JSON",
            js,
            False,
            json_to_record,
            json_to_result,
            lambda: wire.encode_result_json(result),
        ),
        (
            "Result JSON + gzip(1)",
            js_gz,
            True,
            json_to_record,
            json_to_result,
            lambda: gzip.compress(wire.encode_result_json(result), 1),
        ),
        (
            "columnar",
            col,
            False,
            col_to_record,
            col_to_result,
            lambda: wire.encode_columnar(decode_result(result)),
        ),
        (
            "columnar + gzip(1)",
            col_gz,
            True,
            col_to_record,
            col_to_result,
            lambda: gzip.compress(wire.encode_columnar(decode_result(result)), 1),
        ),
    ):
        rows.append(
            {
                "format": name,
                "bytes": len(data),
                "encode_ms": 1000 * best(encode, repeat),
                "to_record_ms": 1000 * best(lambda d=data, p=packed, f=to_record: f(d, p), repeat),
                "to_result_ms": 1000 * best(lambda d=data, p=packed, f=to_result: f(d, p), repeat),
            }
        )

    # the same job through a running service, in each format
    http = []
    with Service(work / "wire", "--workers", "1", "--method", "stabilizer") as svc:
        backend = RemoteBackend(svc.url, svc.token)
        job = backend.run(circuits, **options)
        job.columnar_result(timeout=300)
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {svc.token}"
        url = f"{svc.url}/v1/jobs/{job.job_id()}/result"
        for name, accept, encoding, decode in (
            ("Result JSON", "application/json", "identity", lambda c: json_to_record(c, False)),
            ("Result JSON + gzip", "application/json", "gzip", lambda c: json_to_record(c, False)),
            ("columnar", wire.MEDIA_COLUMNAR, "identity", lambda c: col_to_record(c, False)),
            ("columnar + gzip", wire.MEDIA_COLUMNAR, "gzip", lambda c: col_to_record(c, False)),
        ):
            sizes = []

            def fetch(accept=accept, encoding=encoding, decode=decode, sizes=sizes):
                r = session.get(
                    url, headers={"Accept": accept, "Accept-Encoding": encoding}, timeout=60
                )
                r.raise_for_status()
                sizes.append(int(r.headers["Content-Length"]))
                return decode(r.content)

            fetch()  # warm
            http.append({"format": name, "bytes": sizes[0], "ms": 1000 * best(fetch, repeat)})
        backend.close()
    return {"rows": rows, "http": http, "kernels": IMPLEMENTATION}


# -- part 2: fetching 1,000 jobs ----------------------------------------------------------------


def small_circuit(i: int):
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(8, 8, name=f"s{i}")
    for q in range(8):
        qc.rx(0.1 * (i % 31) + 0.2 * q, q)
    for q in range(7):
        qc.cx(q, q + 1)
    qc.measure(range(8), range(8))
    return qc


def wait_all_done(backend, n: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = len(backend.jobs(status="DONE", limit=1000))
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {n} jobs finished")
        time.sleep(0.5)


def bench_fetch(latency: float, n_jobs: int, work: Path, manager_path: bool) -> list[dict]:
    import qjm
    from qjm.remote import RemoteBackend, RemoteJob

    root = work / f"fetch-{int(latency)}"
    rows = []
    with Service(
        root, "--workers", "2", "--latency-ms", str(latency), "--max-pending", str(2 * n_jobs)
    ) as svc:
        backend = RemoteBackend(svc.url, svc.token, pool_size=32)
        circuits = [small_circuit(i) for i in range(n_jobs)]
        store = root / "client.sqlite"
        manager = qjm.JobManager(store=store)
        job_set = manager.run(
            circuits,
            backend=backend,
            max_experiments_per_job=1,
            max_workers=32,
            shots=1000,
            memory=True,
            seed_simulator=1,
        )
        ids = [j.job_id() for j in job_set.jobs()]
        set_id = job_set.job_set_id()
        manager.shutdown()
        manager._store.close()
        pristine = root / "pristine.sqlite"
        shutil.copy(store, pristine)
        wait_all_done(backend, n_jobs)

        def fresh_jobs(b):
            return [RemoteJob(b, i) for i in ids]  # no request yet, nothing cached

        def measure(mode: str, threads: int, call: str, run) -> None:
            b = RemoteBackend(svc.url, svc.token, pool_size=max(32, threads))
            jobs = fresh_jobs(b)
            t0 = time.perf_counter()
            run(jobs)
            seconds = time.perf_counter() - t0
            wire_bytes = sum(j.result_wire_bytes or 0 for j in jobs)
            rows.append(
                {
                    "latency_ms": latency,
                    "mode": mode,
                    "threads": threads,
                    "call": call,
                    "seconds": seconds,
                    "bytes": wire_bytes,
                    "jobs": len(jobs),
                }
            )
            b.close()
            print(f"  latency {latency:>3.0f} ms  {mode:<28} {seconds:8.2f} s", flush=True)

        def sequential(jobs):
            for job in jobs:
                job.result()

        def pooled(threads, method):
            def run(jobs):
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda j: getattr(j, method)(), jobs))

            return run

        measure("one after another", 1, "result()", sequential)
        for threads in (1, 8, 32):
            measure(f"{threads} thread(s)", threads, "result()", pooled(threads, "result"))
        measure("32 threads", 32, "columnar_result()", pooled(32, "columnar_result"))

        if manager_path:
            shutil.copy(pristine, store)
            for suffix in ("-wal", "-shm"):
                Path(str(store) + suffix).unlink(missing_ok=True)
            b = RemoteBackend(svc.url, svc.token, pool_size=32)
            m = qjm.JobManager(store=store)
            t0 = time.perf_counter()
            js = m.retrieve_job_set(set_id, backend=b)
            js._max_workers = 32  # retrieve_job_set takes no max_workers (8 by default)
            js._attach()  # one retrieve_job per job, one after another, in the calling thread
            attach = time.perf_counter() - t0
            t2 = time.perf_counter()
            looked_up = b.retrieve_jobs(ids)  # what a batch look-up would cost instead
            batch = time.perf_counter() - t2
            assert all(j is not None for j in looked_up)
            t1 = time.perf_counter()
            results = js.results(timeout=1800)
            fetch = time.perf_counter() - t1
            assert results.success, js.error_messages()
            wire_bytes = sum(
                mj.job.result_wire_bytes or 0 for mj in js.managed_jobs() if mj.job is not None
            )
            rows.append(
                {
                    "latency_ms": latency,
                    "mode": "JobManager results(), 32 workers",
                    "threads": 32,
                    "call": "status() + result() per job",
                    "seconds": fetch,
                    "bytes": wire_bytes,
                    "jobs": n_jobs,
                    "attach": attach,
                    "batch": batch,
                }
            )
            print(
                f"  latency {latency:>3.0f} ms  JobManager: attach {attach:.2f} s, results() {fetch:.2f} s",
                flush=True,
            )
            m.shutdown()
            b.close()
        backend.close()
    return rows


# -- the report ---------------------------------------------------------------------------------


def render(command: str, wire_out: dict | None, fetch_rows: list[dict], n_jobs: int) -> str:
    lines = [
        "# Remote results: qjm serve and RemoteBackend",
        "",
        f"Command: `{command}`",
        "",
        f"Made {datetime.now().strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average before the run {os.getloadavg()[0]:.2f}. Services on 127.0.0.1 only.",
        "",
    ]
    if wire_out:
        lines += [
            "## Wire formats: 100 experiments x 1,000 shots x 27 clbits, memory=True",
            "",
            f"Client-side decode times, best of several (kernels: {wire_out['kernels']}). "
            "'to JobRecord' is what the job manager keeps (count and memory arrays); "
            "'to Result' is a qiskit `Result` (hex strings made on the way).",
            "",
            "| format | bytes on the wire | service encode ms | client decode to JobRecord ms | "
            "client decode to Result ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in wire_out["rows"]:
            lines.append(
                f"| {r['format']} | {r['bytes']:,} | {r['encode_ms']:.1f} | {r['to_record_ms']:.1f} | "
                f"{r['to_result_ms']:.1f} |"
            )
        lines += [
            "",
            "The same job fetched from a running service (loopback, no added latency): "
            "request, transfer and decode into a JobRecord, best of several.",
            "",
            "| format (Accept, Accept-Encoding) | bytes (Content-Length) | client ms |",
            "|---|---:|---:|",
        ]
        for r in wire_out["http"]:
            lines.append(f"| {r['format']} | {r['bytes']:,} | {r['ms']:.1f} |")
        lines.append("")
    if fetch_rows:
        lines += [
            f"## Fetching {n_jobs:,} finished jobs (8 qubits, 1,000 shots, memory=True each)",
            "",
            "Speed-up is over one after another at the same latency; MB/s counts the bytes as they "
            "came over the socket (gzip-compressed columnar results, 1 MB = 10^6 bytes).",
            "",
            "| latency | how | call | threads | seconds | speed-up | results/s | MB/s |",
            "|---:|---|---|---:|---:|---:|---:|---:|",
        ]
        for latency in sorted({r["latency_ms"] for r in fetch_rows}):
            rows = [r for r in fetch_rows if r["latency_ms"] == latency]
            base = next(r["seconds"] for r in rows if r["mode"] == "one after another")
            for r in rows:
                lines.append(
                    f"| {latency:.0f} ms | {r['mode']} | {r['call']} | {r['threads']} | "
                    f"{r['seconds']:.2f} | {base / r['seconds']:.1f}x | {r['jobs'] / r['seconds']:,.0f} | "
                    f"{r['bytes'] / r['seconds'] / 1e6:.2f} |"
                )
        attach = [r for r in fetch_rows if "attach" in r]
        if attach:
            lines += [""] + [
                f"JobManager at {r['latency_ms']:.0f} ms: `retrieve_job_set` reattaches its jobs "
                f"(through `RemoteBackend.retrieve_jobs`, one request per 100 ids) in "
                f"{r['attach']:.2f} s before `results()` starts (not in the table's seconds); "
                f"`retrieve_jobs` on its own looks up the same {r['jobs']:,} jobs in "
                f"{r['batch']:.2f} s."
                for r in attach
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.remote", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="100 jobs, fewer repetitions")
    parser.add_argument(
        "--jobs", type=int, default=None, help="jobs to fetch (default 1000; 100 with --quick)"
    )
    parser.add_argument(
        "--latency", type=float, nargs="+", default=[0.0, 50.0], help="ms (default 0 50)"
    )
    parser.add_argument("--no-wire", action="store_true", help="skip the wire-format part")
    parser.add_argument("--no-manager", action="store_true", help="skip the JobManager path")
    parser.add_argument(
        "--output",
        default=str(REPO / "bench" / "RESULTS-remote.md"),
        help="markdown file to write ('-': print only)",
    )
    args = parser.parse_args(argv)
    n_jobs = args.jobs or (100 if args.quick else 1000)
    repeat = 3 if args.quick else 7
    command = "python -m bench.remote" + (
        ""
        if argv is None and len(sys.argv) < 2
        else " " + " ".join(argv if argv is not None else sys.argv[1:])
    )
    work = Path(tempfile.mkdtemp(prefix="qjm-bench-remote-"))
    try:
        wire_out = None
        if not args.no_wire:
            print("wire formats...", flush=True)
            wire_out = bench_wire(repeat, work)
        rows = []
        for latency in args.latency:
            print(f"fetching {n_jobs} jobs at {latency:.0f} ms...", flush=True)
            rows += bench_fetch(latency, n_jobs, work, not args.no_manager)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(command.strip(), wire_out, rows, n_jobs)
    print(text)
    if args.output != "-":
        Path(args.output).write_text(text)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
