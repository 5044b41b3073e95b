"""A store that is safe to open: no pickles, a schema version, foreign, crafted, corrupt and newer
files refused and never modified, new files private to the user."""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
import stat
import subprocess
import sys

import pytest
from qiskit_aer import AerSimulator
from servers import child_env

import qjm
from qjm.outcome import JobOutcome
from qjm.records import decode_result
from qjm.store import SCHEMA_VERSION, Store, StoreError


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(*args, home) -> subprocess.CompletedProcess:
    env = child_env()
    env["QJM_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "qjm.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_results_are_stored_without_pickles_and_read_back(tmp_path, make_circuits):
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        make_circuits(6), backend=AerSimulator(), max_experiments_per_job=2, shots=50, memory=True
    )
    first = job_set.results(timeout=60)
    conn = sqlite3.connect(store)
    try:
        blobs = [r[0] for r in conn.execute("SELECT record FROM results")]
        meta = dict(conn.execute("SELECT key, value FROM qjm_meta"))
        columns = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    finally:
        conn.close()
    assert len(blobs) == 3 and all(b.startswith(b"QJMC") for b in blobs)
    assert not any(b"\x80\x05" in b[:2] for b in blobs)  # no pickle protocol header
    assert "outcome" not in columns
    assert meta == {"application": "qjm", "schema_version": str(SCHEMA_VERSION)}
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id()).results()
    for i in range(6):
        assert again.get_memory(i) == first.get_memory(i)
        assert again.get_counts(i) == first.get_counts(i)


def test_a_new_store_file_is_private_to_its_user(tmp_path):
    Store(tmp_path / "new" / "s.sqlite").close()
    mode = stat.S_IMODE(os.stat(tmp_path / "new" / "s.sqlite").st_mode)
    assert mode == 0o600, oct(mode)


def test_another_applications_sqlite_file_is_refused_and_unchanged(tmp_path):
    path = tmp_path / "app.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="is not a qjm store .*customers.*did not change it"):
        qjm.JobManager(store=path)
    assert digest(path) == before
    assert not (tmp_path / "app.sqlite-wal").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    print("another application's file: refused, sha256 unchanged, not converted to WAL")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is a text file, not a database\n" * 10, "not an SQLite file"),
        (b"SQLite format 3\x00" + os.urandom(4000), "cannot be read as a qjm store"),
    ],
)
def test_corrupt_files_are_refused_and_unchanged(tmp_path, content, match):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=match):
        Store(path)
    assert path.read_bytes() == content


def test_a_store_of_a_newer_qjm_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE qjm_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(StoreError, match="newer qjm .*schema 99"):
        Store(path)
    assert digest(path) == before


LEGACY_SCHEMA = """
CREATE TABLE job_sets (id TEXT PRIMARY KEY, name TEXT, tags TEXT NOT NULL, backend_name TEXT,
    created REAL NOT NULL, n_experiments INTEGER NOT NULL, names TEXT NOT NULL, plan TEXT NOT NULL,
    run_options TEXT NOT NULL);
CREATE TABLE jobs (job_set_id TEXT NOT NULL, idx INTEGER NOT NULL, job_id TEXT, status TEXT,
    error TEXT, PRIMARY KEY (job_set_id, idx));
CREATE TABLE results (job_set_id TEXT NOT NULL, idx INTEGER NOT NULL, outcome BLOB NOT NULL,
    stored REAL NOT NULL, PRIMARY KEY (job_set_id, idx));
"""


def legacy_store(path, outcome_blob: bytes, n: int = 2) -> None:
    """A store as qjm wrote it before schema versions: results as pickles."""
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA)
    plan = f'{{"n_experiments": {n}, "n_parts": 1, "jobs": [[0, {n}, 0, null]]}}'
    names = "[" + ", ".join(f'"c{i}"' for i in range(n)) + "]"
    conn.execute(
        "INSERT INTO job_sets VALUES ('old', 'legacy', '[]', 'aer_simulator', 0, ?, ?, ?, '{}')",
        (n, names, plan),
    )
    conn.execute("INSERT INTO jobs VALUES ('old', 0, 'job-0', 'DONE', NULL)")
    conn.execute("INSERT INTO results VALUES ('old', 0, ?, 0)", (outcome_blob,))
    conn.commit()
    conn.close()


class Payload:
    """A pickle that runs code when loaded: what a crafted store would hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_store_runs_nothing_and_is_not_changed(tmp_path):
    path = tmp_path / "home" / "jobsets.sqlite"
    path.parent.mkdir()
    marker = tmp_path / "pwned"
    legacy_store(path, pickle.dumps(Payload(marker)))
    before = digest(path)
    with pytest.raises(StoreError, match="will not read .*system"):
        qjm.JobManager(store=path)
    for command in (["list"], ["show", "old"]):
        proc = run_cli(*command, home=path.parent)
        assert proc.returncode != 0 and "will not read" in proc.stderr, proc.stderr
    assert not marker.exists()
    assert digest(path) == before
    print("crafted store: no code ran (no marker file), sha256 unchanged, 3 opens refused")


def test_a_legacy_store_is_migrated_and_its_results_survive(tmp_path, make_circuits):
    circuits = make_circuits(2)
    result = AerSimulator().run(circuits, shots=64, seed_simulator=3, memory=True).result()
    outcome = JobOutcome(qjm.managedjob.JobStatus.DONE, decode_result(result))
    path = tmp_path / "old.sqlite"
    legacy_store(path, pickle.dumps(outcome, protocol=5))
    job_set = qjm.JobManager(store=path).retrieve_job_set("old")
    results = job_set.results(timeout=5)
    assert results.success
    for i in range(2):
        assert results.get_counts(i) == result.get_counts(i)
        assert results.get_memory(i) == result.get_memory(i)
    conn = sqlite3.connect(path)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(results)")]
    version = conn.execute("SELECT value FROM qjm_meta WHERE key='schema_version'").fetchone()
    blob = conn.execute("SELECT record FROM results").fetchone()[0]
    conn.close()
    assert "outcome" not in columns and version == (str(SCHEMA_VERSION),)
    assert blob.startswith(b"QJMC")


def test_a_store_that_refuses_writes_loses_no_result(tmp_path, make_circuits, caplog):
    """SQLite refuses every write (PRAGMA query_only, a real read-only database error): results
    stay in memory, results() returns them and says they were not persisted."""
    store = tmp_path / "s.sqlite"
    manager = qjm.JobManager(store=store)
    job_set = manager.run(make_circuits(4), backend=AerSimulator(), max_experiments_per_job=2)
    job_set.jobs()
    manager._store._conn.execute("PRAGMA query_only = ON")
    results = job_set.results(timeout=60)
    assert results.success and len(results.get_counts()) == 4
    messages = job_set.error_messages()
    assert messages.count("not persisted") == 2 and "readonly" in messages
    assert "kept in memory only" in caplog.text
    with pytest.raises(StoreError, match=str(store)):
        manager.run(make_circuits(1), backend=AerSimulator())


def test_a_full_disk_while_fetching_from_a_read_once_backend_loses_nothing(tmp_path, make_circuits):
    """The store on a 512 KiB filesystem (a real tmpfs, mounted by the test as root) fills up
    while results that can be read only once arrive: each stays in memory, results() has every
    experiment, the error names the disk and the store, the backend is not asked twice."""
    from backends import OnceBackend

    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"mounting a small tmpfs (as root) failed: {done.stderr}"
    try:
        store = mount / "jobsets.sqlite"
        backend = OnceBackend(inner=AerSimulator())
        manager = qjm.JobManager(store=store)
        job_set = manager.run(
            make_circuits(20), backend=backend, max_experiments_per_job=5, shots=40_000, memory=True
        )
        results = job_set.results(timeout=120)
        assert results.success and all(len(results.get_memory(i)) == 40_000 for i in range(20))
        messages = job_set.error_messages() or ""
        lost = messages.count("not persisted")
        assert lost >= 1 and "full" in messages and str(store) in messages
        served = backend.results_served
        again = job_set.results(timeout=10)
        assert again.success and backend.results_served == served == 4
        print(f"disk full: {4 - lost} of 4 results stored, {lost} kept in memory only, 0 lost")
        manager._store.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_schema_2_store_gains_the_attempt_history_and_keeps_its_results(tmp_path, make_circuits):
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        make_circuits(4), backend=AerSimulator(), max_experiments_per_job=2, shots=50
    )
    first = job_set.results(timeout=60)
    conn = sqlite3.connect(store)  # back to schema 2: no attempts table
    conn.execute("DROP TABLE attempts")
    conn.execute("UPDATE qjm_meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert all(again.results().get_counts(i) == first.get_counts(i) for i in range(4))
    conn = sqlite3.connect(store)
    try:
        version = conn.execute("SELECT value FROM qjm_meta WHERE key = 'schema_version'").fetchone()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert version == (str(SCHEMA_VERSION),) and "attempts" in tables


def test_the_attempt_history_is_in_the_store(tmp_path, make_circuits):
    store = tmp_path / "s.sqlite"
    job_set = qjm.JobManager(store=store).run(
        make_circuits(4), backend=AerSimulator(), max_experiments_per_job=2, shots=50
    )
    job_set.results(timeout=60)
    ids = [mj.job_id for mj in job_set.managed_jobs()]
    conn = sqlite3.connect(store)
    try:
        rows = conn.execute("SELECT idx, job_id, what FROM attempts ORDER BY idx").fetchall()
    finally:
        conn.close()
    assert rows == [(0, ids[0], None), (1, ids[1], None)]  # one submission each, no trouble
    again = qjm.JobManager(store=store).retrieve_job_set(job_set.job_set_id())
    assert [mj.history for mj in again.managed_jobs()] == [
        mj.history for mj in job_set.managed_jobs()
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:7],
        lambda b: b[:40],
        lambda b: b[: len(b) // 2],
        lambda b: b"QJMPUBS1" + b"\xff\xff\xff\x7f" + b[12:],
        lambda b: b[:12] + b"{" + b[13:],
        lambda b: b + b"\x00" * 3,
        lambda b: b"x" * len(b),
    ],
)
def test_journaled_pubs_that_do_not_read_back_are_refused(damage):
    """What the journal keeps of PUBs is read without unpickling, every length checked first;
    damaged bytes are a PubWireError (resume then names the job), never something else."""
    import numpy as np
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit.primitives.containers.estimator_pub import EstimatorPub

    from qjm.pubwire import PubWireError, decode_pubs, encode_pubs

    qc = QuantumCircuit(2)
    qc.rx(Parameter("a"), 0)
    pub = EstimatorPub.coerce((qc, [["ZZ"], ["XI"]], np.linspace(0, 1, 3).reshape(3, 1)), 0.01)
    blob = encode_pubs([pub])
    (back,) = decode_pubs(blob)
    assert back.observables.tolist() == pub.observables.tolist() and back.precision == 0.01
    damaged = damage(blob)
    try:
        decode_pubs(damaged)
    except PubWireError:
        pass
    else:  # trailing bytes after a complete record are ignored, the rest must be refused
        assert damaged.startswith(blob)
