"""The benchmark harness: ``python -m bench --quick`` runs every case, and the table writer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is not an installed package: import it from the checkout
    # appended, not prepended: qjm itself must still come from where it is installed
    sys.path.append(str(REPO))

from bench.__main__ import CASE_NAMES, EXTRA_CASES, command_line, main  # noqa: E402
from bench.report import (  # noqa: E402
    MemoryRow,
    Row,
    environment,
    markdown_memory,
    markdown_table,
    render,
)


def _table_rows(text: str) -> dict[str, str]:
    """Case id -> its table line, for every markdown table line that starts with a case id."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `([a-z_]+)` ", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_quick_run_prints_a_row_for_every_case(subprocess_env, tmp_path):
    env = dict(subprocess_env)
    # the child imports the same qjm as these tests (subprocess_env), and bench/ from the
    # checkout, after it; run outside the checkout so its directory is not put first
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(REPO)])
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-write"],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    rows = _table_rows(proc.stdout)
    assert set(rows) == set(CASE_NAMES), proc.stdout
    for name, line in rows.items():
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        assert cells[-1] in ("yes", "no"), f"{name}: {line}"  # not ERROR, not WRONG
    assert "python -m bench --quick --no-write" in proc.stdout
    assert "IMPLEMENTATION" in proc.stdout


def _row(**kw) -> Row:
    base = dict(
        case="merge",
        title="merge | counts",  # a pipe must not break the table
        size="100 x 10,000 keys",
        items=1_000_000,
        unit="keys",
        baseline="`Counter.update`",
        qjm="`merge_counts`",
        target=10,
        baseline_s=0.3,
        qjm_s=0.01,
    )
    base.update(kw)
    return Row(**base)


def _is_markdown_table(lines: list[str]) -> None:
    assert len(lines) >= 3
    ncols = None
    for i, line in enumerate(lines):
        assert line.startswith("| ") or line.startswith("|---"), line
        assert line.endswith("|"), line
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        if ncols is None:
            ncols = len(cells)
        assert len(cells) == ncols, f"line {i} has {len(cells)} cells, not {ncols}: {line}"
        if i == 1:
            assert all(re.fullmatch(r"-{3,}", c) for c in cells), line


def test_table_writer_produces_valid_markdown_with_the_command():
    rows = [
        _row(),
        _row(case="decode", baseline_s=0.09, qjm_s=0.03, check="parse_hex differs"),
        _row(case="get_counts", baseline_s=1.0, qjm_s=2.0),
        _row(case="end_to_end", baseline_s=8.8535, qjm_s=8.8558, target=1.0),
    ]
    mem = [
        MemoryRow(
            case="memory",
            title="memory",
            size="10,000 experiments",
            baseline="Results",
            qjm="ManagedResults",
            baseline_peak=900_000_000,
            qjm_peak=250_000_000,
            baseline_held=900_000_000,
            qjm_held=240_000_000,
        )
    ]
    command = command_line(["--only", "merge", "--repeat", "5"])
    assert "python -m bench --only merge --repeat 5" in command
    text = render(command, environment(), rows, mem, ["- a note"], ["- a detail"])

    # the command, in a code block, and the environment
    assert f"```\n{command}\n```" in text
    for key in ("date", "machine", "qiskit", "qiskit-aer", "numpy", "qjm kernels", "qjm source"):
        assert f"- {key}: " in text
    assert "nproc" in text and "IMPLEMENTATION" in text

    # both tables are well-formed markdown tables
    blocks = [b.strip().splitlines() for b in text.split("\n\n")]
    tables = [b for b in blocks if b and b[0].startswith("| case |")]
    assert len(tables) == 2
    for table in tables:
        _is_markdown_table(table)

    lines = _table_rows(markdown_table(rows))
    assert "30.00x" in lines["merge"] and lines["merge"].rstrip("| ").endswith("yes")
    assert lines["decode"].rstrip("| ").endswith("WRONG")
    assert "0.50x" in lines["get_counts"] and lines["get_counts"].rstrip("| ").endswith("no")
    assert "merge \\| counts" in lines["merge"]
    # a ratio just under its target is not shown rounded up to it
    assert "0.9997x" in lines["end_to_end"] and lines["end_to_end"].rstrip("| ").endswith("no")
    assert "3.60x" in markdown_memory(mem)
    assert "## Errors and wrong answers" in text and "parse_hex differs" in text


def test_main_rejects_bad_arguments(capsys):
    assert main(["--only", "nope", "--no-write"]) == 2
    assert main(["--repeat", "0", "--no-write"]) == 2
    assert main(["--output", "x.md", "--no-write"]) == 2


def test_main_writes_the_file(tmp_path, capsys):
    out = tmp_path / "r.md"
    code = main(["--quick", "--only", "marginal", "--repeat", "1", "--output", str(out)])
    assert code == 0
    text = out.read_text()
    assert "python -m bench --quick --only marginal --repeat 1 --output" in text
    assert set(_table_rows(text)) == {"marginal"}


@pytest.mark.parametrize("name", CASE_NAMES + EXTRA_CASES)
def test_every_case_is_registered(name):
    from bench.cases import CASES

    assert name in CASES
