"""Housekeeping (issue 12): ``qjm --version`` and ``python -m qjm``, deleting job sets (``rm``,
``gc``) and giving their space back, the ``qjm`` logger, the warning for pure-Python kernels,
plain states in ``report()`` and ``qjm list``, ``qjm bench`` outside a checkout, and the public
``qjm.testing`` module."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus

import qjm
from qjm.cli import _split_bench, parse_duration
from qjm.exceptions import (
    JobManagerInvalidStateError,
    JobManagerUnknownJobSet,
    PurePythonKernelsWarning,
)
from qjm.testing import (
    BusyBackend,
    BusyError,
    FlakyBackend,
    JobLimitBackend,
    PartialFailBackend,
    PartialFailJob,
    SlowBackend,
    SubmitFailBackend,
    WrappedBackend,
)


def cli(env, *args, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    """``python -m qjm ARGS`` in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "qjm", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wide(n: int, prefix: str = "w", clbits: int = 12) -> list[QuantumCircuit]:
    """Circuits whose results are large: uniform over ``clbits`` bits (memory kept)."""
    out = []
    for i in range(n):
        qc = QuantumCircuit(clbits, clbits, name=f"{prefix}{i}")
        qc.h(range(clbits))
        qc.measure(range(clbits), range(clbits))
        out.append(qc)
    return out


def bells(n: int, prefix: str = "c") -> list[QuantumCircuit]:
    out = []
    for i in range(n):
        qc = QuantumCircuit(2, 2, name=f"{prefix}{i}")
        qc.h(0)
        qc.cx(0, 1)
        qc.measure([0, 1], [0, 1])
        out.append(qc)
    return out


def file_bytes(path: Path) -> int:
    """The store's size on disk: its file and its write-ahead log."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def checkpoint(path: Path) -> None:
    """Move the write-ahead log into the file, so that the file alone says how big it is."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


def rows_of(path: Path, job_set_id: str) -> dict[str, int]:
    """Rows of ``job_set_id`` in every table of the store that has a ``job_set_id`` column
    (and its row in ``job_sets``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {
            "job_sets": conn.execute(
                "SELECT count(*) FROM job_sets WHERE id = ?", (job_set_id,)
            ).fetchone()[0]
        }
        for table in tables:
            columns = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]
            if "job_set_id" in columns:
                out[table] = conn.execute(
                    f'SELECT count(*) FROM "{table}" WHERE job_set_id = ?', (job_set_id,)
                ).fetchone()[0]
        return out
    finally:
        conn.close()


# -- version, python -m qjm -------------------------------------------------------------------


def test_version_flag_of_qjm_and_python_m_qjm(subprocess_env):
    for command in (
        [sys.executable, "-m", "qjm", "--version"],
        [sys.executable, "-m", "qjm.cli", "--version"],
    ):
        proc = subprocess.run(
            command, env=subprocess_env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"qjm {qjm.__version__} ("), proc.stdout
        assert "qiskit " in proc.stdout and "kernels" in proc.stdout
    script = Path(sys.executable).with_name("qjm")
    if script.exists():  # the console script of an installed qjm
        proc = subprocess.run(
            [str(script), "--version"],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.stdout.startswith(f"qjm {qjm.__version__}"), proc.stdout + proc.stderr


def test_version_is_the_distribution_version():
    try:
        installed = importlib.metadata.version("qjm")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("qjm is not installed (run from the source tree)")
    assert qjm.__version__ == installed


def test_python_m_qjm_runs_the_cli(subprocess_env, tmp_path):
    store = tmp_path / "s.sqlite"
    proc = cli(subprocess_env, "--store", store, "list")
    assert proc.returncode == 0, proc.stderr
    assert "No job sets in the store." in proc.stdout
    bare = cli(subprocess_env)
    assert bare.returncode == 2 and "usage: qjm" in bare.stderr


def test_bench_arguments_pass_through_untouched():
    assert _split_bench(["bench", "--quick", "--only", "merge"]) == (
        ["bench"],
        ["--quick", "--only", "merge"],
    )
    assert _split_bench(["--store", "x.sqlite", "-v", "bench", "--help"]) == (
        ["--store", "x.sqlite", "-v", "bench"],
        ["--help"],
    )
    assert _split_bench(["list", "--name", "bench"]) == (["list", "--name", "bench"], None)


def test_bench_outside_a_checkout_says_it_needs_one(tmp_path, subprocess_env):
    # qjm as an installed package is: the package folder, no bench/ beside it
    site = tmp_path / "site"
    shutil.copytree(
        Path(qjm.__file__).parent, site / "qjm", ignore=shutil.ignore_patterns("*.c", "__pycache__")
    )
    env = dict(subprocess_env)
    env["PYTHONPATH"] = str(site)
    # --no-write: even a wrong answer could not touch the checkout's bench/RESULTS.md
    proc = cli(env, "bench", "--quick", "--no-write", "--only", "merge", cwd=site)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs a source checkout" in proc.stderr, proc.stderr
    assert "bench/" in proc.stderr and "Traceback" not in proc.stderr
    assert "case merge" not in proc.stdout + proc.stderr  # nothing was run


# -- deleting job sets and freeing the space --------------------------------------------------


def two_sets(store: Path):
    """A large set (wide circuits, memory) and a small one in the file ``store``."""
    manager = qjm.JobManager(store=store)
    big = manager.run(
        wide(12), backend=WrappedBackend(), max_experiments_per_job=3, shots=2000, memory=True
    )
    small = manager.run(bells(4), backend=WrappedBackend(), max_experiments_per_job=2, shots=50)
    assert big.results(timeout=60).success and small.results(timeout=60).success
    return manager, big, small


def test_delete_job_set_removes_every_row_and_shrinks_the_file(tmp_path):
    store = tmp_path / "s.sqlite"
    manager, big, small = two_sets(store)
    big_id, small_id = big.job_set_id(), small.job_set_id()
    kept_counts = small.results().get_counts(1)
    before_rows = rows_of(store, big_id)
    # every kind of per-set row exists before (so that "0 after" means something)
    assert before_rows["job_sets"] == 1 and before_rows["jobs"] == 4 and before_rows["results"] == 4
    assert before_rows["job_work"] == 4 and before_rows["attempts"] >= 4
    checkpoint(store)
    before = file_bytes(store)

    manager.delete_job_set(big_id)

    assert set(rows_of(store, big_id).values()) == {0}, rows_of(store, big_id)
    after = file_bytes(store)
    assert after < before / 2, (before, after)  # the big set's pages went back to the disk
    with pytest.raises(JobManagerUnknownJobSet):
        manager.retrieve_job_set(big_id)
    assert [s.job_set_id() for s in manager.job_sets()] == [small_id]
    # the other set is whole, in this process and in a new manager
    again = qjm.JobManager(store=store).retrieve_job_set(small_id)
    assert again.results(timeout=0).get_counts(1) == kept_counts
    print(f"deleted a set: store {before / 1e3:.0f} kB -> {after / 1e3:.0f} kB")


def test_delete_refuses_unknown_ids_and_deletes_nothing(tmp_path):
    store = tmp_path / "s.sqlite"
    manager, big, small = two_sets(store)
    with pytest.raises(JobManagerUnknownJobSet, match="no-such-set"):
        manager.delete_job_sets([big.job_set_id(), "no-such-set"])
    assert rows_of(store, big.job_set_id())["results"] == 4  # all or none
    with pytest.raises(JobManagerUnknownJobSet):
        manager.delete_job_set("no-such-set")
    assert len(manager.job_sets()) == 2


def test_a_set_running_in_this_process_is_refused_until_it_is_finished(tmp_path):
    backend = SlowBackend(delay=None)  # held until released
    manager = qjm.JobManager(store=tmp_path / "s.sqlite")
    job_set = manager.run(bells(4), backend=backend, max_experiments_per_job=2, shots=20)
    job_set.jobs()  # submitted
    with pytest.raises(JobManagerInvalidStateError, match="still running in this process"):
        manager.delete_job_set(job_set.job_set_id())
    assert len(manager.job_sets()) == 1
    backend.release_all()
    assert job_set.results(timeout=60).success
    manager.delete_job_set(job_set.job_set_id())
    assert manager.job_sets() == []


def test_a_store_from_before_auto_vacuum_is_vacuumed(tmp_path):
    store = tmp_path / "s.sqlite"
    manager, big, _small = two_sets(store)
    manager.shutdown()
    manager._store.close()
    conn = sqlite3.connect(store, isolation_level=None)  # as a store made by an older qjm
    conn.execute("PRAGMA auto_vacuum=NONE")
    conn.execute("VACUUM")
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()
    checkpoint(store)
    before = file_bytes(store)
    qjm.JobManager(store=store).delete_job_set(big.job_set_id())
    after = file_bytes(store)
    assert after < before / 2, (before, after)
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    conn.close()


def test_gc_removes_old_sets_and_rows_left_behind(tmp_path):
    store = tmp_path / "s.sqlite"
    manager, big, small = two_sets(store)
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute(
        "UPDATE job_sets SET created = ? WHERE id = ?", (time.time() - 10 * 86400, big.job_set_id())
    )
    # rows of a set removed while another process still ran it
    conn.execute("INSERT INTO jobs VALUES ('ghost', 0, 'job-x', NULL, NULL)")
    conn.close()
    removed = manager.gc(older_than=7 * 86400)
    assert removed == [big.job_set_id()]
    assert set(rows_of(store, big.job_set_id()).values()) == {0}
    assert set(rows_of(store, "ghost").values()) == {0}
    assert [s.job_set_id() for s in manager.job_sets()] == [small.job_set_id()]
    assert manager.gc(older_than=7 * 86400) == []
    with pytest.raises(ValueError):
        manager.gc(older_than=-1)


def test_rm_and_gc_commands(tmp_path, subprocess_env):
    store = tmp_path / "s.sqlite"
    manager, big, small = two_sets(store)
    third = manager.run(bells(2, "t"), backend=WrappedBackend(), shots=10)
    third.results(timeout=60)
    manager.shutdown()
    conn = sqlite3.connect(store, isolation_level=None)
    conn.execute(
        "UPDATE job_sets SET created = ? WHERE id = ?", (time.time() - 3 * 3600, big.job_set_id())
    )
    conn.close()
    checkpoint(store)
    before = file_bytes(store)

    unknown = cli(subprocess_env, "--store", store, "rm", small.job_set_id(), "no-such-set")
    assert unknown.returncode == 2
    assert "no-such-set" in unknown.stderr and "nothing was deleted" in unknown.stderr
    assert "Traceback" not in unknown.stderr

    dry = cli(subprocess_env, "--store", store, "gc", "--older-than", "2h", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove {big.job_set_id()}" in dry.stdout and small.job_set_id() not in dry.stdout

    gc = cli(subprocess_env, "--store", store, "gc", "--older-than", "2h")
    assert gc.returncode == 0, gc.stderr
    assert f"removed {big.job_set_id()}" in gc.stdout and "1 job set(s)" in gc.stdout
    after = file_bytes(store)
    assert after < before / 2, (before, after)

    rm = cli(subprocess_env, "--store", store, "rm", small.job_set_id(), third.job_set_id())
    assert rm.returncode == 0, rm.stderr
    assert rm.stdout.count("removed ") == 2
    listed = cli(subprocess_env, "--store", store, "list")
    assert "No job sets in the store." in listed.stdout

    bad = cli(subprocess_env, "--store", store, "gc", "--older-than", "7x")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("30m") == 1800
    assert parse_duration("1.5h") == 5400
    assert parse_duration("2w") == 14 * 86400
    assert parse_duration("45") == 45
    for bad in ("", "d", "7x", "-1d", "nan", "infd"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# -- logging ----------------------------------------------------------------------------------


def test_info_log_says_what_was_submitted_and_fetched(caplog, manager):
    caplog.set_level(logging.INFO, logger="qjm")
    job_set = manager.run(bells(5), backend=WrappedBackend(), max_experiments_per_job=3, shots=20)
    assert job_set.results(timeout=60).success
    records = [r for r in caplog.records if r.name.startswith("qjm.")]
    submitted = [r.getMessage() for r in records if "submitted: job id" in r.getMessage()]
    fetched = [r.getMessage() for r in records if " fetched: DONE in " in r.getMessage()]
    assert len(submitted) == 2 and len(fetched) == 2, caplog.text
    short = job_set.job_set_id()[:8]
    for mj in job_set.managed_jobs():
        line = next(m for m in submitted if f"job {mj.index} " in m)
        assert short in line and mj.job_id in line
        assert f"{mj.end_index - mj.start_index + 1} circuits" in line
    assert re.search(r"job 1 \(experiments 3-4\) fetched: DONE in \d+\.\d+ s", caplog.text)
    assert all(r.levelno == logging.INFO for r in records)
    assert {r.name for r in records} == {"qjm.managedjobset"}


def test_failures_and_retries_are_warnings(caplog, manager):
    caplog.set_level(logging.INFO, logger="qjm")
    policy = qjm.RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01)
    flaky = manager.run(bells(2), backend=FlakyBackend(rate=1.0), shots=10, retry=policy)
    flaky.jobs()
    refused = manager.run(bells(2), backend=SubmitFailBackend(fail_names={"c1"}), shots=10)
    refused.jobs()
    partial = manager.run(bells(2), backend=PartialFailBackend(fail_names={"c0"}), shots=10)
    partial.results(timeout=60)
    busy = BusyBackend(busy=1, retry_after=0.01)
    assert manager.run(bells(2), backend=busy, shots=10).results(timeout=60).success
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        "submission attempt 1 failed (ConnectionRefusedError" in m and "retrying in" in m
        for m in warnings
    ), warnings
    assert any("not submitted: ConnectionRefusedError" in m for m in warnings), warnings
    assert any("not submitted: RuntimeError: submit refused" in m for m in warnings), warnings
    assert any("did not succeed" in m and "'c0'" in m for m in warnings), warnings
    assert any("backend busy, submitting again in" in m for m in infos), infos


def test_qjm_is_silent_by_default_and_logs_once_configured(run_python):
    code = """
import logging, sys, warnings
# (a checkout without the built extension would warn about it: not what this test is about)
warnings.filterwarnings("ignore", message="qjm is using its pure-Python merge kernels")
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.INFO)
import qjm
from qiskit import QuantumCircuit
from qjm.testing import SubmitFailBackend
qc = QuantumCircuit(1, 1, name="c0")
qc.measure(0, 0)
job_set = qjm.JobManager(store=":memory:").run([qc], backend=SubmitFailBackend(fail_names={"c0"}))
job_set.jobs()
print(job_set.error_messages())
"""
    silent = run_python(code, "default")
    assert "submit refused" in silent.stdout  # it did fail
    assert silent.stderr == "", silent.stderr  # and said nothing on its own
    loud = run_python(code, "configured")
    assert "WARNING:qjm.managedjobset:" in loud.stderr and "submit refused" in loud.stderr


def test_cli_verbose_shows_info_on_stderr(tmp_path, subprocess_env):
    demo = [
        "demo",
        "--circuits",
        "20",
        "--qubits",
        "2",
        "--shots",
        "10",
        "--max-experiments-per-job",
        "10",
    ]
    quiet = cli(subprocess_env, "--store", tmp_path / "a.sqlite", *demo)
    assert quiet.returncode == 0, quiet.stderr
    assert "submitted: job id" not in quiet.stderr
    loud = cli(subprocess_env, "--store", tmp_path / "b.sqlite", "-v", *demo)
    assert loud.returncode == 0, loud.stderr
    assert (
        len(
            re.findall(
                r"INFO qjm\.managedjobset: job set \w{8} job \d .* submitted: job id", loud.stderr
            )
        )
        == 2
    )
    assert len(re.findall(r"fetched: DONE in", loud.stderr)) == 2


# -- the warning for pure-Python kernels ------------------------------------------------------

_HIDE_EXTENSION = """
import sys, warnings
class Hide:  # as if the extension were never built
    def find_spec(self, name, path=None, target=None):
        if name == "qjm._merge":
            raise ImportError("no module named qjm._merge (hidden by the test)")
        return None
if sys.argv[1] == "hide":
    sys.meta_path.insert(0, Hide())
warnings.simplefilter("always")
import qjm
from qjm import _kernels
import qjm.managedresults, qjm.primitiveresults, qjm.pubrecords   # every importer of the kernels
print(_kernels.IMPLEMENTATION)
"""


def test_pure_python_kernels_warn_once_and_say_how_to_build(subprocess_env):
    env = {k: v for k, v in subprocess_env.items() if k != "QJM_PUREPYTHON"}

    def child(mode, **extra):
        return subprocess.run(
            [sys.executable, "-c", _HIDE_EXTENSION, mode],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            # beside the qjm these tests import (python -c puts its working directory first
            # on sys.path: from a checkout's root it would import the unbuilt checkout)
            cwd=str(Path(qjm.__file__).resolve().parent.parent),
        )

    hidden = child("hide")
    assert hidden.returncode == 0, hidden.stderr
    assert hidden.stdout.strip() == "python"
    assert hidden.stderr.count("PurePythonKernelsWarning") == 1, hidden.stderr
    assert "pip install -e ." in hidden.stderr and "QJM_PUREPYTHON=1" in hidden.stderr
    on_purpose = child("hide", QJM_PUREPYTHON="1")
    assert on_purpose.stdout.strip() == "python"
    assert "Warning" not in on_purpose.stderr, on_purpose.stderr
    if qjm._kernels.IMPLEMENTATION == "cython":  # the extension is built here
        built = child("plain")
        assert built.stdout.strip() == "cython" and "Warning" not in built.stderr
    assert issubclass(PurePythonKernelsWarning, RuntimeWarning)


# -- report() and qjm list say the state plainly ----------------------------------------------


class DoneButFailedJob(PartialFailJob):
    """A job whose backend says DONE though one of its experiments failed."""

    def status(self):
        return self.inner_job.status()


class DoneButFailedBackend(PartialFailBackend):
    def _make_job(self, inner_job, names):
        return DoneButFailedJob(self, inner_job, names, self.fail_names, False)


def summary_lines(report: str) -> dict[str, int]:
    return {
        k.strip(): int(v) for k, v in re.findall(r"^\s*([A-Z][a-z ]+ jobs): (\d+)", report, re.M)
    }


@pytest.mark.parametrize("backend_class", [PartialFailBackend, DoneButFailedBackend])
def test_a_partially_failed_job_is_not_successful(tmp_path, subprocess_env, backend_class):
    store = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=store)
    # job 0: c1 fails (partial); job 1: fine; job 2: every experiment fails
    backend = backend_class(fail_names={"c1", "c6", "c7"})
    job_set = manager.run(bells(8), backend=backend, max_experiments_per_job=3, shots=20)
    results = job_set.results(timeout=60, partial=True)
    assert not results.success
    counts = summary_lines(job_set.report(detailed=False))
    assert counts == {
        "Total jobs": 3,
        "Successful jobs": 1,
        "Failed jobs": 2,
        "Partially failed jobs": 1,
        "Cancelled jobs": 0,
        "Running jobs": 0,
        "Pending jobs": 0,
    }, job_set.report(detailed=False)
    [summary] = manager.job_set_summaries()
    assert summary.describe() == "failed 2 of 3 (1 partial), done 1"
    assert (summary.done, summary.failed, summary.partial, summary.state) == (1, 2, 1, "failed")
    listed = cli(subprocess_env, "--store", store, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith(job_set.job_set_id()))
    assert "failed 2 of 3 (1 partial), done 1" in line
    # retrieved in a new manager, from the store: the same words
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert summary_lines(again.report(detailed=False)) == counts


def test_summaries_of_a_memory_store_use_the_outcomes_held_here(manager):
    job_set = manager.run(
        bells(6), backend=PartialFailBackend(fail_names={"c1"}), max_experiments_per_job=3
    )
    job_set.results(timeout=60)
    [summary] = manager.job_set_summaries()  # ":memory:" keeps no results, the set holds them
    assert summary.describe() == "failed 1 of 2 (1 partial), done 1"


def test_running_and_not_submitted_sets_are_said_so(tmp_path, subprocess_env):
    store = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=store)
    backend = SlowBackend(delay=None)
    running = manager.run(bells(4), backend=backend, max_experiments_per_job=2, shots=10)
    waiting = manager.run(
        bells(6, "w"), backend=backend, max_experiments_per_job=2, shots=10, max_active_jobs=1
    )
    running.jobs()
    for _ in range(200):  # the first job of the waiting set is on the backend
        if len(backend.submitted) == 3:
            break
        time.sleep(0.01)
    by_id = {s.job_set_id: s for s in manager.job_set_summaries()}
    assert by_id[running.job_set_id()].describe() == "running 2 of 2"
    assert by_id[waiting.job_set_id()].describe() == "running 1 of 3, not submitted 2"
    listed = cli(subprocess_env, "--store", store, "list")  # another process, no backend
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{running.job_set_id()} .* running 2 of 2 ", listed.stdout, re.M), (
        listed.stdout
    )
    assert "running 1 of 3, not submitted 2" in listed.stdout
    report = summary_lines(running.report(detailed=False))
    assert (
        report["Pending jobs"] == 2
        and report["Successful jobs"] == 0
        and report["Failed jobs"] == 0
    )
    backend.release_all()
    assert running.results(timeout=60).success
    for _ in range(300):  # bounded: the waiting set's jobs go in one at a time
        backend.release_all()
        try:
            done = waiting.results(timeout=0.2)
            break
        except qjm.JobManagerTimeoutError:
            continue
    assert done.success
    assert [s.describe() for s in manager.job_set_summaries()] == ["done 2/2", "done 3/3"]
    assert summary_lines(running.report(detailed=False))["Successful jobs"] == 2


def test_list_reads_the_store_only_and_is_fast_for_many_sets(tmp_path):
    store = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=store)
    backend = WrappedBackend()
    sets = [
        manager.run(bells(4, f"s{i}-"), backend=backend, max_experiments_per_job=1, shots=5)
        for i in range(40)
    ]
    for job_set in sets:
        job_set.results(timeout=60)
    manager.shutdown()
    calls = backend.result_calls
    start = time.perf_counter()
    summaries = qjm.JobManager(store=store).job_set_summaries()
    elapsed = time.perf_counter() - start
    assert [s.describe() for s in summaries] == ["done 4/4"] * 40
    assert backend.result_calls == calls
    assert elapsed < 1.0, elapsed  # 40 sets, 160 kept results, none decoded
    print(f"job_set_summaries: 40 sets of 4 jobs in {elapsed * 1e3:.1f} ms")


def test_a_cancelled_job_is_cancelled(manager):
    backend = SlowBackend(delay=None)
    job_set = manager.run(bells(4), backend=backend, max_experiments_per_job=2, shots=10)
    job_set.jobs()
    job_set.cancel()
    assert set(job_set.statuses()) == {JobStatus.CANCELLED}
    [summary] = manager.job_set_summaries()
    counts = summary_lines(job_set.report(detailed=False))
    assert counts["Cancelled jobs"] == 2 and counts["Successful jobs"] == 0
    assert summary.describe() in ("cancelled 2 of 2", "running 2 of 2")  # kept once fetched
    with pytest.raises(qjm.JobManagerError):
        job_set.results(timeout=5).combine_results()
    assert manager.job_set_summaries()[0].describe() == "cancelled 2 of 2"


# -- qjm.testing ------------------------------------------------------------------------------


def test_the_qjm_testing_example_runs():
    from qiskit_aer import AerSimulator  # noqa: F401 - the example imports it

    example = re.search(r"Usage::\n\n((?:    .*\n|\n)+)", qjm.testing.__doc__).group(1)
    code = "\n".join(line[4:] for line in example.splitlines())
    namespace = {"circuits": bells(10)}
    exec(compile(code, "qjm.testing example", "exec"), namespace)  # noqa: S102
    results = namespace["results"]
    assert results.missing() == [3]


def test_flaky_busy_and_job_limit_backends():
    flaky = FlakyBackend(rate=0.5, seed=3)
    outcomes = []
    for _ in range(40):
        try:
            job = flaky.run(bells(1), shots=5)
        except ConnectionRefusedError:
            outcomes.append("refused")
            continue
        try:
            job.result()
            outcomes.append("ok")
        except ConnectionError:
            outcomes.append("dropped")
    assert flaky.refusals == outcomes.count("refused") > 0
    assert flaky.dropped == outcomes.count("dropped") > 0 and "ok" in outcomes

    busy = BusyBackend(busy=2, retry_after=0.5)
    for _ in range(2):
        with pytest.raises(BusyError) as caught:
            busy.run(bells(1))
        assert caught.value.retry_after == 0.5
    assert busy.run(bells(1), shots=5).result().success and len(busy.refusals) == 2

    limited = JobLimitBackend(limit=2, delay=None)
    first, _second = limited.run(bells(1)), limited.run(bells(1))
    with pytest.raises(RuntimeError, match="too many jobs pending"):
        limited.run(bells(1))
    first.release()
    limited.run(bells(1))
    assert (limited.most, limited.refusals, limited.unfinished()) == (2, 1, 2)
    limited.release_all()
    assert limited.unfinished() == 0


def test_nothing_in_qjm_imports_the_tests():
    root = Path(qjm.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(tests|backends|conftest)\b", text, re.M), path
    assert os.path.basename(qjm.testing.__file__) == "testing.py"
