"""``python -m bench.jobset_scale``: backend calls and retrieval time of a large finished job set.

    python -m bench.jobset_scale                 # 10,000 circuits in 1,000 jobs, writes
                                                 # bench/RESULTS-jobset-scale.md
    python -m bench.jobset_scale --quick         # 1,000 circuits in 100 jobs (well under 30 s);
                                                 # prints only, unless --output is given
    python -m bench.jobset_scale --circuits 20000 --per-job 10 --no-write

What it measures, for a set whose results have all been fetched (``results()`` returned):

1. In this process: how many backend calls (``job.status()``, ``job.result()``,
   ``backend.retrieve_job``/``retrieve_jobs``, ``backend.run``) each of ``statuses()``,
   ``report()``, ``report(detailed=True)``, a second ``results()`` and ``manager.job_sets()``
   (with ``statuses()`` of each set, as ``qjm list`` does) makes, and how long it takes, next to a
   user who kept the backend's job objects and asks each of them.
2. In a new process (a subprocess started here, timed inside it after its imports):
   ``JobManager(store=path).retrieve_job_set(id, backend=...)``, then ``statuses()``, ``report()``,
   ``report(detailed=True)``, ``results()`` (every result from the store), then ``get_counts`` of
   every experiment; and ``qjm list`` (``qjm.cli.main(["--store", path, "list"])``). Next to a user
   who kept the job ids in a new process: ``backend.retrieve_job(id)``, ``.status()`` and
   ``.result()`` for each, then ``get_counts`` of every experiment of every ``Result``.

The backend is :class:`CountingBackend`: a real ``qiskit.providers.BackendV2`` whose jobs are
``JobV1`` subclasses returning real ``qiskit.result.Result`` objects, built from counts sampled
with numpy (uniform over the clbits' outcomes), seeded from the job id, so a job's result is the
same whichever process builds it. Every backend call is counted. A new process gets its own
backend instance that answers ``retrieve_job(id)`` for jobs created in the parent: the parent's
backend writes a small JSON side file (job id -> the circuit names, qubit and clbit counts,
classical registers and shots of the job) that the child's backend reads. Nothing in qjm knows
about this backend; qjm is used through its public API only.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import itertools
import json
import os
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.providers import BackendV2, JobError, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.result.models import ExperimentResult, ExperimentResultData
from qiskit.transpiler import Target

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-jobset-scale.md"
SHOTS = 16
QUBITS = 3
# the kinds of backend call counted; the first four are the ones the brief names
CALLS = (
    "job.status",
    "job.result",
    "backend.retrieve_job",
    "backend.retrieve_jobs",
    "backend.run",
    "job.cancel",
)
RETRIEVAL_TARGET_S = 1.0  # per 1,000 jobs, retrieve_job_set + statuses + reports + results
PROFILE_THRESHOLD_S = 0.3  # per 1,000 jobs: profile the retrieval when it takes longer


# ------------------------------------------------------------------------------------------------
# The counting backend
# ------------------------------------------------------------------------------------------------


class CountingJob(JobV1):
    """A job of :class:`CountingBackend`: DONE at once; ``result()`` builds a qiskit ``Result``
    from counts sampled with a seed derived from the job id. Every call is counted on the
    backend."""

    def __init__(self, backend: CountingBackend, job_id: str, spec: dict):
        super().__init__(backend, job_id)
        self._spec = spec

    def submit(self) -> None:
        """Jobs are submitted by ``backend.run``; this is a no-op."""
        return None

    def status(self) -> JobStatus:
        self._backend._count("job.status")
        return JobStatus.DONE

    def result(self, timeout: float | None = None, **kwargs: Any) -> Result:
        self._backend._count("job.result")
        return self._backend._result(self.job_id(), self._spec)

    def cancel(self) -> bool:
        self._backend._count("job.cancel")
        return False


class CountingBackend(BackendV2):
    """A ``BackendV2`` that counts every call made to it and to its jobs.

    Args:
        registry: a JSON side file written by :meth:`save` in another process: this backend then
            answers ``retrieve_job(id)`` for the jobs listed there.
        latency: seconds every counted call sleeps (0: a local backend; a remote service is
            typically 0.05-0.5 s per call).
    """

    def __init__(self, registry: str | os.PathLike | None = None, latency: float = 0.0):
        super().__init__(name="counting_backend", backend_version="1.0")
        self._target = Target(num_qubits=QUBITS)
        self._latency = float(latency)
        self._lock = threading.Lock()
        self._calls = dict.fromkeys(CALLS, 0)
        self._specs: dict[str, dict] = {}  # job id -> what the job ran
        self._jobs: dict[str, CountingJob] = {}  # this process's job objects, by id
        self._prefix = uuid.uuid4().hex[:8]
        self._serial = itertools.count()
        if registry is not None:
            with open(registry) as f:
                self._specs.update(json.load(f))

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=SHOTS, memory=False)

    @property
    def target(self) -> Target:
        return self._target

    @property
    def max_circuits(self) -> None:
        return None

    # -- bookkeeping ---------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self._calls[what] += 1
        if self._latency:
            time.sleep(self._latency)

    def calls(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._lock:
            return dict(self._calls)

    def save(self, path: str | os.PathLike) -> None:
        """Write the side file another process's backend reads (``registry=``)."""
        with self._lock:
            specs = dict(self._specs)
        with open(path, "w") as f:
            json.dump(specs, f)

    # -- the backend ---------------------------------------------------------------------------

    def run(self, run_input: Any, **options: Any) -> CountingJob:
        self._count("backend.run")
        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        if options.get("memory"):
            raise ValueError("CountingBackend does not produce memory")
        shots = int(options.get("shots") or self.options.shots)
        spec = {
            "names": [c.name for c in circuits],
            "qubits": [c.num_qubits for c in circuits],
            "cregs": [[[r.name, r.size] for r in c.cregs] for c in circuits],
            "shots": shots,
        }
        job_id = f"cb-{self._prefix}-{next(self._serial):07d}"
        job = CountingJob(self, job_id, spec)
        with self._lock:
            self._specs[job_id] = spec
            self._jobs[job_id] = job
        return job

    def retrieve_job(self, job_id: str) -> CountingJob:
        self._count("backend.retrieve_job")
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                spec = self._specs.get(job_id)
                if spec is None:
                    raise JobError(f"no job with id {job_id!r}")
                job = self._jobs[job_id] = CountingJob(self, job_id, spec)
        return job

    # no retrieve_jobs: qjm falls back to one retrieve_job per job it reattaches, so any
    # reattachment of finished jobs shows in the counts job by job (the counter stays for the
    # table, at 0)

    def _result(self, job_id: str, spec: dict) -> Result:
        """The job's ``Result``: counts sampled uniformly over each experiment's outcomes, from a
        seed derived from the job id (the same in every process)."""
        rng = np.random.default_rng(zlib.crc32(job_id.encode()))
        shots = spec["shots"]
        experiments = []
        for name, qubits, cregs in zip(spec["names"], spec["qubits"], spec["cregs"]):
            clbits = sum(size for _, size in cregs)
            drawn = rng.multinomial(shots, np.full(1 << clbits, 1.0 / (1 << clbits)))
            counts = {hex(k): int(v) for k, v in enumerate(drawn.tolist()) if v}
            header = {
                "name": name,
                "memory_slots": clbits,
                "creg_sizes": [list(r) for r in cregs],
                "n_qubits": qubits,
                "qreg_sizes": [["q", qubits]],
                "metadata": {},
            }
            experiments.append(
                ExperimentResult(
                    shots, True, ExperimentResultData(counts=counts), status="DONE", header=header
                )
            )
        return Result(
            backend_name=self.name,
            backend_version=self.backend_version,
            job_id=job_id,
            success=True,
            results=experiments,
            status="COMPLETED",
        )


def make_circuits(n: int) -> list[QuantumCircuit]:
    """``n`` tiny circuits (3 qubits, GHZ, measured), named ``c0`` .. ``c{n-1}``."""
    base = QuantumCircuit(QUBITS, QUBITS)
    base.h(0)
    base.cx(0, 1)
    base.cx(1, 2)
    base.measure(range(QUBITS), range(QUBITS))
    return [base.copy(name=f"c{i}") for i in range(n)]


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in CALLS}


def _total(calls: dict[str, int] | None) -> int:
    return sum(calls.values()) if calls else 0


def _calls_text(calls: dict[str, int] | None) -> str:
    """``"0 backend calls"`` or ``"1,000 backend calls (1,000 job.status)"``."""
    if calls is None:
        return "no backend in the process"
    n = _total(calls)
    parts = [f"{v:,} {k}" for k, v in calls.items() if v]
    return f"{n:,} backend calls" + (f" ({', '.join(parts)})" if parts else "")


def _digest(counts: list[dict]) -> str:
    """A hash of a list of count dicts, to compare both sides' answers."""
    text = json.dumps([sorted(c.items()) for c in counts])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# The child processes (timed inside, after their imports)
# ------------------------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> int:
    """Run one side in this (new) process; print one JSON line with times and call counts."""
    import qjm  # noqa: F401 - imported before the timer, as a user's script would

    out: dict[str, Any] = {"steps": {}}
    backend = CountingBackend(registry=args.registry, latency=args.latency)

    def step(name: str, fn: Any) -> Any:
        before = backend.calls()
        t0 = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - t0
        out["steps"][name] = {"s": seconds, "calls": _delta(before, backend.calls())}
        return value

    profiler = cProfile.Profile() if args.profile else None
    if args.child == "qjm":
        from qjm import JobManager

        if profiler:
            profiler.enable()
        job_set = step(
            "retrieve_job_set",
            lambda: JobManager(store=args.store).retrieve_job_set(args.set_id, backend=backend),
        )
        statuses = step("statuses", job_set.statuses)
        step("report", job_set.report)
        step("report_detailed", lambda: job_set.report(detailed=True))
        results = step("results", job_set.results)
        if profiler:
            profiler.disable()
        n = len(results)
        counts = step("get_counts", lambda: [results.get_counts(i) for i in range(n)])
        out["ok"] = bool(results.success) and all(s == JobStatus.DONE for s in statuses)
        out["jobs"] = len(statuses)
    elif args.child == "baseline":
        with open(args.ids) as f:
            job_ids = json.load(f)

        def retrieve() -> list[Result]:
            jobs = [backend.retrieve_job(job_id) for job_id in job_ids]
            statuses = [job.status() for job in jobs]
            if any(s != JobStatus.DONE for s in statuses):
                raise RuntimeError("a job is not DONE")
            return [job.result() for job in jobs]

        results = step("retrieve_status_result", retrieve)
        counts = step(
            "get_counts",
            lambda: [r.get_counts(k) for r in results for k in range(len(r.results))],
        )
        out["ok"] = all(r.success for r in results)
        out["jobs"] = len(results)
    elif args.child == "list":
        from qjm.cli import main as qjm_main

        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            t0 = time.perf_counter()
            code = qjm_main(["--store", args.store, "list"])
            seconds = time.perf_counter() - t0
        # the command is given no backend: no backend object exists in its process
        out["steps"]["qjm_list"] = {"s": seconds, "calls": None}
        out["ok"] = code == 0 and args.set_id in buffer.getvalue()
        out["output"] = buffer.getvalue().strip()
        counts = []
    else:
        raise ValueError(args.child)
    out["digest"] = _digest(counts)
    out["experiments"] = len(counts)
    if profiler:
        profiler.dump_stats(args.profile)
    print(json.dumps(out))
    return 0


def _spawn(kind: str, paths: dict[str, str], latency: float, profile: str | None = None) -> dict:
    """Run a child of ``kind`` in a new process and return what it printed."""
    cmd = [
        sys.executable,
        "-m",
        "bench.jobset_scale",
        "--child",
        kind,
        "--store",
        paths["store"],
        "--registry",
        paths["registry"],
        "--ids",
        paths["ids"],
        "--set-id",
        paths["set_id"],
        "--latency",
        str(latency),
    ]
    if profile:
        cmd += ["--profile", profile]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (env.get("PYTHONPATH"), str(REPO)) if p]
    )  # appended: qjm itself comes from where it is installed
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# The parent: run the set, measure in this process, then in new processes
# ------------------------------------------------------------------------------------------------


class Table:
    """Rows of the results table: measure, size, qjm, baseline, ratio, target, met?"""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        measure: str,
        size: str,
        qjm_s: float,
        qjm_calls: dict | None,
        baseline_s: float | None,
        baseline_calls: dict | None,
        baseline_what: str,
        target: str,
        met: bool,
    ) -> None:
        from bench.report import _ratio, _sec

        ratio = "-"
        if baseline_s is not None and qjm_s > 0:
            ratio = _ratio(baseline_s / qjm_s)
        self.rows.append(
            (
                measure,
                size,
                f"{_sec(qjm_s)}; {_calls_text(qjm_calls)}",
                "-"
                if baseline_s is None
                else f"{baseline_what}: {_sec(baseline_s)}; {_calls_text(baseline_calls)}",
                ratio,
                target,
                "yes" if met else "**no**",
            )
        )

    def markdown(self) -> str:
        from bench.report import _markdown

        head = (
            "| measure | size | qjm | baseline | ratio | target | met? |\n"
            "|---|---|---|---|---|---|---|"
        )
        return _markdown(head, self.rows)


def _count_once(backend: CountingBackend, fn: Any, *args: Any) -> dict[str, int]:
    """The backend calls that one ``fn(*args)`` makes (untimed)."""
    before = backend.calls()
    fn(*args)
    return _delta(before, backend.calls())


def _short(file: str) -> str:
    """A source path relative to the checkout, site-packages or the standard library."""
    if file.startswith(str(REPO) + os.sep):
        return os.path.relpath(file, REPO)
    for marker in ("site-packages" + os.sep, os.sep + "lib" + os.sep):
        if marker in file:
            return file[file.rindex(marker) + len(marker) :]
    return file


def _profile_text(path: str, top: int = 14) -> list[str]:
    """The top qjm functions by cumulative time, and the top functions anywhere by own time."""
    stats = pstats.Stats(path)
    entries = stats.stats  # (file, line, function) -> (cc, nc, tt, ct, callers)
    qjm_dir = str(Path(__import__("qjm").__file__).resolve().parent)
    ours = [(k, v) for k, v in entries.items() if k[0].startswith(qjm_dir)]
    ours.sort(key=lambda kv: kv[1][3], reverse=True)
    lines = ["", "qjm functions by cumulative time (cProfile, one retrieval in a new process):", ""]
    lines.append("| function | file:line | calls | own s | cumulative s |")
    lines.append("|---|---|---:|---:|---:|")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in ours[:top]:
        lines.append(f"| `{func}` | {_short(file)}:{line} | {nc:,} | {tt:.3f} | {ct:.3f} |")
    allf = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)
    lines += ["", "Anywhere, by own time:", ""]
    lines.append("| function | file:line | calls | own s | cumulative s |")
    lines.append("|---|---|---:|---:|---:|")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in allf[:10]:
        where = f"{_short(file)}:{line}" if file.startswith("/") else file
        lines.append(f"| `{func}` | {where} | {nc:,} | {tt:.3f} | {ct:.3f} |")
    return lines


def run_bench(args: argparse.Namespace) -> tuple[str, bool]:
    """Run every measure; returns the markdown and whether every answer was right."""
    import qjm
    from bench.report import _sec, environment, load_average
    from bench.timing import side_by_side

    started = time.perf_counter()
    env = environment()
    n, per_job = args.circuits, args.per_job
    n_jobs = -(-n // per_job)
    size = f"{n:,} circuits in {n_jobs:,} jobs"
    per_k = n_jobs / 1000.0
    table = Table()
    notes: list[str] = []
    details: list[str] = []
    ok = True
    tmp = tempfile.mkdtemp(prefix="qjm-jobset-scale-")
    try:
        paths = {
            "store": os.path.join(tmp, "jobsets.sqlite"),
            "registry": os.path.join(tmp, "jobs.json"),
            "ids": os.path.join(tmp, "job_ids.json"),
        }
        circuits = make_circuits(n)
        backend = CountingBackend(latency=args.latency)
        manager = qjm.JobManager(store=paths["store"])
        t0 = time.perf_counter()
        job_set = manager.run(
            circuits,
            backend=backend,
            name="jobset-scale",
            max_experiments_per_job=per_job,
            shots=SHOTS,
        )
        results = job_set.results()
        run_s = time.perf_counter() - t0
        run_calls = backend.calls()
        if not results.success:
            raise RuntimeError("the job set did not succeed: " + str(job_set.error_messages()))
        paths["set_id"] = job_set.job_set_id()
        jobs = job_set.jobs()  # the job objects a user of the backend would have kept
        job_ids = [job.job_id() for job in jobs]
        backend.save(paths["registry"])
        with open(paths["ids"], "w") as f:
            json.dump(job_ids, f)
        notes.append(
            f"- Setup (not in the table): `run()` then `results()` of {size} "
            f"({SHOTS} shots, {QUBITS} qubits each) took {run_s:.2f} s and made "
            f"{_calls_text(run_calls)}."
        )
        print(f"run + results: {run_s:.2f} s, {_calls_text(run_calls)}", flush=True)

        # -- 1. this process, after results() returned ------------------------------------------
        def baseline_statuses(_: Any) -> list:
            return [job.status() for job in jobs]

        def baseline_summary(_: Any) -> dict:
            counts: dict = {}
            for job in jobs:
                s = job.status()
                counts[s] = counts.get(s, 0) + 1
            return counts

        def baseline_detail(_: Any) -> str:
            return "\n".join(f"{job.job_id()}: {job.status().name}" for job in jobs)

        def baseline_results(_: Any) -> list:
            return [job.result() for job in jobs]

        def job_sets_statuses(_: Any) -> list:
            return [s.statuses() for s in manager.job_sets()]

        in_process = [
            (
                "`statuses()`",
                lambda _: job_set.statuses(),
                baseline_statuses,
                "`[job.status() for job in jobs]`",
            ),
            (
                "`report()`",
                lambda _: job_set.report(detailed=False),
                baseline_summary,
                "count `job.status()` of each kept job",
            ),
            (
                "`report(detailed=True)`",
                lambda _: job_set.report(detailed=True),
                baseline_detail,
                "a line of `job.job_id()`, `job.status()` per kept job",
            ),
            (
                "`results()` again",
                lambda _: job_set.results(),
                baseline_results,
                "`[job.result() for job in jobs]`",
            ),
            (
                "`manager.job_sets()` + `statuses()` of each (`qjm list` in the same process)",
                job_sets_statuses,
                baseline_statuses,
                "`[job.status() for job in jobs]`",
            ),
        ]
        for title, qjm_fn, base_fn, base_what in in_process:
            q_calls = _count_once(backend, qjm_fn, None)
            b_calls = _count_once(backend, base_fn, None)
            pair = side_by_side(args.repeat, base_fn, qjm_fn)
            met = _total(q_calls) == 0
            table.add(
                f"this process, after `results()`: {title}",
                size,
                pair.qjm,
                q_calls,
                pair.baseline,
                b_calls,
                base_what,
                "0 backend calls",
                met,
            )
            details.append(
                f"- this process, {title}: {pair.repeat} repetitions per side; qjm best "
                f"{_sec(pair.qjm)}, median {_sec(statistics.median(pair.qjm_all))}; baseline "
                f"best {_sec(pair.baseline)}, median {_sec(statistics.median(pair.baseline_all))}"
            )
            print(
                f"{title}: qjm {_sec(pair.qjm)} {_calls_text(q_calls)}; baseline "
                f"{_sec(pair.baseline)} {_calls_text(b_calls)}",
                flush=True,
            )
        expected_digest = _digest(
            [results.get_counts(i) for i in range(n)]
        )  # untimed: what the children must find
        job_set.shutdown()
        manager.shutdown()
        del results

        # -- 2. a new process ------------------------------------------------------------------
        q_runs: list[dict] = []
        b_runs: list[dict] = []
        l_runs: list[dict] = []
        for _ in range(args.child_repeat):
            b_runs.append(_spawn("baseline", paths, args.latency))
            q_runs.append(_spawn("qjm", paths, args.latency))
            l_runs.append(_spawn("list", paths, args.latency))
            print(
                f"new process: qjm {sum(s['s'] for s in q_runs[-1]['steps'].values()):.3f} s, "
                f"baseline {sum(s['s'] for s in b_runs[-1]['steps'].values()):.3f} s "
                "(retrieval + get_counts), "
                f"qjm list {l_runs[-1]['steps']['qjm_list']['s']:.3f} s",
                flush=True,
            )
        for name, runs in (("qjm", q_runs), ("baseline", b_runs), ("list", l_runs)):
            for r in runs:
                if not r["ok"] or (name != "list" and r["digest"] != expected_digest):
                    ok = False
                    notes.append(f"- WRONG: a {name} child found other results: {r}")

        retrieval = ("retrieve_job_set", "statuses", "report", "report_detailed", "results")

        def q_total(r: dict) -> float:
            return sum(r["steps"][s]["s"] for s in retrieval)

        best_q = min(q_runs, key=q_total)
        best_b = min(b_runs, key=lambda r: r["steps"]["retrieve_status_result"]["s"])
        best_l = min(l_runs, key=lambda r: r["steps"]["qjm_list"]["s"])
        b_ret = best_b["steps"]["retrieve_status_result"]
        for step_name, title in (
            ("retrieve_job_set", "`JobManager(store=path).retrieve_job_set(id, backend=...)`"),
            ("statuses", "then `statuses()`"),
            ("report", "then `report()`"),
            ("report_detailed", "then `report(detailed=True)`"),
            ("results", "then `results()` (all from the store)"),
        ):
            st = best_q["steps"][step_name]
            table.add(
                f"new process: {title}",
                size,
                st["s"],
                st["calls"],
                None,
                None,
                "",
                "0 backend calls",
                _total(st["calls"]) == 0,
            )
        q_all_calls = {k: sum(best_q["steps"][s]["calls"][k] for s in retrieval) for k in CALLS}
        q_s = q_total(best_q)
        met_time = q_s / per_k < RETRIEVAL_TARGET_S
        table.add(
            "new process: retrieval, all of the above",
            size,
            q_s,
            q_all_calls,
            b_ret["s"],
            b_ret["calls"],
            "`backend.retrieve_job(id)`, `.status()`, `.result()` per kept id",
            f"< {RETRIEVAL_TARGET_S:g} s per 1,000 jobs ({RETRIEVAL_TARGET_S * per_k:g} s); "
            "0 backend calls",
            met_time and _total(q_all_calls) == 0,
        )
        gq, gb = best_q["steps"]["get_counts"], best_b["steps"]["get_counts"]
        table.add(
            "new process: then `get_counts(i)` of every experiment",
            f"{n:,} experiments",
            gq["s"],
            gq["calls"],
            gb["s"],
            gb["calls"],
            "`r.get_counts(k)` over the Results",
            "0 backend calls",
            _total(gq["calls"]) == 0,
        )
        if args.baseline_latency > 0:
            # the same pair against a backend whose every call takes baseline_latency seconds
            lq, lb = [], []
            for _ in range(args.child_repeat):
                lb.append(_spawn("baseline", paths, args.baseline_latency))
                lq.append(_spawn("qjm", paths, args.baseline_latency))
            for r in lq + lb:
                if not r["ok"] or r["digest"] != expected_digest:
                    ok = False
                    notes.append(f"- WRONG: a child at latency found other results: {r}")
            bq = min(lq, key=q_total)
            bb = min(lb, key=lambda r: r["steps"]["retrieve_status_result"]["s"])
            bq_calls = {k: sum(bq["steps"][s]["calls"][k] for s in retrieval) for k in CALLS}
            bq_s = q_total(bq)
            lat = f"{args.baseline_latency * 1e3:g} ms"
            table.add(
                f"new process: retrieval, all of the above, backend at {lat} per call",
                size,
                bq_s,
                bq_calls,
                bb["steps"]["retrieve_status_result"]["s"],
                bb["steps"]["retrieve_status_result"]["calls"],
                "the same loop",
                f"< {RETRIEVAL_TARGET_S:g} s per 1,000 jobs; 0 backend calls",
                bq_s / per_k < RETRIEVAL_TARGET_S and _total(bq_calls) == 0,
            )
            details.append(
                f"- new process at {lat} per backend call, retrieval totals (s): qjm "
                + ", ".join(f"{q_total(r):.3f}" for r in lq)
                + "; baseline "
                + ", ".join(f"{r['steps']['retrieve_status_result']['s']:.3f}" for r in lb)
            )
        lst = best_l["steps"]["qjm_list"]
        table.add(
            "new process: `qjm list` (`qjm.cli.main(['--store', path, 'list'])`)",
            size,
            lst["s"],
            None,
            None,
            None,
            "",
            "0 backend calls (none possible: no backend given)",
            True,
        )
        details.append(
            "- new process, qjm retrieval totals (s): "
            + ", ".join(f"{q_total(r):.3f}" for r in q_runs)
            + "; baseline: "
            + ", ".join(f"{r['steps']['retrieve_status_result']['s']:.3f}" for r in b_runs)
            + "; `qjm list`: "
            + ", ".join(f"{r['steps']['qjm_list']['s']:.3f}" for r in l_runs)
        )
        details.append(
            "- new process, qjm steps of the best run (s): "
            + ", ".join(f"{k} {v['s']:.4f}" for k, v in best_q["steps"].items())
        )
        details.append(f"- `qjm list` printed: `{best_l['output'][:200]}`")
        per_k_s = q_s / per_k
        notes.append(
            f"- Retrieval in a new process: {q_s:.3f} s for {n_jobs:,} jobs = {per_k_s:.3f} s "
            f"per 1,000 jobs (target < {RETRIEVAL_TARGET_S:g} s"
            f"{'' if met_time else ': NOT met'}); the baseline's "
            f"{b_ret['s']:.3f} s made {_calls_text(b_ret['calls'])}, which on a service at "
            "50 ms per call would add "
            f"{0.05 * _total(b_ret['calls']):,.0f} s one after another."
        )

        # -- profile ---------------------------------------------------------------------------
        any_unmet = any(r[-1] != "yes" for r in table.rows)
        if args.profile or any_unmet or per_k_s > PROFILE_THRESHOLD_S:
            prof = os.path.join(tmp, "retrieval.prof")
            prof_run = _spawn("qjm", paths, args.latency, profile=prof)
            why = (
                "asked for"
                if args.profile
                else f"retrieval took {per_k_s:.3f} s per 1,000 jobs (> {PROFILE_THRESHOLD_S} s)"
                if per_k_s > PROFILE_THRESHOLD_S
                else "a target was not met"
            )
            details.append(
                f"- Profiled ({why}): a separate child under cProfile, retrieval "
                f"{q_total(prof_run):.3f} s with the profiler on"
            )
            profile_lines = _profile_text(prof)
        else:
            profile_lines = []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    notes += [
        "- Backend: `CountingBackend` (in `bench/jobset_scale.py`), a real `BackendV2` whose jobs "
        "are `JobV1` subclasses, DONE at once, whose `result()` builds a real "
        "`qiskit.result.Result` from counts sampled with numpy, seeded from the job id. Every "
        "`job.status()`, `job.result()`, `job.cancel()`, `backend.run()` and "
        "`backend.retrieve_job()` is counted (it has no `retrieve_jobs`, so qjm would reattach "
        f"job by job). Latency per call: {args.latency:g} s"
        + (
            " (a local backend: times below are qjm's own costs; on a remote service each "
            "baseline call costs a round trip)"
            if not args.latency
            else ""
        )
        + ".",
        "- New process: the parent's backend writes a JSON side file (job id -> circuit names, "
        "qubit counts, classical registers, shots); the child builds its own `CountingBackend` "
        "from it, which answers `retrieve_job(id)` for the parent's jobs and rebuilds the same "
        "`Result` from the id's seed. Each child is a fresh `python -m bench.jobset_scale "
        "--child ...`, timed inside after `import qjm` and the qiskit imports (qjm's lazily "
        "imported modules are paid inside the timer); the store is the parent's SQLite file "
        "(in the OS page cache after the first child). Best of "
        f"{args.child_repeat} children per side, alternating baseline, qjm, `qjm list`.",
        "- Checked untimed: in every qjm and baseline child, `get_counts` of all "
        f"{n:,} experiments equals (sha256 of the count dicts) what `results()` gave in the "
        "parent; every status is DONE and `success` is True.",
        "- In-process rows: best of the same number of repetitions per side, alternating, "
        "`bench.timing.side_by_side`; the calls are counted in one separate untimed call per "
        "side. `ratio` = baseline time / qjm time (above 1: qjm faster).",
        f"- Whole run: {time.perf_counter() - started:.1f} s; load average at the end: "
        f"{load_average()}.",
    ]
    command = " ".join(["python -m bench.jobset_scale", *map(shlex.quote, args.argv)]).strip()
    out = ["# qjm benchmark: a large finished job set, backend calls and retrieval", ""]
    out += ["Produced by:", "", "```", command, "```", ""]
    out += [f"- {k}: {v}" for k, v in env.items()]
    out += ["", table.markdown(), "", "## Notes", "", *notes, "", "## Details", "", *details]
    if profile_lines:
        out += ["", "## Profile of the retrieval", *profile_lines]
    return "\n".join(out) + "\n", ok


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.jobset_scale",
        description="Backend calls and retrieval time of a large finished job set.",
    )
    p.add_argument("--circuits", type=int, default=None, help="circuits (default 10,000)")
    p.add_argument("--per-job", type=int, default=None, help="circuits per job (default 10)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="1,000 circuits in 100 jobs; prints only unless --output is given",
    )
    p.add_argument("--repeat", type=int, default=None, help="in-process repetitions (default 5)")
    p.add_argument(
        "--child-repeat",
        type=int,
        default=None,
        help="new-process children per side (default 3, 2 with --quick)",
    )
    p.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds every backend call sleeps (default 0: a local backend)",
    )
    p.add_argument(
        "--baseline-latency",
        type=float,
        default=0.001,
        help="also time the new-process retrieval, both sides, against a backend whose every "
        "call sleeps this long (default 0.001 s; 0 leaves that row out)",
    )
    p.add_argument("--profile", action="store_true", help="always profile the retrieval")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", type=Path, default=None, help=f"default {DEFAULT_OUTPUT}")
    out.add_argument("--no-write", action="store_true", help="print the results only")
    # the child processes
    p.add_argument("--child", choices=("qjm", "baseline", "list"), help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--registry", help=argparse.SUPPRESS)
    p.add_argument("--ids", help=argparse.SUPPRESS)
    p.add_argument("--set-id", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--child" in argv:
        child = argparse.ArgumentParser()
        for name in ("--child", "--store", "--registry", "--ids", "--set-id", "--profile"):
            child.add_argument(name)
        child.add_argument("--latency", type=float, default=0.0)
        return _child(child.parse_args(argv))
    args = parser().parse_args(argv)
    args.argv = argv
    if args.circuits is None:
        args.circuits = 1000 if args.quick else 10000
    if args.per_job is None:
        args.per_job = 10
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.child_repeat is None:
        args.child_repeat = 2 if args.quick else 3
    for name in ("circuits", "per_job", "repeat", "child_repeat"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    text, ok = run_bench(args)
    print()
    print(text)
    write_to = args.output if args.output else (None if args.quick else DEFAULT_OUTPUT)
    if write_to and not args.no_write:
        Path(write_to).write_text(text)
        print(f"wrote {write_to}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
