"""Rows of the benchmark table, and their markdown (printed and written to RESULTS.md)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass
class Row:
    """One timed case: both sides over the same data, best of the same number of repetitions.

    ``ratio`` is baseline time / qjm time (above 1: qjm is faster). ``check`` is "ok" when qjm's
    answer equalled the baseline's, else what differed; ``error`` is set when a side raised.
    """

    case: str  # short id, as given to --only
    title: str
    size: str
    items: int  # items processed per call, for the throughput columns
    unit: str  # what an item is ("keys", "shots", "circuits")
    baseline: str  # what the baseline runs
    qjm: str  # what qjm runs
    target: float  # ratio to reach
    baseline_s: float = float("nan")
    qjm_s: float = float("nan")
    reps: int = 0  # repetitions of each side
    baseline_all: list[float] = field(default_factory=list)
    qjm_all: list[float] = field(default_factory=list)
    check: str = "ok"
    error: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.qjm_s > 0:
            return self.baseline_s / self.qjm_s
        return float("nan")

    @property
    def median_ratio(self) -> float:
        """Median baseline time / median qjm time: how a typical repetition compares."""
        if not self.baseline_all or not self.qjm_all:
            return float("nan")
        q = statistics.median(self.qjm_all)
        return statistics.median(self.baseline_all) / q if q > 0 else float("nan")

    @property
    def met(self) -> str:
        if self.error:
            return "ERROR"
        if self.check != "ok":
            return "WRONG"
        return "yes" if self.ratio >= self.target else "no"

    @property
    def ok(self) -> bool:
        return not self.error and self.check == "ok"


@dataclass
class MemoryRow:
    """Memory held by qjm's ``ManagedResults`` against the qiskit ``Result`` objects it replaces.

    Sizes are tracemalloc's (Python objects and numpy buffers), in bytes: ``peak`` while building,
    ``held`` once built.
    """

    case: str
    title: str
    size: str
    baseline: str
    qjm: str
    baseline_peak: int = 0
    qjm_peak: int = 0
    baseline_held: int = 0
    qjm_held: int = 0
    check: str = "ok"
    error: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.baseline_peak / self.qjm_peak if self.qjm_peak else float("nan")

    @property
    def held_ratio(self) -> float:
        return self.baseline_held / self.qjm_held if self.qjm_held else float("nan")

    @property
    def met(self) -> str:
        if self.error:
            return "ERROR"
        if self.check != "ok":
            return "WRONG"
        return "yes" if self.ratio > 1.0 else "no"

    @property
    def ok(self) -> bool:
        return not self.error and self.check == "ok"


def _rate(items: int, seconds: float, unit: str) -> str:
    if not seconds or seconds != seconds or seconds <= 0:
        return "-"
    r = items / seconds
    if r >= 1e6:
        return f"{r / 1e6:.2f} M {unit}/s"
    if r >= 1e3:
        return f"{r / 1e3:.1f} k {unit}/s"
    return f"{r:.1f} {unit}/s"


def _sec(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _ratio(x: float, target: float | None = None) -> str:
    """``x`` to 2 decimals, or to 4 when 2 would hide on which side of ``target`` it is."""
    if x != x:
        return "-"
    text = f"{x:.2f}"
    if target is not None and (float(text) >= target) != (x >= target):
        text = f"{x:.4f}"
    return text + "x"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _markdown(head: str, rows: list[tuple]) -> str:
    """A markdown table: ``head`` (header and rule lines), then one line per tuple of cells."""
    return "\n".join([head] + ["| " + " | ".join(_cell(x) for x in r) + " |" for r in rows])


def markdown_table(rows: list[Row]) -> str:
    head = (
        "| case | size | baseline | baseline throughput | qjm throughput | "
        "baseline time | qjm time | best of | ratio | median ratio | target | met? |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    return _markdown(
        head,
        [
            (
                f"`{r.case}` {r.title}",
                r.size,
                r.baseline,
                _rate(r.items, r.baseline_s, r.unit),
                _rate(r.items, r.qjm_s, r.unit),
                _sec(r.baseline_s),
                _sec(r.qjm_s),
                str(r.reps) if r.reps else "-",
                _ratio(r.ratio, r.target),
                _ratio(r.median_ratio, r.target),
                f">= {r.target:g}x",
                r.met,
            )
            for r in rows
        ],
    )


def markdown_memory(rows: list[MemoryRow]) -> str:
    head = (
        "| case | size | baseline peak | qjm peak | ratio (peak) | baseline held | qjm held | "
        "ratio (held) | target | met? |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    return _markdown(
        head,
        [
            (
                f"`{r.case}` {r.title}",
                r.size,
                _mb(r.baseline_peak),
                _mb(r.qjm_peak),
                _ratio(r.ratio),
                _mb(r.baseline_held),
                _mb(r.qjm_held),
                _ratio(r.held_ratio),
                "> 1x (qjm holds less)",
                r.met,
            )
            for r in rows
        ],
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return "not installed"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, how busy its cores were."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def qjm_source() -> str:
    """Where qjm was imported from, its git commit (and whether qjm/ differs from it), and when
    the compiled extension was built relative to the last change of ``qjm/_merge.pyx``."""
    try:
        import qjm
    except Exception as exc:  # noqa: BLE001
        return f"qjm did not import: {exc}"
    pkg = Path(qjm.__file__).resolve().parent
    parts = [str(pkg)]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=pkg,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "."],
                cwd=pkg,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            parts.append(
                f"git {head.stdout.strip()}"
                + (
                    f" with {len(dirty.splitlines())} uncommitted change(s) in qjm/"
                    if dirty
                    else ""
                )
            )
    except (OSError, subprocess.SubprocessError):
        pass
    built = sorted(pkg.glob("_merge*.so")) + sorted(pkg.glob("_merge*.pyd"))
    pyx = pkg / "_merge.pyx"
    if built and pyx.exists():
        so_time, pyx_time = built[0].stat().st_mtime, pyx.stat().st_mtime
        stamp = datetime.fromtimestamp(so_time).astimezone().isoformat(timespec="seconds")
        parts.append(
            f"extension built {stamp}"
            + (" (older than _merge.pyx: stale build)" if so_time < pyx_time else "")
        )
    return ", ".join(parts)


def environment() -> dict[str, str]:
    """What the numbers depend on: machine, versions, qjm's kernel implementation."""
    why = ""
    try:
        from qjm import _kernels

        impl = _kernels.IMPLEMENTATION
    except Exception as exc:  # noqa: BLE001
        impl = f"unavailable ({exc})"
    pure = os.environ.get("QJM_PUREPYTHON", "") not in ("", "0")
    if impl == "python" and not pure:
        try:  # say why the compiled kernels were not used
            import qjm._merge  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            why = f" (the extension did not import: {type(exc).__name__}: {exc})"
        else:
            why = " (the extension imports now but did not when qjm was imported)"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "load average at start": load_average(),
        "machine": f"nproc {usable} ({os.cpu_count()} CPUs), {_cpu_model()}, {platform.system()} "
        f"{platform.release()}",
        "python": sys.version.split()[0],
        "qiskit": _version("qiskit"),
        "qiskit-aer": _version("qiskit-aer"),
        "numpy": _version("numpy"),
        "qjm kernels": f"qjm._kernels.IMPLEMENTATION = {impl!r}"
        + (" (QJM_PUREPYTHON set)" if pure else why),
        "qjm source": qjm_source(),
    }


def render(
    command: str,
    env: dict[str, str],
    rows: list[Row],
    memory_rows: list[MemoryRow],
    notes: list[str] | None = None,
    details: list[str] | None = None,
) -> str:
    """The whole RESULTS.md: the command, the environment, the tables, notes and raw timings."""
    out = ["# qjm benchmark results", ""]
    out.append("Produced by:")
    out.append("")
    out.append("```")
    out.append(command)
    out.append("```")
    out.append("")
    for key, value in env.items():
        out.append(f"- {key}: {value}")
    out.append("")
    out.append(
        "Ratio = baseline time / qjm time, best of the same number of repetitions for both "
        "sides (`time.perf_counter`), timed side by side in this one run; above 1 qjm is faster. "
        "`met?` judges the best-of ratio; the median ratio (median time over median time) shows "
        "how a typical repetition compared, which on a busy machine can differ."
    )
    out.append("")
    if rows:
        out.append(markdown_table(rows))
        out.append("")
    if memory_rows:
        out.append(markdown_memory(memory_rows))
        out.append("")
    bad = [r for r in [*rows, *memory_rows] if not r.ok]
    if bad:
        out.append("## Errors and wrong answers")
        out.append("")
        for r in bad:
            out.append(f"- `{r.case}`: {r.error or r.check}")
        out.append("")
    if notes:
        out.append("## Notes")
        out.append("")
        out.extend(notes)
        out.append("")
    if details:
        out.append("## Cases in detail")
        out.append("")
        out.extend(details)
        out.append("")
    return "\n".join(out)
