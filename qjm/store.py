"""The store: job sets, their jobs and every fetched result, in an embedded SQLite file.

The default file is ``$QJM_HOME/jobsets.sqlite`` (``~/.qjm`` when ``QJM_HOME`` is unset). The file
runs in WAL mode, so several threads and several processes can use it at once. ``":memory:"`` keeps
job sets in this process only, and no results: the job sets of the process hold those.

One writer per store: every write of this process goes through one queue to one thread, which
commits whatever has queued up in one transaction (a group commit), so threads that fetch results
never wait on each other for SQLite. A caller that must know its write is committed before it goes
on waits for it (a job set, the journal's intent before a submission, a result before a backend
that serves it once is told it is kept); every other write is queued and committed within
milliseconds, in order. Every read of this process first waits for the writes it queued before
(:meth:`Store.flush`), so it reads what it wrote; ``ManagedJobSet.results()`` flushes before it
returns, so a result counts as kept only once committed. A write that fails (disk full, read-only)
is reported to whoever queued it; the writes queued with it in one transaction are then committed
one by one, so one failure costs no other write. Writes still queued when the interpreter exits are
committed first (for up to :data:`EXIT_FLUSH_SECONDS`).

Nothing in the store is a pickle: a fetched result is kept as its status, its error and its record
in qjm's columnar format (:mod:`qjm.wire`: a JSON header and raw array bytes), so a store file can be
shared and opened without running anything inside it. A kept job's state (done, partial, failed,
cancelled) is also kept in table ``kept_states``, so statuses and reports read job rows only, never
a record. The schema carries a version (table ``qjm_meta``) and migrates forward. A file
that is not a qjm store (another application's SQLite file, a corrupt file, a file of a newer qjm)
is refused with an error that names it, and is never modified. New store files are private to their
user (mode 0600).
"""

from __future__ import annotations

import atexit
import collections
import io
import json
import logging
import os
import pickle
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qjm.exceptions import JobManagerError
from qjm.outcome import JobOutcome

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 4
_SQLITE_MAGIC = b"SQLite format 3\x00"
_QJM_TABLES = {
    "job_sets",
    "jobs",
    "results",
    "qjm_meta",
    "job_work",
    "attempts",
    "unconfirmed",
    "job_times",
    "kept_states",
}
# a job's status in the journal while it is being submitted (its intent is recorded, its job id
# not yet): a set retrieved with this status left over ended while submitting
SUBMITTING = "SUBMITTING"
# a job's timings, the columns of table job_times (ManagedJob.times)
_TIMES = ("submitted", "running", "finished", "kept")
# the writer: at most this many writes, or this many bytes of records, in one transaction; a
# writer with nothing to do for _IDLE seconds ends (the next write starts another)
_MAX_WRITES = 2000
_MAX_BYTES = 64 << 20
_IDLE = 2.0
EXIT_FLUSH_SECONDS = 30.0


class StoreError(JobManagerError):
    """The store file cannot be used: not a qjm store, corrupt, newer, or not writable."""


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
CREATE TABLE IF NOT EXISTS job_work (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    work BLOB NOT NULL,
    PRIMARY KEY (job_set_id, idx)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    job_id TEXT,
    status TEXT,
    error TEXT,
    PRIMARY KEY (job_set_id, idx)
);
CREATE TABLE IF NOT EXISTS attempts (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    at REAL NOT NULL,
    job_id TEXT,
    what TEXT
);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_set_id, idx);
CREATE TABLE IF NOT EXISTS unconfirmed (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (job_set_id, idx)
);
CREATE TABLE IF NOT EXISTS job_times (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    submitted REAL,
    running REAL,
    finished REAL,
    kept REAL,
    PRIMARY KEY (job_set_id, idx)
);
CREATE TABLE IF NOT EXISTS kept_states (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (job_set_id, idx)
);
"""
_RESULTS_V2 = """CREATE TABLE IF NOT EXISTS results (
    job_set_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    record BLOB,
    stored REAL NOT NULL,
    PRIMARY KEY (job_set_id, idx)
)"""
_META = "CREATE TABLE IF NOT EXISTS qjm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SCHEMA += _RESULTS_V2 + ";\n" + _META + ";\n"

# a job's row: its job id, status and error; its timings; the state of its kept outcome
_JOB_ROW = (
    "INSERT INTO jobs VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_set_id, idx) DO UPDATE "
    "SET job_id = excluded.job_id, status = excluded.status, error = excluded.error"
)
_TIMES_ROW = "INSERT OR REPLACE INTO job_times VALUES (?, ?, ?, ?, ?, ?)"
_STATE_ROW = "INSERT OR REPLACE INTO kept_states VALUES (?, ?, ?, ?)"
_ATTEMPT_ROW = "INSERT INTO attempts VALUES (?, ?, ?, ?, ?)"
_RESULT_ROW = (
    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_set_id, idx) "
    "DO UPDATE SET status = excluded.status, error = excluded.error, "
    "record = excluded.record, stored = excluded.stored"
)
_UNCONFIRMED_ROW = "INSERT OR IGNORE INTO unconfirmed VALUES (?, ?)"
_WORK_ROW = "INSERT OR REPLACE INTO job_work VALUES (?, ?, ?)"
# the writes of a job's life, made through one view: a transaction of them is one statement
_DISPATCHED = (
    _JOB_ROW,
    _TIMES_ROW,
    _STATE_ROW,
    _ATTEMPT_ROW,
    _RESULT_ROW,
    _UNCONFIRMED_ROW,
    _WORK_ROW,
)


def default_store_path() -> Path:
    """``$QJM_HOME/jobsets.sqlite``, with ``QJM_HOME`` defaulting to ``~/.qjm``."""
    home = os.environ.get("QJM_HOME") or os.path.join(os.path.expanduser("~"), ".qjm")
    return Path(home) / "jobsets.sqlite"


Statements = list[tuple[str, Any]]  # (sql, one tuple of parameters or a list of tuples)


class _Writes(list):
    """Statements to commit together, and how: ``wait`` (the caller waits for the commit),
    ``callback`` (told when it is done, without ``wait``), ``nbytes`` (of records, to bound a
    transaction). Every write goes through :meth:`Store._write_all` as one of these."""

    def __init__(
        self,
        statements: Iterable[tuple[str, Any]] = (),
        wait: bool = True,
        callback: Callable[[StoreError | None], None] | None = None,
        nbytes: int = 0,
    ):
        super().__init__(statements)
        self.wait = wait
        self.callback = callback
        self.nbytes = nbytes


class _Ticket:
    """One queued write: done once committed or failed (``error``); ``event`` only for a
    caller that waits: a lock held until the write is done (a ``threading.Event`` costs a
    Condition and a second lock for each write)."""

    __slots__ = ("event", "error", "callback")

    def __init__(self, callback: Callable[[StoreError | None], None] | None, wait: bool):
        self.event: Any = None
        if wait:
            self.event = threading.Lock()
            self.event.acquire()
        self.error: StoreError | None = None
        self.callback = callback

    def wait(self) -> None:
        """Until the write is committed; raises its StoreError if it failed."""
        self.event.acquire()
        self.event.release()
        if self.error is not None:
            raise self.error


# stores with a writer, committed at exit (see EXIT_FLUSH_SECONDS)
_OPEN: weakref.WeakSet = weakref.WeakSet()
# every store of this process by file: a read waits for the writes any of them queued before
_BY_FILE: dict[str, weakref.WeakSet] = {}
_BY_FILE_LOCK = threading.Lock()


@atexit.register
def _flush_at_exit() -> None:
    for store in list(_OPEN):
        try:
            if not store.flush(timeout=EXIT_FLUSH_SECONDS):
                logger.warning("the store %s: writes still queued at exit were lost", store.path)
        except Exception:  # noqa: BLE001, S110 - nothing to do at exit but try the others
            pass


class Store:
    """Job sets, jobs and fetched results in one SQLite database.

    Args:
        path: the database file, or ``":memory:"`` to keep nothing beyond this process.
    """

    def __init__(self, path: str | os.PathLike = ":memory:"):
        self.path = str(path)
        self._lock = threading.Lock()  # the connection: one statement or transaction at a time
        self._qlock = threading.Lock()  # the write queue
        self._work = threading.Condition(self._qlock)  # the writer waits for writes
        self._drained = threading.Condition(self._qlock)  # flush() waits for the writer
        self._queue: collections.deque[tuple[Statements, _Ticket, int]] = collections.deque()
        self._queued = 0  # writes ever queued
        self._done = 0  # writes ever finished (committed or failed), in queue order
        self._writer: threading.Thread | None = None
        self._idle = False  # the writer waits for work (to be woken)
        self._closed = False
        if self.path == ":memory:":
            self._conn = sqlite3.connect(
                self.path, timeout=60.0, check_same_thread=False, isolation_level=None
            )
            self._conn.executescript(_SCHEMA + _DISPATCH_SCRIPT)
            self._set_version()
            return
        version = _inspect(self.path)  # refuses what is not a qjm store, changing nothing
        # a store from before schema 2: its pickles are read (safely) and converted before
        # anything is written, so that a file qjm refuses is never changed
        legacy = _legacy_rows(self.path) if version == 1 else None
        if version is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # created private to the user before SQLite opens it
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=60.0, check_same_thread=False, isolation_level=None
            )
            with _BY_FILE_LOCK:
                self._file = os.path.realpath(self.path)
                _BY_FILE.setdefault(self._file, weakref.WeakSet()).add(self)
            with self._lock:
                self._conn.execute("PRAGMA busy_timeout=60000")
                if version is None:
                    # a new file: pages freed by deleting job sets can be given back to the
                    # file system (compact()); settable only before the first table exists
                    self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                if legacy is not None:
                    self._migrate(legacy)
                self._conn.executescript(_SCHEMA)
                self._set_version()
                self._conn.executescript(_DISPATCH_SCRIPT)
        except sqlite3.Error as exc:
            raise StoreError(f"the store {self.path} cannot be opened: {exc}") from exc

    def _set_version(self) -> None:
        # schema 2 to 3 only adds tables (the attempt history; results kept but not yet
        # confirmed to a backend that serves them once; job timings), and 3 to 4 one more (the
        # state of each kept outcome), made by the script above
        self._conn.execute(
            "INSERT OR IGNORE INTO qjm_meta VALUES ('application', 'qjm'), ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        self._conn.execute(
            "UPDATE qjm_meta SET value = ? WHERE key = 'schema_version' AND value != ?",
            (str(SCHEMA_VERSION), str(SCHEMA_VERSION)),
        )

    def _migrate(self, rows: list[tuple]) -> None:
        """Version 1 (results as pickles) to 2 (columnar records), in one transaction, from the
        rows :func:`_legacy_rows` already read and converted without changing the file."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute("ALTER TABLE results RENAME TO results_v1")
            self._conn.execute(_RESULTS_V2)
            self._conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._conn.execute("DROP TABLE results_v1")
            self._conn.execute(_META)
            self._conn.execute(
                "INSERT OR REPLACE INTO qjm_meta VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Commit what is queued (for up to :data:`EXIT_FLUSH_SECONDS`), then close."""
        self.flush(timeout=EXIT_FLUSH_SECONDS)
        with self._qlock:
            self._closed = True
            self._work.notify_all()
        with self._lock:
            self._conn.close()

    # -- the writer -------------------------------------------------------------------------------

    def _enqueue(
        self,
        statements: Statements,
        wait: bool,
        nbytes: int = 0,
        callback: Callable[[StoreError | None], None] | None = None,
    ) -> _Ticket:
        """Queue a write (statements committed together, or none of them). With ``wait``, return
        once it is committed, raising StoreError if it failed; else return at once, and
        ``callback(error or None)`` is called (on the writer's thread) when it is done."""
        ticket = _Ticket(callback, wait)
        with self._qlock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            self._queue.append((statements, ticket, nbytes))
            self._queued += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="qjm-store-writer", daemon=True
                )
                self._writer.start()
                _OPEN.add(self)
            elif self._idle:
                self._work.notify()
        if wait:
            ticket.wait()
        return ticket

    def _run(self) -> None:
        """The writer: commit what is queued, in order, many writes per transaction."""
        while True:
            with self._qlock:
                if not self._queue:
                    self._idle = True
                    self._work.wait(_IDLE)
                    self._idle = False
                    if not self._queue:
                        self._writer = None
                        return
                batch = []
                size = 0
                while self._queue and len(batch) < _MAX_WRITES and size < _MAX_BYTES:
                    item = self._queue.popleft()
                    batch.append(item)
                    size += item[2]
            try:
                self._commit(batch)
            finally:
                with self._qlock:
                    self._done += len(batch)
                    self._drained.notify_all()
                # what was written (records' bytes) is not held while the writer waits
                del batch, item

    def _commit(self, batch: list[tuple[Statements, _Ticket, int]]) -> None:
        error = self._transaction([statements for statements, _, _ in batch])
        if error is None or len(batch) == 1:
            for _, ticket, _ in batch:
                self._finish(ticket, error)
            return
        # one write failed the transaction: each on its own, so the others are kept
        for statements, ticket, _ in batch:
            self._finish(ticket, self._transaction([statements]))

    def _transaction(self, groups: list[Statements]) -> StoreError | None:
        with self._lock:
            try:
                chunks = _dispatched(groups)
                if chunks is not None and len(chunks) == 1:
                    # one statement: its own transaction (one step, one wait for the GIL)
                    self._conn.execute(*chunks[0])
                    return None
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if chunks is not None:
                        for chunk in chunks:
                            self._conn.execute(*chunk)
                    else:
                        for sql, rows in _grouped(groups):
                            self._conn.executemany(sql, rows)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except Exception as exc:  # noqa: BLE001 - reported to the writes, the writer goes on
                # the real error (disk full, read-only file, a value SQLite cannot hold...) with
                # the store's path
                return StoreError(f"could not write to the store {self.path}: {exc}")
        return None

    @staticmethod
    def _finish(ticket: _Ticket, error: StoreError | None) -> None:
        ticket.error = error
        if ticket.callback is not None:
            try:
                ticket.callback(error)
            except Exception:  # noqa: BLE001 - a callback's failure must not stop the writer
                logger.exception("a store write's callback failed")
        if ticket.event is not None:
            ticket.event.release()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued before this call is committed (or failed); False when
        ``timeout`` seconds passed first."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._qlock:
            target = self._queued
            while self._done < target:
                if end is None:
                    self._drained.wait(1.0)
                else:
                    left = end - time.monotonic()
                    if left <= 0:
                        return False
                    self._drained.wait(min(left, 1.0))
        return True

    def pending(self) -> int:
        """Writes queued and not yet committed."""
        with self._qlock:
            return self._queued - self._done

    def _write(self, sql: str, rows: Iterable[tuple] | tuple) -> None:
        self._write_all([(sql, rows)])

    def _write_all(self, statements: list[tuple[str, Iterable[tuple] | tuple]]) -> None:
        """Statements in one transaction: all, or none. Committed before this returns, unless
        ``statements`` is a :class:`_Writes` without ``wait`` (then queued).

        Raises:
            StoreError: waited for, and the store cannot be written.
        """
        self._enqueue(
            [(sql, rows if isinstance(rows, tuple) else list(rows)) for sql, rows in statements],
            wait=getattr(statements, "wait", True),
            nbytes=getattr(statements, "nbytes", 0),
            callback=getattr(statements, "callback", None),
        )

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        self._flush_file()  # read what this process wrote
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _flush_file(self) -> None:
        """Wait for the writes queued before now by every store of this process on this file
        (a second ``JobManager`` on the same file reads what the first one wrote)."""
        self.flush()
        file = getattr(self, "_file", None)
        if file is None:
            return
        with _BY_FILE_LOCK:
            others = [s for s in _BY_FILE.get(file, ()) if s is not self]
        for other in others:
            other.flush()

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

    def job_set(self, job_set_id: str, names: bool = True) -> dict | None:
        """A job set's row; without ``names``, its experiment names are not read (see
        :meth:`job_set_names`)."""
        if names:
            rows = self._read("SELECT * FROM job_sets WHERE id = ?", (job_set_id,))
            return _job_set_row(rows[0]) if rows else None
        rows = self._read(
            "SELECT id, name, tags, backend_name, created, n_experiments, NULL, plan, run_options "
            "FROM job_sets WHERE id = ?",
            (job_set_id,),
        )
        return _job_set_row(rows[0], names=False) if rows else None

    def job_set_names(self, job_set_id: str) -> list[str]:
        """The experiment names of a job set, in order."""
        rows = self._read("SELECT names FROM job_sets WHERE id = ?", (job_set_id,))
        if not rows:
            from qjm.exceptions import JobManagerUnknownJobSet

            raise JobManagerUnknownJobSet(f"no job set with id {job_set_id!r} in {self.path}")
        return json.loads(rows[0][0])

    def job_set_listing(self, name: str | None = None) -> list[dict]:
        """Every job set (oldest first; with ``name``, those of that name): its ``id``, ``name``,
        ``tags``, ``backend_name`` and ``created``, nothing else read."""
        where, args = ("", ()) if name is None else (" WHERE name = ?", (name,))
        rows = self._read(
            f"SELECT id, name, tags, backend_name, created FROM job_sets{where} "
            "ORDER BY created, rowid",
            args,
        )
        return [
            {
                "id": r[0],
                "name": r[1],
                "tags": json.loads(r[2]),
                "backend_name": r[3],
                "created": r[4],
            }
            for r in rows
        ]

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
        self,
        job_set_id: str,
        idx: int,
        job_id: str | None,
        status: str | None,
        error: str | None,
        times: dict[str, float] | None = None,
        kept: str | None = None,
        wait: bool = True,
        callback: Callable[[StoreError | None], None] | None = None,
    ) -> None:
        """A job's row; with ``times`` (``ManagedJob.times``), its timings in the same
        transaction; ``kept``: the state of its kept outcome (``qjm.summary``), if any. Without
        ``wait``, queued (see :meth:`_enqueue`)."""
        statements = _Writes([(_JOB_ROW, (job_set_id, idx, job_id, status, error))], wait, callback)
        if times is not None:
            statements.append((_TIMES_ROW, (job_set_id, idx, *(times.get(k) for k in _TIMES))))
        if kept is not None and status is not None:
            statements.append((_STATE_ROW, (job_set_id, idx, status, kept)))
        self._write_all(statements)

    def job_times(self, job_set_id: str) -> dict[int, dict[str, float]]:
        """Every job's timings (``ManagedJob.times``): only the times that were recorded."""
        rows = self._read(
            "SELECT idx, submitted, running, finished, kept FROM job_times WHERE job_set_id = ?",
            (job_set_id,),
        )
        return {
            r[0]: {k: float(v) for k, v in zip(_TIMES, r[1:]) if isinstance(v, (int, float))}
            for r in rows
        }

    def record_intent(self, job_set_id: str, idx: int) -> None:
        """The journal's entry right before a job is submitted: status SUBMITTING, no job id
        yet; committed before this returns (with the intents of other threads, in one
        transaction). Raises StoreError when it cannot be written (the job is then not
        submitted)."""
        if self.path == ":memory:":
            return
        self._write(_INTENT_ROW, (job_set_id, idx, SUBMITTING))

    def record_work(
        self,
        job_set_id: str,
        works: list[tuple[int, bytes]],
        wait: bool = True,
        callback: Callable[[StoreError | None], None] | None = None,
    ) -> None:
        """What jobs of a set run (QPY), in one transaction, before they are submitted. Without
        ``wait``, queued: ``callback`` says when it is committed, or why not."""
        if self.path == ":memory:" or not works:
            if callback is not None:
                callback(None)
            return
        self._write_all(
            _Writes(
                [(_WORK_ROW, [(job_set_id, idx, blob) for idx, blob in works])],
                wait,
                callback,
                nbytes=sum(len(blob) for _, blob in works),
            )
        )

    def job_work(self, job_set_id: str, idx: int) -> bytes | None:
        """What job ``idx`` runs (QPY), as its intent recorded it, or None."""
        rows = self._read(
            "SELECT work FROM job_work WHERE job_set_id = ? AND idx = ?", (job_set_id, idx)
        )
        return rows[0][0] if rows else None

    def jobs(self, job_set_id: str) -> dict[int, tuple[str | None, str | None, str | None]]:
        rows = self._read(
            "SELECT idx, job_id, status, error FROM jobs WHERE job_set_id = ?", (job_set_id,)
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    # -- results --------------------------------------------------------------------------------

    def put_outcome(
        self,
        job_set_id: str,
        idx: int,
        outcome: JobOutcome,
        unconfirmed: bool = False,
        job: tuple[str | None, str | None, dict[str, float] | None] | None = None,
        wait: bool = True,
        callback: Callable[[StoreError | None], None] | None = None,
    ) -> None:
        """Keep a job's final outcome; with ``unconfirmed``, note in the same transaction that its
        backend still holds the result until told it is kept (:meth:`confirmed`); with ``job``
        (its job id, submit error and timings), its row of ``jobs`` (status and kept state) in
        the same transaction too. With ``wait`` (the default), committed before this returns;
        without, queued (``callback`` says when it is committed, or why not).

        Raises:
            StoreError: with ``wait``, the outcome could not be committed.
        """
        from qjm.summary import outcome_state

        statements = _Writes(wait=wait, callback=callback)
        if self.path != ":memory:":  # the job set in this process holds it
            from qjm.wire import encode_record

            record = None if outcome.record is None else encode_record(outcome.record)
            statements.nbytes = len(record) if record is not None else 0
            statements.append(
                (
                    _RESULT_ROW,
                    (job_set_id, idx, outcome.status.name, outcome.error, record, time.time()),
                )
            )
            if unconfirmed:
                statements.append((_UNCONFIRMED_ROW, (job_set_id, idx)))
        if job is not None:
            job_id, submit_error, times = job
            status = outcome.status.name
            statements.append((_JOB_ROW, (job_set_id, idx, job_id, status, submit_error)))
            if times is not None:
                statements.append((_TIMES_ROW, (job_set_id, idx, *(times.get(k) for k in _TIMES))))
            statements.append((_STATE_ROW, (job_set_id, idx, status, outcome_state(outcome))))
        if not statements:
            if callback is not None:
                callback(None)
            return
        self._write_all(statements)

    def confirmed(self, job_set_id: str, idx: int) -> None:
        """The backend was told it may discard job ``idx``'s result (queued: a note lost in a
        crash only makes the next process confirm again, which is harmless)."""
        if self.path == ":memory:":
            return
        self._write_all(
            _Writes(
                [("DELETE FROM unconfirmed WHERE job_set_id = ? AND idx = ?", (job_set_id, idx))],
                wait=False,
                callback=_log_failure,
            )
        )

    def unconfirmed(self, job_set_id: str) -> list[int]:
        """Jobs whose results are kept but whose backend was not told so (the process that
        fetched them ended in between)."""
        rows = self._read(
            "SELECT idx FROM unconfirmed WHERE job_set_id = ? ORDER BY idx", (job_set_id,)
        )
        return [r[0] for r in rows]

    # -- attempt history -------------------------------------------------------------------------

    def add_attempt(
        self,
        job_set_id: str,
        idx: int,
        at: float,
        job_id: str | None,
        what: str | None,
        wait: bool = True,
    ) -> None:
        """One entry of a job's history: a submission (``what`` None) or what went wrong.
        Without ``wait``, queued (a failure is logged)."""
        if self.path == ":memory:":
            return
        self._write_all(
            _Writes(
                [(_ATTEMPT_ROW, (job_set_id, idx, at, job_id, what))],
                wait=wait,
                callback=None if wait else _log_failure,
            )
        )

    def attempts(self, job_set_id: str) -> dict[int, list[tuple[float, str | None, str | None]]]:
        """Every job's history, oldest first."""
        out: dict[int, list] = {}
        for idx, at, job_id, what in self._read(
            "SELECT idx, at, job_id, what FROM attempts WHERE job_set_id = ? ORDER BY rowid",
            (job_set_id,),
        ):
            out.setdefault(idx, []).append((at, job_id, what))
        return out

    def kept_outcomes(self, job_set_id: str) -> dict[int, tuple[str, str | None, bool, str | None]]:
        """What is kept of each job's outcome, without reading a record: {idx: (status, error,
        whether a record is kept, its state or None when the store does not know it)}.

        Raises:
            StoreError: the store cannot be read.
        """
        try:
            rows = self._read(
                "SELECT r.idx, r.status, r.error, r.record IS NOT NULL, k.state, k.status "
                "FROM results AS r LEFT JOIN kept_states AS k "
                "ON k.job_set_id = r.job_set_id AND k.idx = r.idx WHERE r.job_set_id = ?",
                (job_set_id,),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the store {self.path}: {exc}") from exc
        out = {}
        for idx, status, error, has_record, kept, job_status in rows:
            if not isinstance(idx, int) or not isinstance(status, str):
                continue
            out[idx] = (status, error, bool(has_record), kept if job_status == status else None)
        return out

    def records(self, job_set_id: str, indices: Iterable[int] | None = None) -> dict[int, Any]:
        """The kept records of a job set (of jobs ``indices``, or all), in one read: a circuits
        job's record in the pooled layout as a :class:`~qjm.records.PooledRecord` (read when its
        experiments are: a damaged one raises ``qjm.wire.WireError`` then), any other decoded
        now (one that does not read back, from a damaged file, is left out, as a job whose
        result was not fetched: it is fetched again if it can be).

        Raises:
            StoreError: the store cannot be read.
        """
        from qjm.wire import WireError

        chosen = None if indices is None else sorted(set(indices))
        try:
            if chosen is None:
                rows = self._read(
                    "SELECT idx, record FROM results WHERE job_set_id = ? AND record IS NOT NULL",
                    (job_set_id,),
                )
            else:
                rows = []
                for start in range(0, len(chosen), _BATCH):
                    batch = chosen[start : start + _BATCH]
                    marks = ",".join("?" * len(batch))
                    rows += self._read(
                        f"SELECT idx, record FROM results WHERE job_set_id = ? AND idx IN "
                        f"({marks}) AND record IS NOT NULL",
                        (job_set_id, *batch),
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the store {self.path}: {exc}") from exc
        out = {}
        for idx, blob in rows:
            try:
                out[idx] = _read_record(blob)
            except WireError as exc:
                logger.warning("job %s's kept result does not read back: %s", idx, exc)
        return out

    def outcomes(self, job_set_id: str) -> dict[int, JobOutcome]:
        """The kept outcomes of a job set, every record decoded. A row that does not read back
        (a damaged file) is left out, as a job whose result was not fetched: it is fetched again
        if it can be.

        Raises:
            StoreError: the store cannot be read.
        """
        from qiskit.providers import JobStatus

        kept = self.kept_outcomes(job_set_id)
        records = self.records(job_set_id)
        out = {}
        for idx, (status, error, has_record, _state) in kept.items():
            if status not in JobStatus.__members__:
                continue
            if has_record and idx not in records:
                continue
            out[idx] = JobOutcome(JobStatus[status], records.get(idx), error)
        return out

    # -- housekeeping: listing, deleting, freeing space -------------------------------------------

    def job_set_overview(self, name: str | None = None) -> list[dict]:
        """What ``qjm list`` shows, read without decoding any result: for every job set (oldest
        first; with ``name``, those of that name) its ``id``, ``name``, ``tags``,
        ``backend_name``, ``created``, ``n_jobs``, ``jobs`` ({idx: (job_id, status, error)}) and
        ``results`` ({idx: (status, JSON header of the kept record or None, kept state or
        None)}). A record's header is read only for a job whose kept state is not in the store
        (kept by a qjm before schema 4).

        Raises:
            StoreError: the store cannot be read.
        """
        from qjm.summary import record_header

        where, args = ("", ()) if name is None else (" WHERE name = ?", (name,))
        chosen = f"SELECT id FROM job_sets{where}"
        try:
            sets = self._read(
                "SELECT id, name, tags, backend_name, created, plan FROM job_sets"
                f"{where} ORDER BY created, rowid",
                args,
            )
            jobs = self._read(
                "SELECT job_set_id, idx, job_id, status, error FROM jobs "
                f"WHERE job_set_id IN ({chosen})",
                args,
            )
            kept_states = self._read(
                "SELECT job_set_id, idx, status, state FROM kept_states "
                f"WHERE job_set_id IN ({chosen})",
                args,
            )
            results = self._read(
                "SELECT job_set_id, idx, status, record IS NOT NULL FROM results "
                f"WHERE job_set_id IN ({chosen})",
                args,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"could not read the store {self.path}: {exc}") from exc
        out: dict[str, dict] = {}
        for job_set_id, set_name, tags, backend_name, created, plan in sets:
            try:
                n_jobs = len(json.loads(plan)["jobs"])
            except (ValueError, KeyError, TypeError):
                n_jobs = 0
            out[job_set_id] = {
                "id": job_set_id,
                "name": set_name,
                "tags": json.loads(tags),
                "backend_name": backend_name,
                "created": created,
                "n_jobs": n_jobs,
                "jobs": {},
                "results": {},
            }
        for job_set_id, idx, job_id, status, error in jobs:
            if job_set_id in out:
                out[job_set_id]["jobs"][idx] = (job_id, status, error)
        states = {(r[0], r[1]): (r[2], r[3]) for r in kept_states}
        for job_set_id, idx, status, has_record in results:
            if job_set_id not in out:
                continue
            job_status, kept = states.get((job_set_id, idx), (None, None))
            if kept is not None and job_status == status:
                out[job_set_id]["results"][idx] = (status, None, kept)
                continue
            header = None
            if has_record:  # a record kept before schema 4: its header says its state
                rows = self._read(
                    "SELECT substr(record, 1, ?) FROM results WHERE job_set_id = ? AND idx = ?",
                    (_HEADER_PREFIX, job_set_id, idx),
                )
                prefix = rows[0][0] if rows else None
                if prefix is not None:
                    header, needed = record_header(prefix)
                    if header is None and needed:  # a header longer than the prefix read
                        rows = self._read(
                            "SELECT substr(record, 1, ?) FROM results "
                            "WHERE job_set_id = ? AND idx = ?",
                            (needed, job_set_id, idx),
                        )
                        header = record_header(rows[0][0])[0] if rows and rows[0][0] else None
            out[job_set_id]["results"][idx] = (status, header, None)
        return list(out.values())

    def _per_set_tables(self) -> list[str]:
        """Every table holding rows of job sets (a ``job_set_id`` column), read from the file
        itself so that no table of the schema is forgotten. Call with the lock held."""
        tables = [
            r[0]
            for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return [
            t
            for t in tables
            if any(c[1] == "job_set_id" for c in self._conn.execute(f'PRAGMA table_info("{t}")'))
        ]

    def delete_job_sets(self, job_set_ids: Iterable[str], compact: bool = True) -> list[str]:
        """Remove job sets and every row of theirs (jobs, kept results, the journal's work,
        attempts, timings... every table with a ``job_set_id`` column) in one transaction: all
        of them or, when any id is unknown, none. Then, with ``compact``, give the freed space
        back to the file system (:meth:`compact`). Returns the ids removed.

        Raises:
            JobManagerUnknownJobSet: an id is not in the store (nothing was removed).
            StoreError: the store cannot be written.
        """
        ids = list(dict.fromkeys(str(i) for i in job_set_ids))

        def chosen() -> list[str]:
            known = set()
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                marks = ",".join("?" * len(batch))
                known.update(
                    r[0]
                    for r in self._conn.execute(
                        f"SELECT id FROM job_sets WHERE id IN ({marks})", batch
                    )
                )
            unknown = [i for i in ids if i not in known]
            if unknown:
                from qjm.exceptions import JobManagerUnknownJobSet

                raise JobManagerUnknownJobSet(
                    f"no job set with id {', '.join(map(repr, unknown[:5]))}"
                    + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                    + f" in the store {self.path}; nothing was deleted"
                )
            return ids

        removed = self._delete(chosen, orphans=False)
        if compact and removed:
            self.compact()
        return removed

    def delete_job_sets_created_before(
        self, cutoff: float, keep: Iterable[str] = (), compact: bool = True
    ) -> list[str]:
        """Remove the job sets created before ``cutoff`` (a ``time.time()``) but those in
        ``keep``, every row of theirs, and rows left behind by sets already removed (a process
        still running a set when it was removed writes on), in one transaction; then, with
        ``compact``, free the space. Returns the ids removed."""
        kept = set(keep)

        def chosen() -> list[str]:
            return [
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM job_sets WHERE created < ? ORDER BY created, rowid",
                    (float(cutoff),),
                )
                if r[0] not in kept
            ]

        removed = self._delete(chosen, orphans=True)
        if compact:
            self.compact()
        return removed

    def _delete(self, chosen: Any, orphans: bool) -> list[str]:
        """Delete the sets ``chosen()`` names (called inside the transaction)."""
        self.flush()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    ids = chosen()
                    tables = self._per_set_tables()
                    for start in range(0, len(ids), _BATCH):
                        batch = ids[start : start + _BATCH]
                        marks = ",".join("?" * len(batch))
                        self._conn.execute(f"DELETE FROM job_sets WHERE id IN ({marks})", batch)
                        for table in tables:
                            self._conn.execute(
                                f'DELETE FROM "{table}" WHERE job_set_id IN ({marks})', batch
                            )
                    if orphans:
                        for table in tables:
                            self._conn.execute(
                                f'DELETE FROM "{table}" WHERE job_set_id NOT IN '
                                "(SELECT id FROM job_sets)"
                            )
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"could not delete from the store {self.path}: {exc}") from exc
        return ids

    def compact(self) -> None:
        """Give the pages freed by deletions back to the file system. A store created by this
        qjm (``auto_vacuum=INCREMENTAL``) does it at once (``PRAGMA incremental_vacuum``); an
        older file is rewritten with ``VACUUM`` (and made incremental from then on) when the
        free pages reach 16 MiB or a quarter of the file, since that rewrite costs time and
        briefly twice the space. A failure here loses nothing (the deletion is committed) and
        is logged."""
        if self.path == ":memory:":
            return
        self.flush()
        with self._lock:
            try:
                mode = self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]
                if mode == 2:  # incremental; executescript steps it to the end (execute()
                    # would free one page)
                    self._conn.executescript("PRAGMA incremental_vacuum;")
                elif mode == 0:
                    page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                    free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
                    pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
                    if free and (free * page >= _VACUUM_BYTES or 4 * free >= pages):
                        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                        self._conn.execute("VACUUM")
                # the write-ahead log into the file, and the file cut to its pages
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                logger.warning("the store %s was not compacted: %s", self.path, exc)


_INTENT_ROW = (
    "INSERT INTO jobs VALUES (?, ?, NULL, ?, NULL) ON CONFLICT (job_set_id, idx) DO "
    "UPDATE SET job_id = NULL, status = excluded.status, error = NULL"
)
_TABLE = re.compile(r"^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|DELETE\s+FROM|UPDATE)\s+\"?(\w+)", re.I)


def _grouped(groups: list[Statements]) -> list[tuple[str, list[tuple]]]:
    """The statements of one transaction as few ``executemany`` calls: each table's statements
    in their order (tables do not depend on each other's order), a run of one statement text as
    one call. An intent is the job row with no job id (the same upsert, one text). A statement
    on no table known is a barrier: nothing moves across it."""
    out: list[tuple[str, list[tuple]]] = []
    tables: dict[str, list[tuple[str, list[tuple]]]] = {}

    def flush() -> None:
        for runs in tables.values():
            out.extend(runs)
        tables.clear()

    for statements in groups:
        for sql, rows in statements:
            many = [rows] if isinstance(rows, tuple) else list(rows)
            if sql == _INTENT_ROW:
                sql = _JOB_ROW
                many = [(r[0], r[1], None, r[2], None) for r in many]
            found = _TABLE.match(sql)
            if found is None:
                flush()
                out.append((sql, many))
                continue
            runs = tables.setdefault(found.group(1).lower(), [])
            if runs and runs[-1][0] == sql:
                runs[-1][1].extend(many)
            else:
                runs.append((sql, many))
    flush()
    return out


# an INSERT of one row of placeholders (the writes of _DISPATCHED): what comes before its row,
# the row, what follows
_ONE_ROW = re.compile(r"^(\s*INSERT\b.*?\bVALUES\s*)(\((?:\s*\?\s*,)*\s*\?\s*\))(.*)$", re.I | re.S)


def _dispatch_script() -> tuple[str, dict[str, int], int]:
    """A temporary view whose INSTEAD OF INSERT trigger makes each row the write its first column
    names (an index into _DISPATCHED; 0: nothing), so that many writes to several tables are
    one multi-row INSERT: one statement step instead of one per row and table. sqlite3 lets go
    of the GIL for every step, and taking it back waits while other threads compute."""
    width = max(_ONE_ROW.match(sql).group(2).count("?") for sql in _DISPATCHED)
    cols = ", ".join(f"NULL AS a{i}" for i in range(1, width + 1))
    body = []
    for k, sql in enumerate(_DISPATCHED, 1):
        head, row, tail = _ONE_ROW.match(sql).groups()
        n = row.count("?")
        into = re.sub(r"\s*VALUES\s*$", "", head, flags=re.I)
        values = ", ".join(f"NEW.a{i}" for i in range(1, n + 1))
        body.append(f"{into} SELECT {values} WHERE NEW.k = {k}{tail};")
    script = (
        f"CREATE TEMP VIEW IF NOT EXISTS qjm_writes AS SELECT NULL AS k, {cols};\n"
        "CREATE TEMP TRIGGER IF NOT EXISTS qjm_writes_insert INSTEAD OF INSERT ON qjm_writes "
        "BEGIN\n" + "\n".join(body) + "\nEND;\n"
    )
    return script, {sql: k for k, sql in enumerate(_DISPATCHED, 1)}, width


_DISPATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # rows per statement (the last padded)
_DISPATCH_SQL: dict[int, str] = {}


def _dispatched(groups: list[Statements]) -> list[tuple[str, list]] | None:
    """The writes of one transaction as statements on the view (see :func:`_dispatch_script`),
    in their order; None when one of them is not a write the view makes."""
    rows: list[tuple] = []
    for statements in groups:
        for sql, many in statements:
            if sql == _INTENT_ROW:
                sql = _JOB_ROW
                many = [
                    (r[0], r[1], None, r[2], None)
                    for r in ([many] if isinstance(many, tuple) else many)
                ]
            k = _DISPATCH_KIND.get(sql)
            if k is None:
                return None
            for row in [many] if isinstance(many, tuple) else many:
                rows.append((k, *row) + (None,) * (_DISPATCH_WIDTH - len(row)))
    out = []
    pad = (0,) + (None,) * _DISPATCH_WIDTH
    i = 0
    while i < len(rows):
        left = len(rows) - i
        # 256 rows at a time; the rest in one statement, padded up to the next size
        size = min((k for k in _DISPATCH_SIZES if k >= left), default=_DISPATCH_SIZES[-1])
        chunk = rows[i : i + size]
        i += len(chunk)
        chunk += [pad] * (size - len(chunk))
        text = _DISPATCH_SQL.get(size)
        if text is None:
            one = "(" + ", ".join(["?"] * (_DISPATCH_WIDTH + 1)) + ")"
            text = _DISPATCH_SQL[size] = "INSERT INTO qjm_writes VALUES " + ",".join([one] * size)
        out.append((text, [v for row in chunk for v in row]))
    return out


_DISPATCH_SCRIPT, _DISPATCH_KIND, _DISPATCH_WIDTH = _dispatch_script()


def _read_record(blob: bytes) -> Any:
    """A stored record: pooled (read lazily: nothing but its prefix is looked at now) or
    decoded."""
    from qjm.wire import _PREFIX, MAGIC, RECORD_VERSION, decode_record

    if len(blob) >= _PREFIX.size:
        magic, version, _flags, length = _PREFIX.unpack_from(blob)
        if magic == MAGIC and version == RECORD_VERSION and _PREFIX.size + length <= len(blob):
            from qjm.records import PooledRecord

            # its header is read, and checked, when one of its experiments is first read
            return PooledRecord(bytes(blob))
    return decode_record(blob)


def _log_failure(error: StoreError | None) -> None:
    if error is not None:
        logger.warning("%s", error)


# the first bytes of a record read to find its header (job_set_overview); longer ones read again
_HEADER_PREFIX = 16384
_BATCH = 500  # ids per statement (SQLite's variable limit is 999 in old builds)
_VACUUM_BYTES = 16 << 20


def _job_set_row(row: tuple, names: bool = True) -> dict:
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
    for key in ("tags", "names", "plan") if names else ("tags", "plan"):
        out[key] = json.loads(out[key])  # run_options: JSON text for qjm.runoptions
    if not names:
        del out["names"]
    return out


def _inspect(path: str) -> int | None:
    """The schema version of the qjm store at ``path`` (1 for a store from before versions), or
    None when there is no file yet (or an empty one). Opens the file read-only.

    Raises:
        StoreError: the file is not a qjm store, is corrupt or is of a newer schema.
    """
    file = Path(path)
    if not file.exists() or file.stat().st_size == 0:
        return None
    if file.is_dir():
        raise StoreError(f"the store path {path} is a directory: give a file path")
    with open(file, "rb") as handle:
        if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
            raise StoreError(
                f"{path} is not a qjm store (not an SQLite file); qjm did not change it. "
                "Give JobManager(store=...) another path."
            )
    try:
        conn = sqlite3.connect(f"file:{file.resolve()}?mode=ro", uri=True, timeout=60.0)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            meta = {}
            if "qjm_meta" in tables:
                meta = dict(conn.execute("SELECT key, value FROM qjm_meta").fetchall())
            columns = (
                [r[1] for r in conn.execute("PRAGMA table_info(results)")]
                if "results" in tables
                else []
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"{path} cannot be read as a qjm store ({exc}); qjm did not change it. If it is a "
            "damaged qjm store, move it aside and let qjm start a new one."
        ) from exc
    if not tables:
        return None
    others = sorted(tables - _QJM_TABLES)
    if meta.get("application") != "qjm":
        legacy = tables == {"job_sets", "jobs", "results"} and "outcome" in columns
        if not legacy:
            raise StoreError(
                f"{path} is not a qjm store (it holds the tables {', '.join(sorted(tables))}); "
                "qjm did not change it. Give JobManager(store=...) another path."
            )
        return 1
    if others:
        raise StoreError(
            f"{path} holds tables qjm does not know ({', '.join(others)}); qjm did not change it"
        )
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError as exc:
        raise StoreError(f"{path}: the store's schema version is unreadable") from exc
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer qjm (store schema {version}; this qjm reads up to "
            f"{SCHEMA_VERSION}); qjm did not change it. Upgrade qjm to open it."
        )
    return version


def _legacy_rows(path: str) -> list[tuple]:
    """The results of a schema-1 store, read-only, as schema-2 rows.

    Raises:
        StoreError: a result that is not a qjm record (a crafted pickle is refused, never run).
    """
    from qjm.wire import encode_record

    conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=60.0)
    try:
        rows = conn.execute("SELECT job_set_id, idx, outcome, stored FROM results").fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"could not read the store {path}: {exc}") from exc
    finally:
        conn.close()
    out = []
    for job_set_id, idx, blob, stored in rows:
        try:
            outcome = _RecordUnpickler(io.BytesIO(blob)).load()
            if not isinstance(outcome, JobOutcome):
                raise pickle.UnpicklingError(f"a {type(outcome).__name__}, not a job outcome")
            record = None if outcome.record is None else encode_record(outcome.record)
        except Exception as exc:  # noqa: BLE001 - anything a damaged or crafted row makes fail
            raise StoreError(
                f"the store {path} was written by an earlier qjm and holds a result qjm will not "
                f"read (job set {job_set_id}, job {idx}: {exc}); qjm did not change it"
            ) from exc
        out.append((job_set_id, idx, outcome.status.name, outcome.error, record, stored))
    return out


class _RecordUnpickler(pickle.Unpickler):
    """Reads the pickles of stores from before schema 2, building only the classes those records
    are made of (qjm's records, numpy arrays, qiskit's enums and quantum_info data). Any other
    global, such as a function a crafted pickle would call, is refused."""

    _ALLOWED = {
        ("qjm.outcome", "JobOutcome"),
        ("qjm.records", "JobRecord"),
        ("qjm.records", "ExperimentRecord"),
        ("qjm.pubrecords", "PrimitiveJobRecord"),
        ("qjm.pubrecords", "PubRecord"),
        ("qiskit.providers.jobstatus", "JobStatus"),
        ("qiskit.result.models", "MeasLevel"),
        ("qiskit.result.models", "MeasReturnType"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "complex"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("collections", "OrderedDict"),
        ("qiskit.quantum_info.states.statevector", "Statevector"),
        ("qiskit.quantum_info.states.densitymatrix", "DensityMatrix"),
        ("qiskit.quantum_info.operators.operator", "Operator"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a qjm record")
        return super().find_class(module, name)
