"""The service's own SQLite file (WAL): every job, its circuits until it has run, and its result.

A job is written before ``POST /v1/jobs`` answers, so an accepted job survives anything but the loss
of the file. On start, :meth:`JobStore.recover` puts jobs that were RUNNING when the service died
back in the queue (or marks them ERROR once they have been started ``max_attempts`` times, so a job
that kills the service cannot do so for ever). Results are kept as gzip-compressed columnar records
(:mod:`qjm.wire`); with ``--results-once`` the first read deletes them.

Each thread has its own connection (WAL lets readers run beside the one writer); every write is one
short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

QUEUED, RUNNING, DONE, ERROR, CANCELLED = "QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED"
STATUSES = (QUEUED, RUNNING, DONE, ERROR, CANCELLED)
FINAL = (DONE, ERROR, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    tags TEXT NOT NULL,
    n_circuits INTEGER NOT NULL,
    shots INTEGER,
    options TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER,
    result_state TEXT,
    consumed REAL,
    client_key TEXT,
    lease_id TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS jobs_user_created ON jobs (user, created);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_client_key ON jobs (user, client_key)
    WHERE client_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS job_tags (
    tag TEXT NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (tag, job_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payloads (
    job_id TEXT PRIMARY KEY, qpy BLOB NOT NULL, subtypes TEXT
);
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS served (user TEXT PRIMARY KEY, last_started REAL NOT NULL);
"""

_COLUMNS = (
    "id, user, status, created, started, finished, tags, n_circuits, shots, options, error, "
    "attempts, result_bytes, result_state, consumed, lease_id, lease_until"
)


class TooManyPending(Exception):
    """The user already has ``pending`` jobs QUEUED or RUNNING."""

    def __init__(self, pending: int):
        super().__init__(pending)
        self.pending = pending


class NotFound(Exception):
    """No such job for this user."""


class NotReady(Exception):
    """The job has no result yet (or never will): ``status`` says which."""

    def __init__(self, status: str, error: str | None):
        super().__init__(status)
        self.status = status
        self.error = error


class Gone(Exception):
    """The result was read once already (``--results-once``)."""

    def __init__(self, consumed: float | None):
        super().__init__(consumed)
        self.consumed = consumed


class Leased(Exception):
    """Another reader holds the result's read lease for ``seconds`` more (``--results-once``)."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


# columns added since the first schema: (name, declaration)
_ADDED_COLUMNS = (("lease_id", "TEXT"), ("lease_until", "REAL"))


def _row(row: tuple) -> dict[str, Any]:
    keys = [k.strip() for k in _COLUMNS.split(",")]
    out = dict(zip(keys, row))
    out["tags"] = json.loads(out["tags"])
    out["options"] = json.loads(out["options"])
    return out


class JobStore:
    """The jobs of the service in ``DIR/jobs.sqlite``."""

    def __init__(self, data_dir: str | os.PathLike):
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.path = str(Path(data_dir) / "jobs.sqlite")
        self._local = threading.local()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        have = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:  # a data directory of an earlier qjm serve
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _tx(self):
        return _Transaction(self._conn())

    # -- submit -------------------------------------------------------------------------------

    def add(
        self,
        user: str,
        qpy: bytes,
        n_circuits: int,
        options: dict[str, Any],
        tags: list[str],
        max_pending: int,
        client_key: str | None = None,
        subtypes: list | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Queue a job; returns (its row, True), or (the earlier job's row, False) when this user
        already submitted one with the same ``client_key``.

        Raises:
            TooManyPending: the user has ``max_pending`` jobs QUEUED or RUNNING already.
        """
        now = time.time()
        job_id = uuid.uuid4().hex
        shots = options.get("shots")
        with self._tx() as conn:
            if client_key is not None:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE user = ? AND client_key = ?",
                    (user, client_key),
                ).fetchall()
                if rows:
                    return _row(rows[0]), False
            (pending,) = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE user = ? AND status IN (?, ?)",
                (user, QUEUED, RUNNING),
            ).fetchone()
            if pending >= max_pending:
                raise TooManyPending(pending)
            conn.execute(
                "INSERT INTO jobs (id, user, status, created, tags, n_circuits, shots, options, "
                "client_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    user,
                    QUEUED,
                    now,
                    json.dumps(tags),
                    n_circuits,
                    shots if isinstance(shots, int) else None,
                    json.dumps(options),
                    client_key,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO job_tags VALUES (?, ?)", [(t, job_id) for t in tags]
            )
            conn.execute(
                "INSERT INTO payloads VALUES (?, ?, ?)",
                (job_id, qpy, json.dumps(subtypes) if subtypes else None),
            )
            row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row), True

    def by_key(self, user: str, client_key: str) -> dict[str, Any] | None:
        """The user's job submitted with this ``Idempotency-Key``, if any."""
        row = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE user = ? AND client_key = ?", (user, client_key)
            )
            .fetchone()
        )
        return _row(row) if row else None

    def pending(self, user: str) -> int:
        (n,) = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM jobs WHERE user = ? AND status IN (?, ?)",
                (user, QUEUED, RUNNING),
            )
            .fetchone()
        )
        return n

    # -- look-ups -----------------------------------------------------------------------------

    def get(self, job_id: str, user: str) -> dict[str, Any]:
        """The job, if it is this user's.

        Raises:
            NotFound: no such job, or another user's.
        """
        row = (
            self._conn()
            .execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND user = ?", (job_id, user))
            .fetchone()
        )
        if row is None:
            raise NotFound(job_id)
        return _row(row)

    def list(
        self,
        user: str,
        tags: list[str] = (),
        statuses: list[str] = (),
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        ids: list[str] = (),
    ) -> list[dict[str, Any]]:
        """The user's jobs, newest first: with every tag in ``tags``, a status in ``statuses``,
        created at or after ``since`` and before ``until``, an id in ``ids``."""
        where = ["user = ?"]
        args: list[Any] = [user]
        if ids:
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            args.extend(ids)
        for tag in dict.fromkeys(tags):
            where.append("id IN (SELECT job_id FROM job_tags WHERE tag = ?)")
            args.append(tag)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if since is not None:
            where.append("created >= ?")
            args.append(since)
        if until is not None:
            where.append("created < ?")
            args.append(until)
        args.append(limit)
        rows = (
            self._conn()
            .execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
                "ORDER BY created DESC, rowid DESC LIMIT ?",
                args,
            )
            .fetchall()
        )
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return dict(rows)

    # -- the runner's side -----------------------------------------------------------------------

    def recover(self, max_attempts: int) -> tuple[int, int]:
        """After a restart: RUNNING jobs go back to the queue, or to ERROR once they have been
        started ``max_attempts`` times. Returns (requeued, failed)."""
        now = time.time()
        with self._tx() as conn:
            failed = conn.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ? "
                "WHERE status = ? AND attempts >= ?",
                (
                    ERROR,
                    now,
                    f"the service stopped while running this job, {max_attempts} times; "
                    "it is not run again",
                    RUNNING,
                    max_attempts,
                ),
            ).rowcount
            conn.execute(
                "DELETE FROM payloads WHERE job_id IN (SELECT id FROM jobs WHERE status = ?)",
                (ERROR,),
            )
            requeued = conn.execute(
                "UPDATE jobs SET status = ?, started = NULL WHERE status = ?", (QUEUED, RUNNING)
            ).rowcount
        return requeued, failed

    def claim(self) -> tuple[str, bytes, dict[str, Any], list | None, int] | None:
        """The next QUEUED job, now RUNNING: (id, QPY, options, subtypes, attempt), or None.

        Users take turns: the next job is the oldest queued job of the user whose last job
        started longest ago (one user's long queue does not hold everyone else's jobs back)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT j.id, p.qpy, j.options, p.subtypes, j.attempts, j.user FROM jobs j "
                "JOIN payloads p ON p.job_id = j.id LEFT JOIN served s ON s.user = j.user "
                "WHERE j.status = ? ORDER BY COALESCE(s.last_started, 0), j.created, j.rowid "
                "LIMIT 1",
                (QUEUED,),
            ).fetchone()
            if row is None:
                return None
            job_id, qpy, options, subtypes, attempts, user = row
            now = time.time()
            conn.execute(
                "UPDATE jobs SET status = ?, started = ?, attempts = attempts + 1 WHERE id = ?",
                (RUNNING, now, job_id),
            )
            conn.execute(
                "INSERT INTO served VALUES (?, ?) ON CONFLICT (user) DO UPDATE SET "
                "last_started = excluded.last_started",
                (user, now),
            )
        return job_id, qpy, json.loads(options), json.loads(subtypes or "null"), attempts + 1

    def finish(
        self,
        job_id: str,
        status: str,
        error: str | None,
        body: bytes | None,
        result_bytes: int | None,
    ) -> bool:
        """Record the end of a RUNNING job; False (nothing kept) when it is no longer RUNNING
        (it was cancelled meanwhile)."""
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET status = ?, finished = ?, error = ?, result_bytes = ?, "
                "result_state = ? WHERE id = ? AND status = ?",
                (
                    status,
                    time.time(),
                    error,
                    result_bytes,
                    "stored" if body is not None else None,
                    job_id,
                    RUNNING,
                ),
            ).rowcount
            if changed:
                if body is not None:
                    conn.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (job_id, body))
                conn.execute("DELETE FROM payloads WHERE job_id = ?", (job_id,))
        return bool(changed)

    def requeue(self, job_id: str, max_attempts: int, why: str) -> str:
        """A RUNNING job whose worker died: back to the queue, or ERROR after ``max_attempts``."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT status, attempts FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or row[0] != RUNNING:
                return row[0] if row else ERROR
            if row[1] >= max_attempts:
                conn.execute(
                    "UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ?",
                    (ERROR, time.time(), f"{why}, {row[1]} times; it is not run again", job_id),
                )
                conn.execute("DELETE FROM payloads WHERE job_id = ?", (job_id,))
                return ERROR
            conn.execute(
                "UPDATE jobs SET status = ?, started = NULL WHERE id = ?", (QUEUED, job_id)
            )
            return QUEUED

    # -- the user's side ----------------------------------------------------------------------

    def cancel(self, job_id: str, user: str) -> tuple[dict[str, Any], bool]:
        """Cancel a QUEUED or RUNNING job: (its row now, whether it was cancelled).

        Raises:
            NotFound: no such job, or another user's.
        """
        with self._tx() as conn:
            row = conn.execute(
                "SELECT status FROM jobs WHERE id = ? AND user = ?", (job_id, user)
            ).fetchone()
            if row is None:
                raise NotFound(job_id)
            cancelled = row[0] in (QUEUED, RUNNING)
            if cancelled:
                conn.execute(
                    "UPDATE jobs SET status = ?, finished = ?, error = ? WHERE id = ?",
                    (CANCELLED, time.time(), "cancelled by its user", job_id),
                )
                conn.execute("DELETE FROM payloads WHERE job_id = ?", (job_id,))
            out = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(out), cancelled

    def result(
        self,
        job_id: str,
        user: str,
        once: bool,
        lease: str | None = None,
        lease_seconds: float = 60.0,
    ) -> tuple[dict[str, Any], bytes, str | None]:
        """The job's stored result (gzip-compressed columnar bytes) and, with ``once``, the read
        lease it is now held under.

        With ``once`` the result is not deleted as it is read: the reader gets a lease of
        ``lease_seconds`` (the id it sent as ``lease``, or a new one) and the result is deleted
        when the reader confirms it has it (:meth:`confirm`). While a lease is live, the same
        lease id reads it again (a response lost in transit) and any other reader is refused
        (:class:`Leased`); once it expires unconfirmed, anyone may read it again.

        Raises:
            NotFound: no such job, or another user's.
            NotReady: the job has no result (not finished, cancelled, or failed without one).
            Gone: read and confirmed already.
            Leased: another reader holds a live lease on it.
        """
        if not once:
            job, body = self._stored_result(self._conn(), job_id, user)
            return job, body, None
        now = time.time()
        with self._tx() as conn:
            job, body = self._stored_result(conn, job_id, user)
            _check_lease(job, lease, now)
            lease = lease or uuid.uuid4().hex
            conn.execute(
                "UPDATE jobs SET lease_id = ?, lease_until = ? WHERE id = ?",
                (lease, now + lease_seconds, job_id),
            )
        return job, body, lease

    def confirm(self, job_id: str, user: str, lease: str | None) -> dict[str, Any]:
        """The reader has the result: delete it for good (later reads are :class:`Gone`).
        Confirming again with the same lease is a no-op; in ``--results-once`` mode (a lease
        was handed out) only the lease's holder, or anyone once it expired, may confirm.

        Raises:
            NotFound: no such job, or another user's.
            NotReady: the job has no result to confirm.
            Gone: confirmed already under another lease.
            Leased: another reader holds a live lease on it.
        """
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND user = ?", (job_id, user)
            ).fetchone()
            if row is None:
                raise NotFound(job_id)
            job = _row(row)
            if job["result_state"] == "consumed":
                if job["lease_id"] is not None and job["lease_id"] == lease:
                    return job
                raise Gone(job["consumed"])
            _check_lease(job, lease, now)
            found = conn.execute("SELECT 1 FROM results WHERE job_id = ?", (job_id,)).fetchone()
            if found is None:
                raise NotReady(job["status"], job["error"])
            conn.execute(
                "UPDATE jobs SET result_state = 'consumed', consumed = ?, lease_id = ?, "
                "lease_until = NULL WHERE id = ?",
                (now, lease, job_id),
            )
            conn.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
            job.update(result_state="consumed", consumed=now)
        return job

    def _stored_result(
        self, conn: sqlite3.Connection, job_id: str, user: str
    ) -> tuple[dict[str, Any], bytes]:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND user = ?", (job_id, user)
        ).fetchone()
        if row is None:
            raise NotFound(job_id)
        body = conn.execute("SELECT body FROM results WHERE job_id = ?", (job_id,)).fetchone()
        return self._check(_row(row), body)

    @staticmethod
    def _check(job: dict[str, Any], body: tuple | None) -> tuple[dict[str, Any], bytes]:
        if job["result_state"] == "consumed":
            raise Gone(job["consumed"])
        if body is None:
            raise NotReady(job["status"], job["error"])
        return job, body[0]


def _check_lease(job: dict[str, Any], lease: str | None, now: float) -> None:
    held, until = job["lease_id"], job["lease_until"]
    if held is not None and held != lease and until is not None and until > now:
        raise Leased(until - now)


class _Transaction:
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
