"""``python -m bench``: time qjm against the qiskit baseline, case by case, and write RESULTS.md.

    python -m bench                  # issue 3's sizes (a few minutes), writes bench/RESULTS.md
    python -m bench --quick          # small sizes, for tests (well under a minute)
    python -m bench --only merge --only decode --repeat 5 --no-write

Exit status: 0 when every case ran and qjm's answers equalled the baseline's (a target not met
is reported in the table, not in the status); 1 when a case raised or answered wrong; 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench.report import (
    MemoryRow,
    Row,
    environment,
    load_average,
    markdown_memory,
    markdown_table,
    render,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "RESULTS.md"
CASE_NAMES = [
    "merge",
    "decode",
    "get_counts",
    "get_memory",
    "marginal",
    "decode_threads",
    "end_to_end",
    "memory",
    "bitarray_counts",
    "join_shots",
    "sampler_end_to_end",
]
EXTRA_CASES = ["end_to_end_configs", "sampler_end_to_end_configs"]  # run only with --only


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time qjm's result path against the qiskit baseline on real Aer results.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (for tests)")
    p.add_argument(
        "--only",
        action="append",
        choices=CASE_NAMES + EXTRA_CASES,
        metavar="CASE",
        help=f"run only this case (repeatable): {', '.join(CASE_NAMES)}; or "
        f"{', '.join(EXTRA_CASES)} (not run by default: the end-to-end cases over several job "
        "sizes and worker counts)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="repetitions per side, best kept (default 5, or 2 with --quick); a case whose "
        "calls are short gets more, up to 10 N while its timed total stays under 1 s; both "
        "sides always get the same number",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the results (default: bench/RESULTS.md next to this module)",
    )
    out.add_argument("--no-write", action="store_true", help="print the table only")
    return p


def command_line(argv: list[str]) -> str:
    """The command that reproduces this run, as one shell line."""
    prefix = []
    if os.environ.get("QJM_PUREPYTHON", "") not in ("", "0"):
        prefix.append(f"QJM_PUREPYTHON={shlex.quote(os.environ['QJM_PUREPYTHON'])}")
    if os.environ.get("PYTHONPATH"):
        prefix.append(f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])}")
    return " ".join([*prefix, "python -m bench", *map(shlex.quote, argv)]).strip()


def _notes(sizes, data, repeat: int) -> list[str]:
    lines = [
        f"- Every case: best of N repetitions per side, the same N for both (N = {repeat}, raised "
        f"up to {10 * repeat} for a case while its timed total stays under 1 s; the table's "
        "`best of` column), alternating baseline and qjm; a "
        "full `gc.collect()` before each timed call, then `gc.freeze()` of what survives it "
        "for the rest of the case (so collections during either side's calls do not traverse "
        "the benchmark's own data, hundreds of MB a user's process would not hold); whatever "
        "a call returns is freed after the "
        "timer stops; the setup of each repetition (a fresh `ManagedResults` built from decoded "
        "`JobRecord`s, as `ManagedJobSet` builds it) is outside the timer.",
        "- Each case checks, untimed, that qjm's answer equals the baseline's (met? says WRONG "
        "otherwise).",
        "- Data: AerSimulator(method='stabilizer'), 27 qubits with an H on each, each measured "
        "into one 27-bit register: uniformly random 27-bit outcomes in Aer's hex without leading "
        "zeros. Real Aer runs for merge, decode, get_memory, decode_threads and marginal; for "
        f"get_counts and memory, {sizes.counts_pool} real experiments replicated to "
        f"{sizes.counts_experiments:,}, each copy's keys XORed with its own random 27-bit mask "
        "(same number of distinct keys, new strings). For bitarray_counts, one PUB of that "
        "circuit from Aer's `SamplerV2` (stabilizer), its `BitArray` as the sampler returns "
        "it; for join_shots, consecutive slices of that PUB's shots, each copied into an "
        f"array of its own. For sampler_end_to_end, {sizes.sampler_e2e_pubs:,} PUBs: "
        f"`random_circuit({sizes.sampler_e2e_qubits}, {sizes.sampler_e2e_depth}, seed=i)` with "
        "`measure_all()`, transpiled for AerSimulator (optimization level 1), "
        f"{sizes.sampler_e2e_shots:,} shots each, run by Aer's `SamplerV2` on both sides.",
    ]
    if data.seconds:
        made = "; ".join(f"{k}: {v:.1f} s" for k, v in data.seconds.items())
        lines.append(f"- Data generation (not timed): {made}.")
    return lines


def _details(rows) -> list[str]:
    out = []
    for r in rows:
        out.append(f"- `{r.case}` ({r.size})")
        out.append(f"  - baseline: {r.baseline}")
        out.append(f"  - qjm: {r.qjm}")
        if isinstance(r, Row) and r.baseline_all:
            out.append(
                "  - all times (s): baseline "
                + ", ".join(f"{t:.4f}" for t in r.baseline_all)
                + "; qjm "
                + ", ".join(f"{t:.4f}" for t in r.qjm_all)
            )
        if r.note:
            out.append(f"  - {r.note}")
        if not r.ok:
            out.append(f"  - problem: {r.error or r.check}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad arguments (2)
        return int(exc.code or 0)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    if repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2

    from bench.cases import CASES
    from bench.data import Data, Sizes

    names = [n for n in CASE_NAMES + EXTRA_CASES if n in args.only] if args.only else CASE_NAMES
    sizes = Sizes.quick() if args.quick else Sizes.full()
    command = command_line(argv)
    env = environment()
    print(f"$ {command}")
    for key, value in env.items():
        print(f"  {key}: {value}")
    sys.stdout.flush()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    data = Data(sizes, log=log)
    rows: list[Row] = []
    memory_rows: list[MemoryRow] = []
    start = time.perf_counter()
    for name in names:
        log(f"case {name} ...")
        t = time.perf_counter()
        try:
            produced = CASES[name](data, repeat)
        except Exception as exc:  # noqa: BLE001 - report it in the table, go on with the rest
            traceback.print_exc()
            if name == "memory":
                failed = MemoryRow(case=name, title=name, size="-", baseline="-", qjm="-")
            else:
                failed = Row(
                    case=name,
                    title=name,
                    size="-",
                    items=0,
                    unit="-",
                    baseline="-",
                    qjm="-",
                    target=float("nan"),
                )
            failed.error = f"{type(exc).__name__}: {exc}"
            produced = failed
        for row in produced if isinstance(produced, list) else [produced]:
            (memory_rows if isinstance(row, MemoryRow) else rows).append(row)
            if isinstance(row, MemoryRow):
                log(
                    f"case {row.case}: peak {row.baseline_peak / 1e6:.1f} MB vs "
                    f"{row.qjm_peak / 1e6:.1f} MB, {row.met} ({time.perf_counter() - t:.1f} s)"
                )
            else:
                log(
                    f"case {row.case}: {row.baseline_s:.4f} s vs {row.qjm_s:.4f} s, ratio "
                    f"{row.ratio:.2f}x, met {row.met} ({time.perf_counter() - t:.1f} s)"
                )
    total = time.perf_counter() - start

    print()
    if rows:
        print(markdown_table(rows))
    if memory_rows:
        print()
        print(markdown_memory(memory_rows))
    bad = [r for r in [*rows, *memory_rows] if not r.ok]
    for r in bad:
        print(f"PROBLEM in {r.case}: {r.error or r.check}")
    print(f"\n({total:.1f} s, --repeat {repeat})")

    if not args.no_write:
        output = args.output or DEFAULT_OUTPUT
        notes = _notes(sizes, data, repeat)
        notes.append(
            f"- Whole run: {total:.1f} s; load average at the end: {load_average()} (on "
            f"{os.cpu_count()} CPUs; anything above 0 is other processes competing with both "
            "sides)."
        )
        text = render(command, env, rows, memory_rows, notes, _details([*rows, *memory_rows]))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text)
        print(f"wrote {output}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
