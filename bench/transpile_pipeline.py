"""``python -m bench.transpile_pipeline``: random circuits transpiled on the way in, end to end.

    python -m bench.transpile_pipeline                   # 10,000 circuits, writes
                                                         # bench/RESULTS-transpile.md
    python -m bench.transpile_pipeline --circuits 500 --no-write

Each side runs in a fresh subprocess (so that neither pays for the other's imports or caches),
timed inside it from the circuits in hand to every count read:

- qjm: ``JobManager().run(circuits, backend=AerSimulator(), transpile={"seed_transpiler": 1},
  max_experiments_per_job=PER_JOB, shots, seed_simulator)`` with the default file store, then
  ``results()`` and ``get_counts`` of every circuit. Each job's circuits are transpiled in worker
  processes and the job is submitted as soon as they are back, while later jobs' are still being
  transpiled.
- qiskit, as a user does it: ``transpile(circuits, backend, seed_transpiler=1)`` (qiskit's default
  runs it in this process: ``QISKIT_PARALLEL`` is off unless a user turns it on), then one
  ``backend.run(...).result()`` and ``get_counts(i)`` of every circuit.
- qiskit with ``QISKIT_PARALLEL=TRUE`` (its own process pool for ``transpile``), the same way.

Both sides use optimization level 2 (qiskit's default) and the same seeds, so their counts must be
equal: the run fails if they are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.report import environment, load_average

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS-transpile.md"

CHILD = r"""
import hashlib, json, os, sys, time
from qiskit import transpile
from qiskit.circuit.random import random_circuit
from qiskit_aer import AerSimulator

side, n, per_job, shots, store = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
circuits = []
for i in range(n):
    c = random_circuit(5, 8, measure=True, seed=i)
    c.name = f"rc-{i}"
    circuits.append(c)
backend = AerSimulator()
if side == "qjm":
    import qjm
    manager = qjm.JobManager(store=store)
    start = time.perf_counter()
    job_set = manager.run(circuits, backend=backend, transpile={"seed_transpiler": 1},
                          max_experiments_per_job=per_job, shots=shots, seed_simulator=7)
    results = job_set.results()
    counts = [results.get_counts(i) for i in range(n)]
    took = time.perf_counter() - start
    assert results.success, job_set.error_messages()
else:
    start = time.perf_counter()
    result = backend.run(transpile(circuits, backend, seed_transpiler=1), shots=shots,
                         seed_simulator=7).result()
    counts = [result.get_counts(i) for i in range(n)]
    took = time.perf_counter() - start
digest = hashlib.sha256(json.dumps([sorted(c.items()) for c in counts]).encode()).hexdigest()
print(json.dumps({"seconds": took, "digest": digest}))
"""


def _side(side: str, n: int, per_job: int, shots: int, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, side, str(n), str(per_job), str(shots), f"{tmp}/s.db"],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transpile_pipeline", description=__doc__)
    p.add_argument("--circuits", type=int, default=10_000)
    p.add_argument("--per-job", type=int, default=100)
    p.add_argument("--shots", type=int, default=100)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = p.parse_args(argv)
    load = load_average()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("QISKIT_PARALLEL")}
    runs = {
        "qjm": _side("qjm", args.circuits, args.per_job, args.shots, base_env),
        "qiskit": _side("qiskit", args.circuits, args.per_job, args.shots, base_env),
        "qiskit-parallel": _side(
            "qiskit",
            args.circuits,
            args.per_job,
            args.shots,
            {**base_env, "QISKIT_PARALLEL": "TRUE"},
        ),
    }
    same = len({r["digest"] for r in runs.values()}) == 1
    size = f"{args.circuits:,} random 5-qubit circuits (depth 8), {args.shots} shots"
    q = runs["qjm"]["seconds"]
    rows = [
        (
            "`transpile(circuits, backend)` (qiskit's default: in-process), one `backend.run`, "
            "every `get_counts`",
            runs["qiskit"]["seconds"],
        ),
        (
            "the same with `QISKIT_PARALLEL=TRUE` (qiskit's own process pool)",
            runs["qiskit-parallel"]["seconds"],
        ),
    ]
    command = "python -m bench.transpile_pipeline" + (
        f" --circuits {args.circuits}" if args.circuits != 10_000 else ""
    )
    lines = [
        "# qjm benchmark: transpiling on the way in",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        f"- load average at start: {load}",
        *[f"- {key}: {value}" for key, value in environment().items()],
        "",
        f"qjm: `JobManager().run(circuits, backend=AerSimulator(), transpile={{'seed_transpiler': "
        f"1}}, max_experiments_per_job={args.per_job})`, `results()`, every `get_counts` "
        "(default file store; worker processes transpile each job's circuits while earlier jobs "
        "run). Each side in a fresh process, timed from the circuits in hand to the last count. "
        f"Counts equal on all sides (same seeds): {'yes' if same else 'NO'}.",
        "",
        "| case | size | baseline | baseline time | qjm time | ratio | target | met? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, seconds in rows:
        ratio = seconds / q
        lines.append(
            f"| transpile=True end to end | {size} | {name} | {seconds:.2f} s | {q:.2f} s | "
            f"{ratio:.2f}x | > 1x (faster) | {'yes' if ratio > 1 else 'no'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        args.output.write_text(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
