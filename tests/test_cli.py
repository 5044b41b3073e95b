"""The ``qjm`` command, run as ``python -m qjm.cli`` in a new process on a tmp_path store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import child_env

TESTS = Path(__file__).resolve().parent

DEMO = [
    "demo",
    "--circuits",
    "60",
    "--qubits",
    "3",
    "--shots",
    "100",
    "--max-experiments-per-job",
    "20",
]


def qjm_cli(env, *args, store=None, timeout=120):
    command = [sys.executable, "-m", "qjm.cli"]
    if store is not None:
        command += ["--store", str(store)]
    return subprocess.run(
        [*command, *map(str, args)], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One ``qjm demo`` into a fresh store, shared by the tests of this module."""
    home = tmp_path_factory.mktemp("qjm_home")
    env = child_env()  # the qjm these tests import (installed, or the source tree)
    env["QJM_HOME"] = str(home)
    store = tmp_path_factory.mktemp("store") / "s.sqlite"
    proc = qjm_cli(env, *DEMO, store=store)
    return env, store, proc


def _job_set_id(stdout: str) -> str:
    found = re.findall(r"^Job set id: ([0-9a-f]+)\s*$", stdout, flags=re.MULTILINE)
    assert len(found) == 1, stdout
    return found[0]


def test_demo_runs_and_prints_report_table_and_id(demo_run):
    _env, store, proc = demo_run
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Traceback" not in proc.stderr
    # the report
    assert "Job set name: demo" in out
    assert re.search(r"Total jobs: 3$", out, re.MULTILINE), out
    assert re.search(r"Successful jobs: 3$", out, re.MULTILINE), out
    assert re.search(r"Failed jobs: 0$", out, re.MULTILINE), out
    # the table
    rows = [line for line in out.splitlines() if line.startswith("|")]
    table = {
        cells[0]: cells[1]
        for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)
    }
    assert table["jobs"] == "3"
    assert table["experiments"] == "60 of 60 available"
    assert table["shots per experiment"] == "100"
    assert table["success"] == "True"
    assert table["store"] == str(store)
    # every row of the table has the same width
    lines = [line for line in out.splitlines() if line.startswith(("|", "+-"))]
    assert len({len(line) for line in lines}) == 1, lines
    # the id
    set_id = _job_set_id(out)
    assert f"qjm show {set_id}" in out
    assert store.is_file()


def test_show_prints_the_stored_report(demo_run):
    env, store, proc = demo_run
    set_id = _job_set_id(proc.stdout)
    shown = qjm_cli(env, "show", set_id, store=store)
    assert shown.returncode == 0, shown.stderr
    assert f"ID: {set_id}" in shown.stdout
    assert re.search(r"Total jobs: 3$", shown.stdout, re.MULTILINE), shown.stdout
    assert re.search(r"Successful jobs: 3$", shown.stdout, re.MULTILINE), shown.stdout
    assert "Errors:" not in shown.stdout

    detailed = qjm_cli(env, "show", set_id, "--detailed", store=store)
    assert detailed.returncode == 0, detailed.stderr
    assert re.findall(r"status: (\w+)", detailed.stdout) == ["DONE"] * 3
    assert re.findall(r"experiments: (\d+-\d+)", detailed.stdout) == ["0-19", "20-39", "40-59"]


def test_list_lists_the_demo_set(demo_run):
    env, store, proc = demo_run
    set_id = _job_set_id(proc.stdout)
    listed = qjm_cli(env, "list", store=store)
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.startswith(set_id)]
    assert len(lines) == 1, listed.stdout
    assert "done 3/3" in lines[0]
    assert "demo" in lines[0]
    assert qjm_cli(env, "list", "--name", "demo", store=store).stdout.startswith(set_id)
    other = qjm_cli(env, "list", "--name", "no-such-name", store=store)
    assert other.returncode == 0
    assert set_id not in other.stdout
    assert "No job sets" in other.stdout


def test_show_unknown_id_fails_with_a_clear_message(demo_run):
    env, store, _proc = demo_run
    shown = qjm_cli(env, "show", "unknown-id", store=store)
    assert shown.returncode != 0
    message = shown.stderr + shown.stdout
    assert "unknown-id" in message
    assert "Traceback" not in message, message  # a message for the user, not a crash


def test_default_store_follows_qjm_home(tmp_path, subprocess_env):
    # no --store: the command uses $QJM_HOME/jobsets.sqlite (QJM_HOME set by the conftest fixture)
    env = dict(subprocess_env)
    env["QJM_HOME"] = str(tmp_path / "home")
    listed = qjm_cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "No job sets in the store." in listed.stdout
    assert (tmp_path / "home" / "jobsets.sqlite").is_file()


def test_demo_sampler_runs_pubs_and_show_reads_them_back(tmp_path):
    env = child_env()
    env["QJM_HOME"] = str(tmp_path / "home")
    store = tmp_path / "s.sqlite"
    proc = qjm_cli(env, *DEMO, "--sampler", store=store)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Total jobs: 3$", proc.stdout, re.MULTILINE), proc.stdout
    assert "| PUBs" in proc.stdout and "60 of 60 available" in proc.stdout
    assert "SamplerV2" in proc.stdout
    set_id = _job_set_id(proc.stdout)
    shown = qjm_cli(env, "show", set_id, "--detailed", store=store)
    assert shown.returncode == 0, shown.stderr
    assert "PUBs: 60 (sampler)" in shown.stdout
    assert re.findall(r"^  (PUBs \d+-\d+)$", shown.stdout, re.MULTILINE) == [
        "PUBs 0-19",
        "PUBs 20-39",
        "PUBs 40-59",
    ]
    assert re.findall(r"status: (\w+)", shown.stdout) == ["DONE"] * 3
