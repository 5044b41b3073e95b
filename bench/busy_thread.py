"""``python -m bench.busy_thread``: what a job set costs while another thread of the same process
computes in Python (a user's analysis running beside the set).

qjm's submissions, fetches and store writes run on threads of the user's process. While another
thread holds the GIL to compute, each of their blocking calls (a lock, a wait, every SQLite
statement step) waits up to the interpreter's switch interval to go on. Each row: run + results()
on the instant backend of ``bench.store_speed`` (a real ``BackendV2`` whose jobs are DONE at once
with precomputed Aer results), ``JobManager()`` defaults (the SQLite file store, 8 threads), once
quiet and once beside one thread spinning in a pure-Python loop; every measurement in a fresh child
process, best of the repetitions. The baseline is what a user without qjm runs: ``backend.run``
of each chunk and ``result()`` of each job, beside the same busy thread.

``--before DIR`` adds the qjm package found in DIR, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "RESULTS-busy.md"
CASES = [(20_000, 100), (1_000, 1)]  # (circuits, circuits per job)


def child(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    from store_speed import SHOTS, instant_backend, make_circuits

    backend = instant_backend(Path(args.pool))
    circuits = make_circuits(args.n)
    stop = threading.Event()

    def spin() -> None:  # a user's pure-Python computation
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    spinner = threading.Thread(target=spin, daemon=True)
    if args.busy:
        spinner.start()
    try:
        t0 = time.perf_counter()
        if args.side == "baseline":
            k = args.per_job
            jobs = [backend.run(circuits[i : i + k], shots=SHOTS) for i in range(0, args.n, k)]
            results = [job.result() for job in jobs]
            ok = all(r.success for r in results)
        else:
            import qjm

            os.environ["QJM_HOME"] = tempfile.mkdtemp(prefix="qjm-bench-busy-")
            job_set = qjm.JobManager().run(
                circuits, backend=backend, max_experiments_per_job=args.per_job, shots=SHOTS
            )
            ok = job_set.results(timeout=1800).success
        took = time.perf_counter() - t0
    finally:
        stop.set()
    assert ok
    return {"seconds": took}


class Runner:
    def __init__(self, before: str | None, pool: Path, timeout: float):
        self.trees: dict[str, str | None] = {"after": None}
        if before:
            self.trees["before"] = str(Path(before).resolve())
        self.pool = pool
        self.timeout = timeout

    def run(self, tree: str | None, side: str, n: int, per_job: int, busy: bool) -> float:
        argv = [sys.executable, str(HERE / "busy_thread.py"), "--child", "--pool", str(self.pool)]
        argv += ["--side", side, "--n", str(n), "--per-job", str(per_job)]
        argv += ["--busy"] if busy else []
        env = dict(os.environ)
        path = [self.trees[tree]] if tree and self.trees.get(tree) else []
        env["PYTHONPATH"] = os.pathsep.join(path + [str(REPO)])
        env.pop("QJM_PUREPYTHON", None)
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=self.timeout, cwd="/"
        )
        if proc.returncode != 0:
            raise RuntimeError(f"child {side} {tree} {n}/{per_job} failed:\n{proc.stderr[-3000:]}")
        out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])
        print(
            f"{side:8s} {tree or '':6s} n={n} per_job={per_job} busy={busy}: "
            f"{out['seconds']:.2f} s",
            flush=True,
        )
        return out["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before")
    parser.add_argument("--before-label", default="", help="what the --before tree is")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--pool")
    parser.add_argument("--side", default="qjm")
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--per-job", type=int, default=1)
    parser.add_argument("--busy", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0

    sys.path.insert(0, str(HERE))
    from store_speed import make_pool

    from bench.report import environment, load_average

    started = time.time()
    load_start = os.getloadavg()
    pool = Path(tempfile.mkdtemp(prefix="qjm-bench-busy-")) / "pool.pickle"
    make_pool(pool)
    runner = Runner(args.before, pool, args.timeout)
    rows = []
    for n, per_job in CASES:
        best: dict[tuple[str, bool], float] = {}
        for _ in range(args.repeat):
            for busy in (False, True):
                for side, tree in [("baseline", None)] + [("qjm", t) for t in runner.trees]:
                    took = runner.run(tree, side, n, per_job, busy)
                    key = (tree or side, busy)
                    best[key] = min(best.get(key, float("inf")), took)
        rows.append((n, per_job, best))

    trees = list(runner.trees)
    lines = [
        "# qjm benchmark: a job set beside a busy thread",
        "",
        "Produced by:",
        "",
        "```",
        "python -m bench.busy_thread" + (" --before DIR" if args.before else ""),
        "```",
        "",
        f"- whole run {time.time() - started:.0f} s; load average at start: "
        f"{', '.join(f'{x:.2f}' for x in load_start)}; at the end: {load_average()} (shared machine)",
        *[f"- {k}: {v}" for k, v in environment().items() if k != "load average at start"],
        "- after: that qjm"
        + (f"; before: {runner.trees['before']}/qjm {args.before_label}" if args.before else ""),
        f"- best of {args.repeat} children per cell",
        "",
        __doc__.split("\n\n")[1].strip().replace("\n", " "),
        "",
        "| circuits | per job | who | quiet, circuits/s | beside a busy thread, circuits/s | "
        "busy vs quiet |",
        "|---|---|---|---|---|---|",
    ]
    for n, per_job, best in rows:
        for who in ["baseline"] + trees:
            quiet, busy = best[(who, False)], best[(who, True)]
            label = {"baseline": "`backend.run` of each chunk", "after": "qjm (this tree)"}.get(
                who, "qjm (before)"
            )
            lines.append(
                f"| {n:,} | {per_job} | {label} | {n / quiet:,.0f} | {n / busy:,.0f} | "
                f"{quiet / busy:.2f}x |"
            )
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
