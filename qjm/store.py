"""The store: job sets, their jobs and every fetched result, in an embedded SQLite file.

The default file is ``$QJM_HOME/jobsets.sqlite`` (``~/.qjm`` when ``QJM_HOME`` is unset). The file
runs in WAL mode, so several threads and several processes can use it at once; each write is its own
short transaction. ``":memory:"`` keeps job sets in this process only, and no results: the job sets
of the process hold those.

Fetched results are stored as pickles of their columnar records: the store is a local, trusted file,
like a cache directory, and must not be loaded from an untrusted source.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from qjm.outcome import JobOutcome

_SCHEMA = """
CREATE TABLE IF NOT EXISTS job_sets (
    id TEXT PRIMARY KEY,
    name TEXT,
    tags TEXT NOT NULL,
    backend_name TEXT,
    created REAL NOT NULL,
    n_experiments INTEGER NOT NULL,
    names TEXT NOT NULL,
    plan TEXT NOT NULL,
    run_options TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_sets_name ON job_sets (name);
CREATE TABLE IF NOT EXISTS jobs (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    job_id TEXT,
    status TEXT,
    error TEXT,
    PRIMARY KEY (job_set_id, idx)
);
CREATE TABLE IF NOT EXISTS results (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    outcome BLOB NOT NULL,
    stored REAL NOT NULL,
    PRIMARY KEY (job_set_id, idx)
);
"""


def default_store_path() -> Path:
    """``$QJM_HOME/jobsets.sqlite``, with ``QJM_HOME`` defaulting to ``~/.qjm``."""
    home = os.environ.get("QJM_HOME") or os.path.join(os.path.expanduser("~"), ".qjm")
    return Path(home) / "jobsets.sqlite"


class Store:
    """Job sets, jobs and fetched results in one SQLite database.

    Args:
        path: the database file, or ``":memory:"`` to keep nothing beyond this process.
    """

    def __init__(self, path: str | os.PathLike = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, rows: Iterable[tuple] | tuple) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if isinstance(rows, tuple):
                    self._conn.execute(sql, rows)
                else:
                    self._conn.executemany(sql, rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- job sets -----------------------------------------------------------------------------

    def add_job_set(
        self,
        job_set_id: str,
        name: str | None,
        tags: list[str],
        backend_name: str | None,
        names: list[str],
        plan: dict,
        run_options: str,
    ) -> None:
        """Add a job set; ``run_options`` is their JSON (``qjm.runoptions.encode_run_options``)."""
        self._write(
            "INSERT INTO job_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_set_id,
                name,
                json.dumps(list(tags)),
                backend_name,
                time.time(),
                len(names),
                json.dumps(names),
                json.dumps(plan),
                run_options,
            ),
        )

    def job_set(self, job_set_id: str) -> dict | None:
        rows = self._read("SELECT * FROM job_sets WHERE id = ?", (job_set_id,))
        return _job_set_row(rows[0]) if rows else None

    def update_job_set(
        self, job_set_id: str, name: str | None = None, tags: list[str] | None = None
    ) -> None:
        """Change the name and/or the tags of a job set."""
        if name is not None:
            self._write("UPDATE job_sets SET name = ? WHERE id = ?", (name, job_set_id))
        if tags is not None:
            self._write(
                "UPDATE job_sets SET tags = ? WHERE id = ?", (json.dumps(list(tags)), job_set_id)
            )

    def job_set_ids(self, name: str | None = None) -> list[str]:
        if name is None:
            rows = self._read("SELECT id FROM job_sets ORDER BY created, rowid")
        else:
            rows = self._read(
                "SELECT id FROM job_sets WHERE name = ? ORDER BY created, rowid", (name,)
            )
        return [r[0] for r in rows]

    # -- jobs -----------------------------------------------------------------------------------

    def set_job(
        self, job_set_id: str, idx: int, job_id: str | None, status: str | None, error: str | None
    ) -> None:
        self._write(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_set_id, idx) DO UPDATE SET "
            "job_id = excluded.job_id, status = excluded.status, error = excluded.error",
            (job_set_id, idx, job_id, status, error),
        )

    def jobs(self, job_set_id: str) -> dict[int, tuple[str | None, str | None, str | None]]:
        rows = self._read(
            "SELECT idx, job_id, status, error FROM jobs WHERE job_set_id = ?", (job_set_id,)
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    # -- results --------------------------------------------------------------------------------

    def put_outcome(self, job_set_id: str, idx: int, outcome: JobOutcome) -> None:
        if self.path == ":memory:":
            return  # the job set in this process holds it; a store of nothing pickles nothing
        blob = pickle.dumps(outcome, protocol=5)
        self._write(
            "INSERT INTO results VALUES (?, ?, ?, ?) ON CONFLICT (job_set_id, idx) DO UPDATE SET "
            "outcome = excluded.outcome, stored = excluded.stored",
            (job_set_id, idx, blob, time.time()),
        )

    def outcomes(self, job_set_id: str) -> dict[int, JobOutcome]:
        rows = self._read("SELECT idx, outcome FROM results WHERE job_set_id = ?", (job_set_id,))
        return {idx: pickle.loads(blob) for idx, blob in rows}


def _job_set_row(row: tuple) -> dict:
    keys = (
        "id",
        "name",
        "tags",
        "backend_name",
        "created",
        "n_experiments",
        "names",
        "plan",
        "run_options",
    )
    out = dict(zip(keys, row))
    for key in ("tags", "names", "plan"):  # run_options: JSON text for qjm.runoptions
        out[key] = json.loads(out[key])
    return out
