"""ManagedJobSet: the jobs of one run, submitted and fetched on a thread pool."""

from __future__ import annotations

import collections
import heapq
import logging
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from functools import partial
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.providers import JobStatus, JobV1
from qiskit.providers.jobstatus import JOB_FINAL_STATES

from qjm.exceptions import JobManagerInvalidStateError, JobManagerTimeoutError
from qjm.lookup import ExperimentIndex
from qjm.managedjob import KeptJob, ManagedJob
from qjm.outcome import JobOutcome, StoredOutcome
from qjm.plan import Plan
from qjm.pool import DaemonPool
from qjm.records import JobRecord, PooledRecord
from qjm.retry import DEFAULT_RETRY, RetryPolicy
from qjm.store import SUBMITTING, Store, StoreError
from qjm.summary import CANCELLED, DONE, FAILED, NOT_SUBMITTED, PARTIAL, job_state, outcome_state
from qjm.validation import check_timeout
from qjm.wire import encode_record

logger = logging.getLogger(__name__)

# journal entries queued for their commit at most at once, and their bytes (see _write_journal)
_JOURNAL_AHEAD = 256
_JOURNAL_AHEAD_BYTES = 1 << 20
_ENDED: Future = Future()  # stands for a submission's future once the submission has ended
_ENDED.set_result(None)

# what a job set listed by JobManager.job_sets() reads from the store on first use
_LAZY = frozenset(
    {"_plan", "_index", "_managed", "_kind_name", "_layout", "_run_options", "_unstored_options"}
)

# What one fetch task found.
_FINAL = "final"  # the outcome is kept
_NOT_READY = "not ready"  # the job is not in a final state yet
_FAILED = "failed"  # the job is done but its result could not be read this time

# Seconds before a job's status is asked again: from _POLL_FIRST, growing by half each time, to a
# cap of _POLL_COST_FACTOR times what the last status query took, kept within [_POLL_CAP_MIN,
# _POLL_CAP_MAX]. A local simulator (a status costs microseconds) is polled every 50 ms at most;
# a service 50 ms away every 2 s, so polling costs either a few percent at most.
_POLL_FIRST = 0.005
_POLL_CAP_MIN = 0.05
_POLL_CAP_MAX = 2.0
_POLL_COST_FACTOR = 40.0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _log_store_failure(error: StoreError | None) -> None:
    if error is not None:
        logger.warning("%s", error)


class ManagedJobSet:
    """The jobs of one :meth:`JobManager.run`, and their results.

    Created by :meth:`JobManager.run` (submission goes on in the background) or by
    :meth:`JobManager.retrieve_job_set` (from the store).
    """

    def __init__(
        self,
        *,
        job_set_id: str,
        name: str | None,
        tags: list[str],
        plan: Plan | None,
        names: list[str] | Callable[[], list[str]] | None,
        backend: Any,
        backend_name: str | None,
        store: Store,
        max_workers: int,
        created: float | None = None,
        seeds: list[int | None] | None = None,
        unstored_options: list[str] | None = None,
        run_options: dict[str, Any] | None = None,
        kind: Any = None,
        layout: dict | None = None,
        retry: RetryPolicy | None = None,
        max_active_jobs: int | None = None,
        materialize: Callable[[ManagedJobSet], None] | None = None,
    ):
        self._id = job_set_id
        self._name = name
        self._tags = list(tags)
        self._backend = backend  # the target: a backend, a sampler or an estimator
        self._retry = retry if retry is not None else DEFAULT_RETRY
        self._work: list | None = None  # what the jobs run, kept in this process for retries
        # the journal: what each job runs, committed before that job is submitted; the journal's
        # thread writes job after job, and each job is submitted once its own entry is in
        self._journal_cond = threading.Condition()
        self._unjournaled: set[int] = set()  # jobs whose entry is still to be written
        self._journal_writing = False  # the journal's thread is running
        self._journal_waiters: set[int] = set()  # jobs waiting for their entry's commit
        self._journal_error: BaseException | None = None
        self._transpiler: Any = None  # qjm.transpiling.Transpiler, with run(transpile=...)
        self._transpiled: dict[int, Any] = {}  # job index: its circuits' future, then them
        self._max_active = max_active_jobs
        self._waiting: collections.deque[ManagedJob] = collections.deque()  # for a free slot
        self._slots_lock = threading.Lock()
        self._backend_name = backend_name
        self._store = store
        self._max_workers = max_workers
        self._created = created if created is not None else time.time()
        self._lock = threading.Lock()
        self._executor: DaemonPool | None = None
        self._submit_futures: list[Future] = []
        self._stop_submitting = threading.Event()  # set by cancel() and shutdown()
        self._attached = False
        self._attached_finished = False  # finished jobs reattached too (jobs(), refresh)
        self._retrieved = False  # rebuilt from the store (by retrieve_job_set)
        # the manager's: told when the set finishes its work (held weakly from then on) or
        # starts work again (held)
        self._on_finished: Callable[[ManagedJobSet, bool], None] | None = None
        # told (with the job) whenever a job's submission ends: results() fetches each job as
        # soon as it is submitted
        self._submit_listeners: list[Callable[[ManagedJob], None]] = []
        # a set listed by JobManager.job_sets() reads its plan and jobs on first use
        self._lazy_lock = threading.RLock()
        self._materialize = materialize
        if plan is not None:
            self._set_plan(plan, names, seeds, kind, layout, run_options, unstored_options)

    def _set_plan(
        self,
        plan: Plan,
        names: list[str] | Callable[[], list[str]] | None,
        seeds: list[int | None] | None,
        kind: Any,
        layout: dict | None,
        run_options: dict[str, Any] | None,
        unstored_options: list[str] | None,
    ) -> None:
        self._kind_name = kind.name if kind is not None else "circuits"
        self._layout = layout  # PUB work: the PUBs' shapes and the pieces they were cut into
        self._run_options = dict(run_options or {})
        self._unstored_options = list(unstored_options or [])
        self._index = ExperimentIndex(
            names if names is not None else (lambda: self._store.job_set_names(self._id)),
            plan.n_experiments,
        )
        managed = [ManagedJob(spec) for spec in plan.jobs]
        for mj, seed in zip(managed, seeds or []):
            mj.seed = seed
        self._managed = managed
        self._plan = plan

    def __getattr__(self, name: str) -> Any:
        # only for what a lazily listed set has not read yet (see JobManager.job_sets)
        if name in _LAZY:
            lazy_lock = self.__dict__.get("_lazy_lock")
            if lazy_lock is not None and self.__dict__.get("_materialize") is not None:
                with lazy_lock:
                    load = self.__dict__.get("_materialize")
                    if load is not None:
                        self.__dict__["_materialize"] = None
                        try:
                            load(self)
                        except BaseException:
                            self.__dict__["_materialize"] = load
                            raise
                if name in self.__dict__:
                    return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _items(self, mj: ManagedJob) -> str:
        """What a job runs: "experiments a-b", or "PUBs a-b" (with the parameter sets of a PUB
        cut along its sweep)."""
        if self._layout is None:
            return f"experiments {mj.start_index}-{mj.end_index}"
        pieces = self._layout["pieces"]
        first, last = pieces[mj.start_index], pieces[mj.end_index]
        shapes = self._layout["shapes"]

        def whole(piece: list) -> bool:
            size = 1
            for n in shapes[piece[0]]:
                size *= n
            return piece[1] == 0 and piece[2] == size

        if first[0] == last[0]:
            if whole(first):
                return f"PUB {first[0]}"
            return f"PUB {first[0]}, parameter sets {first[1]}-{last[2] - 1}"
        text = f"PUBs {first[0]}-{last[0]}"
        if not whole(first):
            text += f" (PUB {first[0]} from parameter set {first[1]})"
        if not whole(last):
            text += f" (PUB {last[0]} to parameter set {last[2] - 1})"
        return text

    def _ranges(self, jobs: list[ManagedJob]) -> str:
        shown = ", ".join(f"job {m.index} ({self._items(m)})" for m in jobs[:20])
        return shown + (f" and {len(jobs) - 20} more" if len(jobs) > 20 else "")

    def _kind(self) -> Any:
        """The kind of work of this set, on its current target (one object per target)."""
        kind = self.__dict__.get("_kind_obj")
        if kind is None or kind.target is not self._backend:
            from qjm.kinds import kind_by_name

            kind = self.__dict__["_kind_obj"] = kind_by_name(self._kind_name, self._backend)
        return kind

    def _load_from_store(self) -> None:
        """For a set retrieved from the store: its jobs and what is kept of their outcomes
        (status, error, state) now, reading job rows only; each record is read on first use
        (``results()`` reads them all in one sweep)."""
        rows = self._store.jobs(self._id)
        for idx, (job_id, status, error) in rows.items():
            if not isinstance(idx, int) or not 0 <= idx < len(self._managed):
                continue
            mj = self._managed[idx]
            mj.job_id = job_id
            mj.submit_error = error
            mj.stored_status = JobStatus[status] if status in JobStatus.__members__ else None
            if status == SUBMITTING and job_id is None:
                mj.uncertain = True
                mj.submit_error = (
                    "uncertain: the submitting process ended while this job was being "
                    "submitted; it may or may not exist on the backend "
                    "(resume(resubmit_uncertain=True) submits it again)"
                )
        for idx, (status, error, has_record, state) in self._store.kept_outcomes(self._id).items():
            if not 0 <= idx < len(self._managed) or status not in JobStatus.__members__:
                continue
            mj = self._managed[idx]
            if mj.outcome is None:
                mj.outcome = StoredOutcome(
                    JobStatus[status], error, has_record, state, self._record_loader(idx)
                )
        for idx, history in self._store.attempts(self._id).items():
            if isinstance(idx, int) and 0 <= idx < len(self._managed):
                self._managed[idx].history = history
        for idx, times in self._store.job_times(self._id).items():
            if isinstance(idx, int) and 0 <= idx < len(self._managed):
                self._managed[idx].times = times
        for mj in self._managed:
            if mj.job_id is None and mj.submit_error is None:
                mj.never_started = True
                mj.submit_error = (
                    "never submitted (the submitting process ended first; resume() submits it)"
                )
            mj.submitted.set()  # (no listener yet)
        self._retrieved = True

    def _record_loader(self, idx: int) -> Callable[[], Any]:
        store, job_set_id = self._store, self._id

        def load() -> Any:
            return store.records(job_set_id, [idx]).get(idx)

        return load

    def _ensure_loaded(self) -> None:
        """What is kept of a retrieved set is read with its jobs (records on first use)."""

    def _load_records(self) -> None:
        """Read, in one sweep, every kept record not read yet. A record that does not read back
        (a damaged file) leaves its job without an outcome: it is fetched again if it can be."""
        unread = [
            mj
            for mj in self._managed
            if isinstance(mj.outcome, StoredOutcome) and not mj.outcome.loaded
        ]
        if not unread:
            return
        records = self._store.records(
            self._id, None if len(unread) > 500 else [m.index for m in unread]
        )
        for mj in unread:
            outcome = mj.outcome
            if not isinstance(outcome, StoredOutcome) or outcome.loaded:
                continue
            record = records.get(mj.index)
            if record is None:
                mj.outcome = None  # does not read back: as if never fetched
                continue
            if isinstance(record, PooledRecord) and outcome.state == DONE:
                # the store says every experiment succeeded: nothing to read to know it
                record._success = True
                record._successes = np.ones(mj.end_index - mj.start_index + 1, dtype=bool)
            outcome.record = record

    # -- identity --------------------------------------------------------------------------------

    def job_set_id(self) -> str:
        """The id of this job set: stable across processes, the key to retrieve it later."""
        return self._id

    def name(self) -> str | None:
        """The name given to :meth:`JobManager.run`."""
        return self._name

    def tags(self) -> list[str]:
        """The tags given to :meth:`JobManager.run`."""
        return list(self._tags)

    def backend_name(self) -> str | None:
        return self._backend_name

    def update_name(self, name: str) -> str:
        """Rename the job set (in the store too); returns the new name."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {name!r}")
        self._store.update_job_set(self._id, name=name)
        self._name = name
        return name

    def update_tags(
        self,
        replacement_tags: list[str] | None = None,
        additional_tags: list[str] | None = None,
        removal_tags: list[str] | None = None,
    ) -> list[str]:
        """Change the tags of the job set (in the store too), as the old job manager did:
        ``replacement_tags`` replaces them all, then ``additional_tags`` are added and
        ``removal_tags`` removed. Returns the new tags."""
        from qjm.validation import check_tags

        tags = list(self._tags) if replacement_tags is None else check_tags(replacement_tags)
        for tag in check_tags(additional_tags):
            if tag not in tags:
                tags.append(tag)
        removal = set(check_tags(removal_tags))
        tags = [t for t in tags if t not in removal]
        self._store.update_job_set(self._id, tags=tags)
        self._tags = tags
        return list(tags)

    def managed_jobs(self) -> list[ManagedJob]:
        """The :class:`ManagedJob` of every job, in order."""
        self._ensure_loaded()
        return list(self._managed)

    def __len__(self) -> int:
        return len(self._managed)

    def __repr__(self) -> str:
        return (
            f"ManagedJobSet(id={self._id!r}, name={self._name!r}, jobs={len(self._managed)}, "
            f"experiments={self._plan.n_experiments})"
        )

    def _repr_html_(self) -> str:
        """The notebook view (:mod:`qjm.notebook`): from what is known, no backend call."""
        from qjm.notebook import job_set_html

        return job_set_html(self)

    def plot_timeline(self, path: Any = None) -> Any:
        """A timeline of the jobs (:func:`qjm.plots.timeline`): one bar per job from submission
        through queue and run to its result kept, coloured by outcome, retries and failures
        marked; saved to ``path`` when given. Returns the matplotlib Figure (``qjm[plot]``)."""
        from qjm.plots import timeline

        self._ensure_loaded()
        return timeline(self, path)

    # -- the pool -----------------------------------------------------------------------------

    def _pool(self) -> DaemonPool:
        with self._lock:
            if self._executor is None:
                self._executor = DaemonPool(
                    max_workers=self._max_workers, thread_name_prefix=f"qjm-{self._id[:8]}"
                )
                # a set nobody holds any more stops its threads (they hold nothing of it)
                weakref.finalize(self, self._executor.shutdown, False)
            return self._executor

    def _set_max_workers(self, max_workers: int) -> None:
        """Use ``max_workers`` threads from now on (a pool already running is replaced once idle)."""
        with self._lock:
            if max_workers == self._max_workers:
                return
            self._max_workers = max_workers
            old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=False)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Stop the thread pool of this job set.

        Args:
            wait: wait for running submissions and fetches to finish.
            cancel_futures: cancel the submissions and fetches that have not started; jobs whose
                submission is cancelled are reported as never submitted.
        """
        self._stop_submitting.set()
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=cancel_futures)
        if self._transpiler is not None:
            self._transpiler.shutdown()
        self._mark_unsubmitted("the job set was shut down before this job was submitted")

    def _mark_unsubmitted(self, why: str) -> None:
        for mj, future in zip(self._managed, self._submit_futures):
            if future.cancelled() and not mj.submitted.is_set():
                mj.submit_error = why
                self._store_job(mj)
                self._submission_ended(mj)

    # -- submission -----------------------------------------------------------------------------

    def _submit_all(self, circuits: list, run_options: dict[str, Any]) -> None:
        """Start submitting every job on the pool; returns at once. With a store file, what
        every job runs is written to the journal, job after job on a thread of its own, and
        each job is submitted as soon as its own entry is committed (not before), while later
        jobs' entries are still being written."""
        self._work = circuits
        self._run_options = run_options
        if self._transpiler is not None:
            # every job's circuits go to the transpiling processes now, in job order; each job
            # is journaled (its transpiled circuits) and submitted as soon as its own are done
            for mj in self._managed:
                self._transpiled[mj.index] = self._transpiler.submit(self._items_of(mj))
        elif self._store.path != ":memory:" and self._kind().work_bytes([]) is not None:
            with self._journal_cond:
                self._unjournaled = {mj.index for mj in self._managed}
                self._journal_writing = True
            threading.Thread(
                target=self._write_journal, name=f"qjm-{self._id[:8]}-journal", daemon=True
            ).start()
        first = self._managed if self._max_active is None else self._managed[: self._max_active]
        self._waiting.extend(self._managed[len(first) :])
        for mj in first:
            mj.holds_slot = True
            self._submit_later(mj)
        if self._waiting:
            threading.Thread(
                target=self._watch, name=f"qjm-{self._id[:8]}-watch", daemon=True
            ).start()

    def _slot_freed(self, mj: ManagedJob) -> None:
        """A job that held one of the ``max_active_jobs`` slots is final (or was never
        submitted): the next waiting job is submitted in its place."""
        with self._slots_lock:
            if not mj.holds_slot:
                return
            mj.holds_slot = False
            if not self._waiting or self._stop_submitting.is_set():
                return
            nxt = self._waiting.popleft()
            nxt.holds_slot = True
        self._submit_later(nxt)

    def _watch(self) -> None:
        """While jobs wait for a slot: look at the active jobs on the pool (keeping the results
        of those that finish, which frees their slots), backing off to what a status costs. One
        thread, sleeping between looks: no busy loop, no thread per waiting job."""
        pause = _POLL_CAP_MIN
        while self._waiting and not self._stop_submitting.is_set():
            looks = []
            for mj in self._managed:
                if mj.holds_slot and mj.job is not None and mj.outcome is None:
                    if mj.fetch_future is None or mj.fetch_future.done():
                        mj.fetch_future = self._pool().submit(
                            self._fetch_one, mj, False, first=True
                        )
                    looks.append(mj.fetch_future)
            if looks:
                wait(looks, timeout=pause, return_when=FIRST_COMPLETED)
            if self._stop_submitting.wait(pause):
                return
            pause = min(pause * 1.5, _POLL_CAP_MAX)

    def _write_journal(self) -> None:
        """The journal's thread: each job's work (QPY), in job order, queued to the store's
        writer, which commits many entries per transaction; each job is submitted once its own
        entry is committed, while the next ones are written. At most :data:`_JOURNAL_AHEAD`
        entries (and about :data:`_JOURNAL_AHEAD_BYTES`) wait for their commit at once. It stops at the first failure (each job not yet
        written then tries once more itself, see :meth:`_journaled`) and when the set is
        cancelled or shut down."""
        kind = self._kind()
        cond = self._journal_cond
        # entries queued and not yet committed (or failed), their bytes, and whether this
        # thread waits for room to queue the next one
        pending = {"n": 0, "bytes": 0, "waiting": False}

        def room() -> bool:
            return pending["n"] == 0 or (
                pending["n"] < _JOURNAL_AHEAD and pending["bytes"] < _JOURNAL_AHEAD_BYTES
            )

        def committed(index: int, nbytes: int, error: StoreError | None) -> None:
            with cond:  # on the writer's thread
                pending["n"] -= 1
                pending["bytes"] -= nbytes
                if error is None:
                    self._unjournaled.discard(index)
                elif self._journal_error is None:
                    self._journal_error = error
                if (
                    error is not None
                    or index in self._journal_waiters  # a job waits for this entry
                    or (pending["waiting"] and room())  # this thread waits for room
                ):
                    cond.notify_all()

        try:
            for mj in self._managed:
                # room first, then the next entry: large entries (QPY of many circuits) go one
                # at a time, leaving the interpreter to the submissions between them; small ones
                # are queued many at once and committed together
                with cond:
                    pending["waiting"] = True
                    while not room() and self._journal_error is None:
                        cond.wait()
                    pending["waiting"] = False
                if self._stop_submitting.is_set() or self._journal_error is not None:
                    break
                work = kind.work_bytes(self._work[mj.start_index : mj.end_index + 1])
                with cond:
                    pending["n"] += 1
                    pending["bytes"] += len(work)
                try:
                    self._store.record_work(
                        self._id,
                        [(mj.index, work)],
                        wait=False,
                        callback=partial(committed, mj.index, len(work)),
                    )
                except BaseException:
                    with cond:
                        pending["n"] -= 1
                        pending["bytes"] -= len(work)
                    raise
        except Exception as exc:  # noqa: BLE001 - each job not written says why
            with cond:
                if self._journal_error is None:
                    self._journal_error = exc
        finally:
            with cond:
                pending["waiting"] = True
                while pending["n"] > 0:  # what was queued is committed, or failed, first
                    cond.wait()
                self._journal_writing = False
                cond.notify_all()

    def _journaled(self, mj: ManagedJob, circuits: list) -> None:
        """Return once what ``mj`` runs is committed to the journal: written by the journal's
        thread, or here when that thread stopped before it (a failure, a cancel).

        Raises:
            JobManagerInvalidStateError: it cannot be written (the job is not submitted).
        """
        # a circuits job goes once its own entry is in; a primitive job once every entry is (a
        # set of PUBs is resumed from its journal only, while circuits can be given again)
        whole = self._kind_name != "circuits"
        with self._journal_cond:
            if self._journal_writing and (whole or mj.index in self._unjournaled):
                self._journal_waiters.add(mj.index)  # woken when its entry is committed
                try:
                    while self._journal_writing and (whole or mj.index in self._unjournaled):
                        self._journal_cond.wait()
                finally:
                    self._journal_waiters.discard(mj.index)
            if mj.index not in self._unjournaled:
                return
        try:
            self._store.record_work(self._id, [(mj.index, self._kind().work_bytes(circuits))])
        except Exception as exc:
            error = self._journal_error if self._journal_error is not None else exc
            raise JobManagerInvalidStateError(
                f"not submitted: the store could not record what the job runs ({_describe(exc)})"
                + (f"; the journal stopped at: {_describe(error)}" if error is not exc else "")
            ) from exc
        with self._journal_cond:
            self._unjournaled.discard(mj.index)

    def _who(self, mj: ManagedJob) -> str:
        """A job, as the log names it: its set's id (first 8 characters), index and items."""
        return f"job set {self._id[:8]} job {mj.index} ({self._items(mj)})"

    def _submission_key(self, mj: ManagedJob) -> str:
        """The key of this submission of a job: the same for every attempt (and after a crash)
        until the job gets a job id, so a service that made the job before its answer was lost
        gives that job back instead of running it twice; a new one after each job id (a job
        the user asked to run again with ``retry_failed()``)."""
        runs = len({job_id for _, job_id, _ in mj.history if job_id is not None})
        return f"qjm-{self._id}-{mj.index}-{runs}"

    def _tag(self, mj: ManagedJob) -> str:
        """The tag a job carries on backends that list jobs by tag: its set id and index."""
        return f"qjm-{self._id}-{mj.index}"

    def _submit_later(self, mj: ManagedJob, items: list | None = None) -> None:
        kind = self._kind()
        options = kind.tag_options(kind.job_options(self._run_options, mj), self._tag(mj))
        chunk = self._items_of(mj) if items is None else items
        future = self._pool().submit(self._submit_one, mj, chunk, options)
        if mj.index < len(self._submit_futures):
            self._submit_futures[mj.index] = future
        else:
            self._submit_futures.append(future)

    def _submit_one(self, mj: ManagedJob, circuits: Any, options: dict[str, Any]) -> None:
        attempt = 0
        try:
            if isinstance(circuits, Future):  # transpiled on the way in
                try:
                    circuits = self._transpiler.result(circuits)
                except Exception as exc:
                    raise JobManagerInvalidStateError(
                        f"not submitted: transpiling its circuits failed: {_describe(exc)}"
                    ) from exc
                self._transpiled[mj.index] = circuits
                kind = self._kind()
                if self._store.path != ":memory:" and kind.work_bytes([]) is not None:
                    self._store.record_work(self._id, [(mj.index, kind.work_bytes(circuits))])
            else:
                # the journal: what the job runs, then that it is being submitted, before it is
                self._journaled(mj, circuits)
            self._store.record_intent(self._id, mj.index)
            while True:
                attempt += 1
                try:
                    job = self._kind().submit(circuits, options, self._submission_key(mj))
                    break
                except Exception as exc:
                    retry_after = getattr(exc, "retry_after", None)
                    if isinstance(retry_after, (int, float)) and retry_after >= 0:
                        # a busy service says when to come back: not counted as an attempt
                        attempt -= 1
                        wait_s = min(max(float(retry_after), 0.01), 60.0)
                        mj.submit_waiting = f"backend busy, retrying after {wait_s:g} s"
                        logger.info(
                            "%s: backend busy, submitting again in %.3g s", self._who(mj), wait_s
                        )
                    elif attempt < self._retry.max_attempts and self._retry.retries(
                        # a keyed submission made again gets the job it may have made
                        exc,
                        submitting=not self._kind().takes_key(),
                    ):
                        wait_s = self._retry.delay(attempt)
                        mj.submit_waiting = (
                            f"submission attempt {attempt} failed ({_describe(exc)}); "
                            f"retrying in {wait_s:.2g} s"
                        )
                        self._note(mj, None, f"submit: {_describe(exc)}")
                        logger.warning(
                            "%s: submission attempt %d failed (%s); retrying in %.2g s",
                            self._who(mj),
                            attempt,
                            _describe(exc),
                            wait_s,
                        )
                    else:
                        raise
                    if self._stop_submitting.wait(wait_s):
                        raise JobManagerInvalidStateError(
                            "not submitted: the job set was cancelled or shut down while "
                            f"waiting to submit again ({_describe(exc)})"
                        ) from exc
            mj.times = {"submitted": time.time()}  # this attempt's timings start here
            mj.submit_waiting = None
            self._hold(mj, job)
            mj.job_id = str(job.job_id())
            self._note(mj, mj.job_id, None)
            logger.info(
                "%s submitted: job id %s, %d %s",
                self._who(mj),
                mj.job_id,
                len(circuits),
                "circuits" if self._layout is None else "PUBs",
            )
        except Exception as exc:  # noqa: BLE001 - one failed submission must not stop the others
            mj.job = None
            mj.times = {}  # no attempt running (an earlier one's timings are in its history)
            mj.submit_waiting = None
            mj.submit_error = _describe(exc)
            self._note(mj, None, f"submit: {_describe(exc)}")
            logger.warning("%s not submitted: %s", self._who(mj), mj.submit_error)
        finally:
            try:
                self._store_job(mj)
            finally:
                self._submission_ended(mj)
                if mj.job is None:
                    self._slot_freed(mj)

    def retry_failed(self) -> list[int]:
        """Submit again the jobs that ended in ERROR or were never submitted (never one that may
        still be running); returns their indices. Each job keeps its earlier attempts in its
        history (``report(detailed=True)``).

        Raises:
            JobManagerInvalidStateError: the set was retrieved from the store, which does not
                keep what its jobs run; retry them in the process that ran the set.
        """
        self._wait_submitted(math.inf)
        self._ensure_loaded()
        if self._backend is not None and not self._attached:
            self._attach()  # a retrieved set: which jobs exist on the backend
        failed = [
            mj
            for mj in self._managed
            if (mj.job is None and mj.submit_error and mj.outcome is None)
            or (mj.job is None and mj.unreachable and mj.outcome is None)
            or (mj.outcome is not None and mj.outcome.status == JobStatus.ERROR)
        ]
        if not failed:
            return []
        if self._work is None:
            self._check_resubmittable("retry_failed()")
        items = [self._items_of(mj) for mj in failed]  # all known before any is submitted
        self._started()
        self._stop_submitting.clear()
        for mj, work in zip(failed, items):
            self._note(mj, mj.job_id, f"retried: {mj.error_message()}")
            mj.job = None
            mj.job_ref = None
            mj.job_id = None
            mj.submit_error = None
            mj.fetch_error = None
            mj.unreachable = False
            mj.outcome = None
            mj.fetch_attempts = 0
            mj.uncertain = mj.never_started = False
            mj.submitted.clear()
            self._submit_later(mj, work)
        return [mj.index for mj in failed]

    def _items_of(self, mj: ManagedJob) -> list:
        """What job ``mj`` runs: from this process's memory, or from the journal in the store
        (a retrieved set).

        Raises:
            JobManagerInvalidStateError: neither has it.
        """
        transpiled = self._transpiled.get(mj.index)
        if transpiled is not None:
            return transpiled  # a list, or the future of one (transpiled on the way in)
        if self._work is not None:
            return self._work[mj.start_index : mj.end_index + 1]
        blob = self._store.job_work(self._id, mj.index)
        if blob is None:
            raise JobManagerInvalidStateError(
                f"cannot submit job {mj.index} again: the store holds no record of what it runs "
                "(the store is ':memory:', or the process ended before the journal had recorded "
                "this job: run its experiments again)"
            )
        try:
            return self._kind().load_work(blob)
        except Exception as exc:
            raise JobManagerInvalidStateError(
                f"cannot submit job {mj.index} again: what the store recorded for it does not "
                f"read back ({_describe(exc)})"
            ) from exc

    def _note(self, mj: ManagedJob, job_id: str | None, what: str | None) -> None:
        """One entry of a job's attempt history (a submission when ``what`` is None, else what
        went wrong), kept in memory and in the store."""
        entry = (time.time(), job_id, what)
        mj.history.append(entry)
        try:  # queued: the history is kept in memory too; the result is what matters
            self._store.add_attempt(self._id, mj.index, *entry, wait=False)
        except StoreError as exc:
            logger.warning("job %d's history is kept in memory only: %s", mj.index, exc)

    def _store_job(self, mj: ManagedJob) -> None:
        """A job's row (queued; a failure is logged)."""
        outcome = mj.outcome
        status = outcome.status.name if outcome is not None else None
        kept = outcome_state(outcome) if outcome is not None else None
        try:
            self._store.set_job(
                self._id,
                mj.index,
                mj.job_id,
                status,
                mj.submit_error,
                dict(mj.times),
                kept=kept,
                wait=False,
                callback=_log_store_failure,
            )
        except StoreError as exc:
            logger.warning("job %d's row is not in the store: %s", mj.index, exc)

    def _submission_ended(self, mj: ManagedJob) -> None:
        if mj.index < len(self._submit_futures):  # its future is let go (a set holds no
            self._submit_futures[mj.index] = _ENDED  # objects per job it no longer needs)
        mj.submitted.set()
        for listener in list(self._submit_listeners):
            listener(mj)

    def _wait_submitted(self, deadline: float) -> None:
        for mj in self._managed:
            remaining = deadline - time.monotonic()
            if not mj.submitted.wait(None if math.isinf(remaining) else max(0.0, remaining)):
                waiting = [m for m in self._managed if not m.submitted.is_set()]
                raise JobManagerTimeoutError(
                    f"timed out while {len(waiting)} job(s) were still being submitted: "
                    + self._ranges(waiting),
                    missing=[(m.index, m.start_index, m.end_index) for m in waiting],
                )
        self._store.flush()  # submission ended: the journal holds every job id

    def _attach(self, finished: bool = False) -> None:
        """For a set retrieved from the store: reattach its jobs to the backend by job id; the
        jobs whose results are kept only when ``finished`` (``jobs()``, ``results(refresh=True)``),
        so that a finished set costs the backend nothing.

        Uses ``backend.retrieve_jobs(ids)`` (one look-up for many jobs) where the backend has it,
        else ``backend.retrieve_job(id)`` for each job, on the pool.
        """
        self._ensure_loaded()
        if self._attached and (self._attached_finished or not finished):
            return
        self._attached = True
        self._attached_finished = self._attached_finished or finished
        todo = [
            mj
            for mj in self._managed
            if mj.job is None and mj.job_id and (finished or mj.outcome is None)
        ]
        if not todo:
            return
        for mj in todo:
            mj.unreachable = False
        kind = self._kind()
        try:
            found = kind.retrieve_jobs([mj.job_id for mj in todo])
        except Exception as exc:  # noqa: BLE001
            for mj in todo:
                mj.fetch_error = f"not reattached: {_describe(exc)}"
            return
        if found is not None:
            for mj, job in zip(todo, found):
                if job is None:
                    mj.fetch_error = "not reattached: the backend does not know this job id"
                if job is not None:
                    self._hold(mj, job)
            return

        def attach(mj: ManagedJob) -> None:
            try:
                self._hold(mj, kind.retrieve_job(mj.job_id))
            except LookupError as exc:
                # the target cannot look jobs up at all (a local simulator or primitive, whose
                # jobs ended with the process that ran them): retry_failed() runs it again
                mj.fetch_error = str(exc)
                mj.unreachable = self._backend is not None
            except Exception as exc:  # noqa: BLE001
                mj.fetch_error = f"not reattached: {_describe(exc)}"

        list(self._pool().map(attach, todo))

    # -- state ----------------------------------------------------------------------------------

    def statuses(self) -> list[JobStatus | None]:
        """The status of every job; None for a job whose submission failed.

        Does not wait for submission: a job still being submitted is ``INITIALIZING``. A set
        retrieved with a backend is reattached first, so its statuses are the real ones.
        """
        if self._backend is not None and not self._attached and self._unsubmitted_done():
            self._attach()
        statuses = [mj.status() for mj in self._managed]
        self._check_finished()
        return statuses

    def _unsubmitted_done(self) -> bool:
        return all(mj.submitted.is_set() for mj in self._managed)

    def resume(
        self, resubmit_uncertain: bool = False, circuits: Sequence[QuantumCircuit] | None = None
    ) -> list[int]:
        """For a set retrieved in another process: submit the jobs that never started (and,
        with ``resubmit_uncertain``, those whose submission may or may not have reached the
        backend), from what the journal recorded; returns their indices.

        Each job is journaled just before it is submitted, so a process that died within its
        first moments may have left jobs that never started and were never journaled. Give
        ``circuits`` (the list the set was run with) to resume those too; it is checked against
        the set (its length and names) before anything is submitted.

        Raises:
            JobManagerInvalidStateError: no backend was given to ``retrieve_job_set``, or what a
                job runs or a run option was not recorded (a job never journaled and no
                ``circuits``, a ``NoiseModel``...). Nothing is submitted then.
            ValueError: ``circuits`` is not the list the set was run with.
        """
        self._ensure_loaded()
        kind = self._kind()
        for mj in self._managed:
            if mj.uncertain and mj.job is None and self._backend is not None:
                # where the backend lists jobs by tag, an uncertain job that did reach it is
                # found and reattached, not run twice
                try:
                    found = kind.find_by_tag(self._tag(mj))
                except Exception as exc:  # noqa: BLE001 - then it stays uncertain
                    mj.fetch_error = f"look-up by tag failed: {_describe(exc)}"
                    found = None
                if found is not None:
                    self._hold(mj, found)
                    mj.job_id = str(found.job_id())
                    mj.uncertain, mj.submit_error = False, None
                    self._note(mj, mj.job_id, "found by its tag after a crash")
                    self._store_job(mj)
        todo = [
            mj
            for mj in self._managed
            if mj.job is None
            and mj.outcome is None
            and (mj.never_started or (resubmit_uncertain and mj.uncertain))
        ]
        if not todo:
            return []
        self._check_resubmittable("resume()")
        if circuits is not None:
            self._check_given_circuits(circuits)
        # all known before any is submitted
        work, unrecorded = [], []
        for mj in todo:
            try:
                work.append(self._items_of(mj))
            except JobManagerInvalidStateError:
                recorded = self._store.job_work(self._id, mj.index) is not None
                if recorded or self._kind_name != "circuits":
                    raise  # recorded but unreadable, or primitive work: said as it is
                if circuits is None:
                    unrecorded.append(mj.index)
                    continue
                work.append(list(circuits[mj.start_index : mj.end_index + 1]))
                with self._journal_cond:  # journaled by its submission, before it is submitted
                    self._unjournaled.add(mj.index)
        if unrecorded:
            shown = ", ".join(map(str, unrecorded[:10])) + ("..." if len(unrecorded) > 10 else "")
            raise JobManagerInvalidStateError(
                f"resume(): {len(unrecorded)} job(s) never started and were never journaled "
                f"(jobs {shown}: the process ended while the journal was being written); give the "
                "circuits the set was run with, resume(circuits=circuits), to resume them. "
                "Nothing was submitted."
            )
        self._started()
        self._stop_submitting.clear()
        for mj, items in zip(todo, work):
            self._note(mj, None, f"resumed: {mj.submit_error}")
            mj.submit_error = None
            mj.uncertain = mj.never_started = False
            mj.submitted.clear()
            self._submit_later(mj, items)
        return [mj.index for mj in todo]

    def _check_given_circuits(self, circuits: Sequence[QuantumCircuit]) -> None:
        """``circuits`` are those the set was run with: as many, and named the same."""
        if self._kind_name != "circuits":
            raise ValueError(
                "resume(circuits=...) is for a set of circuits; this set ran "
                f"{self._kind_name} work, which is resumed from its journal only"
            )
        circuits = list(circuits)
        names = self._index.names
        if len(circuits) != len(names):
            raise ValueError(
                f"resume(circuits=...): {len(circuits)} circuits given; the set was run with "
                f"{len(names)}. Give the same list the set was run with."
            )
        for i, (circuit, name) in enumerate(zip(circuits, names)):
            if not isinstance(circuit, QuantumCircuit) or circuit.name != name:
                raise ValueError(
                    f"resume(circuits=...): circuits[{i}] is "
                    f"{getattr(circuit, 'name', type(circuit).__name__)!r}; the set ran {name!r} "
                    "there. Give the same list the set was run with."
                )

    def _check_resubmittable(self, what: str) -> None:
        if self._backend is None:
            raise JobManagerInvalidStateError(
                f"{what} needs the backend (or primitive) the set ran on: "
                "retrieve_job_set(job_set_id, backend=... / sampler=... / estimator=...)"
            )
        if self._unstored_options:
            raise JobManagerInvalidStateError(
                f"{what} cannot submit jobs again: the run options "
                + ", ".join(self._unstored_options)
                + " were kept in memory only by the process that ran the set"
            )

    def jobs(self) -> list[JobV1 | None]:
        """The backend job of every job (None where submission failed), after submission ended."""
        self._wait_submitted(math.inf)
        self._rehold(self._managed)
        self._attach(finished=True)
        return [mj.job for mj in self._managed]

    def job(self, experiment: Any) -> tuple[JobV1 | None, int]:
        """The job that ran ``experiment`` (its first shot part) and its index in that job.

        Args:
            experiment: a name, a global index or the circuit.

        Raises:
            JobManagerJobNotFound: no such experiment.
        """
        i = self._index.resolve(experiment)
        job_index, k = self._plan.locate(i)
        self._wait_submitted(math.inf)
        self._rehold([self._managed[job_index]])
        self._attach(finished=True)
        return self._managed[job_index].job, k

    def parts(self, experiment: Any) -> list[tuple[JobV1 | None, int]]:
        """Every (job, index in that job) that holds a shot part of ``experiment``, in order."""
        i = self._index.resolve(experiment)
        self._wait_submitted(math.inf)
        self._rehold([self._managed[j] for j, _ in self._plan.parts(i)])
        self._attach(finished=True)
        return [(self._managed[j].job, k) for j, k in self._plan.parts(i)]

    def cancel(self) -> None:
        """Cancel every job that has not finished, and every submission not yet started."""
        self._stop_submitting.set()
        if self._transpiler is not None:
            self._transpiler.shutdown()
        for future in self._submit_futures:
            future.cancel()
        self._mark_unsubmitted("cancelled before it was submitted")
        with self._slots_lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for mj in waiting:
            mj.submit_error = "cancelled while waiting for a slot (max_active_jobs)"
            self._store_job(mj)
            self._submission_ended(mj)
        self._wait_submitted(math.inf)
        for mj in self._managed:
            if mj.job is not None and mj.outcome is None:
                try:
                    if self._kind().status(mj.job) not in JOB_FINAL_STATES:
                        mj.job.cancel()
                except Exception as exc:  # noqa: BLE001
                    mj.fetch_error = f"cancel failed: {_describe(exc)}"

    def error_messages(self) -> str | None:
        """What went wrong, one line per failed job; None when nothing did."""
        self._ensure_loaded()
        lines = []
        for mj in self._managed:
            message = mj.error_message()
            if message:
                lines.append(
                    f"Job {mj.index} ({self._items(mj)}, job id {mj.job_id or '-'}): {message}"
                )
        return "\n".join(lines) if lines else None

    def report(self, detailed: bool = True) -> str:
        """A report of the job set: counts of jobs by state; with ``detailed``, every job.

        A job is successful only when every one of its experiments succeeded (judged by its
        kept result once fetched, by its status before). "Partially failed" jobs, whose result
        holds some successful experiments (``results(partial=True)`` gives them), are counted
        among the failed jobs too. Jobs that never started (a set retrieved after its process
        ended) are listed as not submitted.
        """
        self._ensure_loaded()
        statuses = self.statuses()
        n = len(statuses)
        count = {s: sum(1 for x in statuses if x == s) for s in JobStatus}
        states = [
            job_state(status, mj.outcome, submitted=not mj.never_started)
            for mj, status in zip(self._managed, statuses)
        ]
        partial = states.count(PARTIAL)
        failed = states.count(FAILED) + partial
        not_submitted = states.count(NOT_SUBMITTED)
        pending = (
            count[JobStatus.INITIALIZING] + count[JobStatus.VALIDATING] + count[JobStatus.QUEUED]
        )
        lines = [
            f"Job set name: {self._name}",
            f"          ID: {self._id}",
            f"        tags: {self._tags}",
            f"     backend: {self._backend_name}",
            (
                f"        PUBs: {len(self._layout['shapes'])} ({self._kind_name}), in "
                f"{self._plan.n_experiments} pieces"
                if self._layout is not None
                else f" experiments: {self._plan.n_experiments}"
            )
            + (f" in {self._plan.n_parts} shot parts" if self._plan.n_parts > 1 else ""),
            "Summary report:",
            f"             Total jobs: {n}",
            f"        Successful jobs: {states.count(DONE)}",
            f"            Failed jobs: {failed}",
            f"  Partially failed jobs: {partial}"
            + (" (among the failed; their other experiments have data)" if partial else ""),
            f"         Cancelled jobs: {states.count(CANCELLED)}",
            f"           Running jobs: {count[JobStatus.RUNNING]}",
            f"           Pending jobs: {pending}",
        ]
        if not_submitted:
            lines.append(f"     Not submitted jobs: {not_submitted} (resume() submits them)")
        lines.append(f"  retry policy: {self._retry.describe()}")
        if self._unstored_options:
            lines.append(
                "  run options kept in memory only (not in the store): "
                + ", ".join(self._unstored_options)
            )
        if detailed:
            lines += ["", "Detail report:"]
            for mj, status in zip(self._managed, statuses):
                lines.append(
                    f"  experiments: {mj.start_index}-{mj.end_index}"
                    if self._layout is None
                    else f"  {self._items(mj)}"
                )
                if self._plan.n_parts > 1:
                    lines.append(
                        f"    shot part: {mj.part + 1} of {self._plan.n_parts} ({mj.shots} shots)"
                    )
                lines.append(f"    job index: {mj.index}")
                lines.append(f"    job ID: {mj.job_id}")
                if mj.seed is not None:
                    label = "seed_simulator" if self._layout is None else "shot part seed"
                    lines.append(f"    {label}: {mj.seed}")
                label = (
                    status.name
                    if status is not None
                    else "UNCERTAIN"
                    if mj.uncertain
                    else "NOT SUBMITTED"
                    if mj.job_id is None
                    else "UNKNOWN (not reattached)"
                )
                lines.append(f"    status: {label}")
                message = mj.error_message()
                if message:
                    lines.append(f"    error: {message}")
                for when, job_id, what in mj.history:
                    if what is not None:
                        stamp = time.strftime("%H:%M:%S", time.localtime(when))
                        lines.append(f"    attempt at {stamp}: {what} (job ID {job_id or '-'})")
                    if self._layout is not None:
                        lines.append(
                            "    partial results: none (a primitive job returns all of its PUBs "
                            "or none; partial=True changes nothing here)"
                        )
        return "\n".join(lines)

    # -- results --------------------------------------------------------------------------------

    def results(
        self,
        timeout: float | None = None,
        partial: bool = False,
        refresh: bool = False,
        progress: bool = False,
    ) -> Any:
        """The results of every job, fetched in parallel against one deadline.

        A result is kept (in memory and in the store) the moment it arrives; a later call waits only
        for the jobs still missing and never asks the backend again for a kept result. Every
        result this returns is committed to the store before it returns (a result the store
        could not take is kept in memory, and ``error_messages()`` says so).

        Args:
            timeout: seconds for the whole call; None waits for ever, 0 does not wait.
            partial: also make available the experiments that succeeded inside failed jobs.
            refresh: ask the backend again even for results already kept.
            progress: show a progress bar of jobs done (tqdm).

        Returns:
            The results of the whole set; ``success`` is False when anything is missing.

        Raises:
            ValueError: ``timeout`` is negative or NaN.
            JobManagerTimeoutError: the deadline passed first; it names the unfinished jobs.
        """
        timeout = check_timeout(timeout)
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        self._load_records()  # a retrieved set: its kept records, in one sweep
        if refresh:
            self._wait_submitted(deadline)
            self._rehold(self._managed)
        self._attach(finished=refresh)
        if self._retrieved:
            self._confirm_kept()
        # every job with a result to fetch, and every job still being submitted: each is
        # fetched as soon as its submission ends (not once all have)
        wanted = [
            mj
            for mj in self._managed
            if (refresh or mj.outcome is None) and (mj.job is not None or not mj.submitted.is_set())
        ]
        if wanted:
            try:
                self._fetch(wanted, deadline, refresh, progress)
            except JobManagerTimeoutError:
                self._store.flush()  # what arrived is committed before the caller hears
                raise
        self._store.flush()  # a result counts as kept once committed (or said not to be)
        results = self._results(partial)
        self._check_finished()
        return results

    def _results(self, partial: bool) -> Any:
        records = []
        for mj in self._managed:
            outcome = mj.outcome
            usable = outcome is not None and outcome.record is not None and (outcome.ok or partial)
            records.append(outcome.record if usable else None)
        return self._kind().results(self, records, partial)

    def _fetch(
        self, wanted: list[ManagedJob], deadline: float, refresh: bool, progress: bool
    ) -> None:
        """Fetch the results of ``wanted`` on the pool until they are all final or the deadline.

        Each pool task takes one look at one job (its status, then its result once final), so a
        job that never finishes never holds a thread. A look still running when the deadline
        passes goes on in the background and keeps what it fetches; looks not yet started are
        cancelled.
        """
        from tqdm.auto import tqdm

        pool = self._pool()
        remaining = {mj.index: mj for mj in wanted}
        backoff = dict.fromkeys(remaining, _POLL_FIRST)
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()  # jobs whose look has ended
        watching: dict[int, Future] = {}
        due: list[tuple[float, int]] = []  # (when, job): looks to start, soonest first
        # rung by every look that ends and every submission: one event to wait on, whatever the
        # number of jobs (cleared before the queues are read, so no ring is missed)
        bell = threading.Event()

        def ended(index: int) -> None:
            finished.put(index)
            bell.set()

        def watch(index: int, future: Future) -> None:
            watching[index] = future
            future.add_done_callback(lambda _, index=index: ended(index))

        submitting: set[int] = set()  # jobs whose submission has not ended yet
        arrived: queue.SimpleQueue[int] = queue.SimpleQueue()  # ... and now has

        def submitted(mj: ManagedJob) -> None:
            arrived.put(mj.index)
            bell.set()

        self._submit_listeners.append(submitted)  # before looking: no submission is missed
        for mj in wanted:
            if not mj.submitted.is_set():
                submitting.add(mj.index)
            elif mj.fetch_future is not None and not mj.fetch_future.done():
                watch(mj.index, mj.fetch_future)  # a look started by an earlier call: adopted
            else:
                due.append((0.0, mj.index))
        heapq.heapify(due)
        bar = tqdm(
            total=len(self._managed),
            initial=len(self._managed) - len(wanted),
            unit="job",
            disable=not progress,
            desc=self._name or "jobs",
        )
        try:
            while remaining:
                progressed = False
                bell.clear()
                while submitting:
                    try:
                        index = arrived.get_nowait()
                    except queue.Empty:
                        break
                    if index not in submitting:
                        continue
                    submitting.discard(index)
                    if remaining[index].job is None:  # its submission failed: nothing to fetch
                        del remaining[index]
                        bar.update(1)
                        progressed = True
                    else:
                        heapq.heappush(due, (0.0, index))
                now = time.monotonic()
                while due and due[0][0] <= now:
                    index = heapq.heappop(due)[1]
                    mj = remaining.get(index)
                    if mj is not None and index not in watching:
                        mj.fetch_future = pool.submit(self._fetch_one, mj, refresh)
                        watch(index, mj.fetch_future)
                while True:
                    try:
                        index = finished.get_nowait()
                    except queue.Empty:
                        break
                    future = watching.get(index)
                    if future is None or not future.done():
                        continue  # not the look this call is waiting for
                    del watching[index]
                    found = _NOT_READY if future.cancelled() else future.result()
                    mj = remaining[index]
                    if mj.fetch_future is future:
                        mj.fetch_future = None  # ended and read: let go
                    if found == _NOT_READY:
                        when = max(time.monotonic() + backoff[index], mj.retry_at)
                        heapq.heappush(due, (when, index))
                        cap = min(
                            max(_POLL_CAP_MIN, _POLL_COST_FACTOR * mj.status_seconds),
                            _POLL_CAP_MAX,
                        )
                        backoff[index] = min(backoff[index] * 1.5, cap)
                    else:
                        del remaining[index]
                        bar.update(1)
                        progressed = True
                now = time.monotonic()
                if not remaining or now >= deadline:
                    break
                if progressed:
                    continue
                wake = min(deadline, due[0][0] if due else math.inf)
                # bounded waits: Ctrl-C is seen at once, and nothing waits for ever unwoken
                pause = min(max(0.0, wake - now), 1.0)
                if watching or submitting:
                    bell.wait(pause)
                elif pause:
                    time.sleep(pause)
        finally:
            self._submit_listeners.remove(submitted)
            # on the deadline and on KeyboardInterrupt: cancel the looks not yet started
            for future in watching.values():
                future.cancel()
            bar.close()
        if submitting:
            waiting = [m for m in self._managed if not m.submitted.is_set()]
            if waiting:
                raise JobManagerTimeoutError(
                    f"timed out while {len(waiting)} job(s) were still being submitted: "
                    + self._ranges(waiting),
                    missing=[(m.index, m.start_index, m.end_index) for m in waiting],
                )
        if remaining:
            late = sorted(remaining.values(), key=lambda m: m.index)
            raise JobManagerTimeoutError(
                f"timed out waiting for {len(late)} of {len(self._managed)} job(s): "
                + self._ranges(late)
                + ". Results that arrived are kept; call results() again to wait for the rest.",
                missing=[(m.index, m.start_index, m.end_index) for m in late],
            )

    def _fetch_one(self, mj: ManagedJob, refresh: bool) -> str:
        """One look at a job: its status, and its result when it is final. Runs on the pool.
        Looks at one job never overlap (a result served once is asked for once)."""
        with mj.fetch_lock:
            if mj.outcome is not None and not refresh:
                return _FINAL
            return self._look(mj, refresh)

    def _look(self, mj: ManagedJob, refresh: bool) -> str:
        job = mj.job
        started = time.monotonic()
        try:
            status = self._kind().status(job)
        except Exception as exc:  # noqa: BLE001 - try again at the next poll
            mj.fetch_error = f"status query failed: {_describe(exc)}"
            return _NOT_READY
        finally:
            mj.status_seconds = time.monotonic() - started
        mj.saw(status)  # first seen running / final (in memory; stored with the job's row)
        if status not in JOB_FINAL_STATES:
            return _NOT_READY
        started = time.monotonic()
        try:
            record = self._kind().fetch(job, status)
            outcome = JobOutcome(status, record)
        except Exception as exc:  # noqa: BLE001
            if mj.outcome is not None and refresh:
                mj.fetch_error = f"refresh failed, kept the earlier result: {_describe(exc)}"
                return _FINAL
            if status == JobStatus.DONE:
                mj.fetch_error = _describe(exc)
                mj.fetch_attempts += 1
                if mj.fetch_attempts < self._retry.max_attempts and self._retry.retries(exc):
                    # fetched again at a later poll, within the caller's deadline
                    self._note(mj, mj.job_id, f"fetch: {_describe(exc)}")
                    mj.retry_at = time.monotonic() + self._retry.delay(mj.fetch_attempts)
                    logger.warning(
                        "%s: fetching its result failed (attempt %d: %s); trying again in %.2g s",
                        self._who(mj),
                        mj.fetch_attempts,
                        _describe(exc),
                        mj.retry_at - time.monotonic(),
                    )
                    return _NOT_READY
                logger.warning(
                    "%s: its result could not be fetched: %s", self._who(mj), _describe(exc)
                )
                return _FAILED
            outcome = JobOutcome(status, None, _describe(exc))
        self._keep(mj, outcome)
        logger.info(
            "%s fetched: %s in %.3f s", self._who(mj), status.name, time.monotonic() - started
        )
        if not outcome.ok:
            logger.warning("%s did not succeed: %s", self._who(mj), mj.error_message())
        return _FINAL

    def _hold(self, mj: ManagedJob, job: Any) -> None:
        """``job`` is ``mj``'s backend job; where the backend names its result readers (a result
        served once), the reader is named after the job's place in the set, the same in any
        process."""
        self._kind().name_reader(job, self._tag(mj))
        mj.job = job

    def _release(self, mj: ManagedJob, kept: bool = False) -> None:
        """The result is committed: a target that serves it once may now discard it."""
        try:
            self._kind().release(mj.job, kept=kept)
            self._store.confirmed(self._id, mj.index)
        except Exception as exc:  # noqa: BLE001 - kept; confirmed by a later results()
            logger.warning("job %d: could not confirm its result: %s", mj.index, exc)

    def _confirm_kept(self) -> None:
        """For a retrieved set: confirm the results an earlier process committed to the store
        but ended before it told their backend (one look-up per such job, none otherwise)."""
        if self._backend is None or self._store.path == ":memory:":
            return
        pending = [self._managed[i] for i in self._store.unconfirmed(self._id)]
        if not pending:
            return
        for mj in pending:
            if mj.job is None and mj.job_id:
                try:
                    self._hold(mj, self._kind().retrieve_job(mj.job_id))
                except Exception as exc:  # noqa: BLE001 - tried again by a later results()
                    logger.warning(
                        "job %d: not reattached to confirm its result: %s", mj.index, exc
                    )
                    continue
            if mj.job is not None:
                self._release(mj, kept=True)

    def _keep(self, mj: ManagedJob, outcome: JobOutcome) -> None:
        """Keep a final outcome: in memory at once, and in the store by its writer, with the
        job's row in the same transaction. An outcome whose backend serves it once is committed
        before this returns, and only then is the backend told it may discard it; any other is
        queued, and ``results()`` waits for the store before it returns. A store that cannot
        take it (disk full, read-only) does not lose it: it stays in memory, and the job says it
        was not persisted (``error_messages()``, ``report()``)."""
        hold = outcome.record is not None and self._kind().needs_release(mj.job)
        mj.times.setdefault("kept", time.time())
        mj.persist_error = None
        outcome = self._pooled(mj, outcome)

        def stored(error: StoreError | None) -> None:  # on the store's writer thread
            if error is not None:
                mj.persist_error = str(error)
                logger.warning("job %d's result is kept in memory only: %s", mj.index, error)

        try:
            self._store.put_outcome(
                self._id,
                mj.index,
                outcome,
                unconfirmed=hold,
                job=(mj.job_id, mj.submit_error, dict(mj.times)),
                wait=hold,
                callback=None if hold else stored,
            )
        except Exception as exc:  # noqa: BLE001 - a StoreError, or a record that cannot be written
            mj.persist_error = str(exc)
            logger.warning("job %d's result is kept in memory only: %s", mj.index, exc)
        else:
            if hold:
                self._release(mj)
        mj.outcome = outcome
        mj.fetch_error = None
        self._drop_job(mj)
        self._slot_freed(mj)

    def _pooled(self, mj: ManagedJob, outcome: JobOutcome) -> JobOutcome:
        """A circuits job's outcome with its record as the bytes the store keeps (a
        :class:`~qjm.records.PooledRecord`, decoded again experiment by experiment as it is
        read), so the set holds each result once, compactly, and no Python object per value."""
        record = outcome.record
        if (
            record is None
            or self._kind_name != "circuits"
            or self._store.path == ":memory:"
            or not isinstance(record, JobRecord)
            or isinstance(record, PooledRecord)
        ):
            return outcome
        try:
            pooled = PooledRecord.of(record, encode_record(record))
        except Exception as exc:  # noqa: BLE001 - kept as it is; the store says why not
            logger.warning("job %d's result is kept as decoded: %s", mj.index, exc)
            return outcome
        return JobOutcome(outcome.status, pooled, outcome.error)

    def _drop_job(self, mj: ManagedJob) -> None:
        """Once a circuits job's outcome is kept, let go of the backend's job when it holds a
        copy of the result (a qiskit ``Result`` that qjm decoded into its own arrays, as an
        ``AerJob`` does): a weak reference finds it again while anyone else holds it; else it is
        reattached by id, or stood in for by a :class:`~qjm.managedjob.KeptJob`, when asked for
        (``jobs()``, ``job()``). A job that handed over its columnar record (``qjm serve``'s,
        Dask's) shares it with qjm, and is kept."""
        if self._kind_name != "circuits" or mj.job is None:
            return
        if callable(getattr(mj.job, "columnar_result", None)):
            return  # it handed over its record itself: qjm's copy is the job's, held once
        try:
            mj.job_ref = weakref.ref(mj.job)
        except TypeError:  # cannot be referenced weakly: kept
            return
        mj.job = None

    def _rehold(self, jobs: list[ManagedJob]) -> None:
        """The backend jobs of ``jobs`` whose outcome was kept and whose job was let go: the same
        object while it is alive, else the backend's job by id where it can look one up, else a
        :class:`~qjm.managedjob.KeptJob` serving the kept result."""
        lost = []
        for mj in jobs:
            if mj.job is None and mj.job_ref is not None:
                job = mj.job_ref()
                mj.job_ref = None
                if job is not None:
                    mj.job = job
                elif mj.job_id is not None and mj.outcome is not None:
                    lost.append(mj)
        if not lost:
            return
        kind = self._kind()
        try:
            found = kind.retrieve_jobs([mj.job_id for mj in lost])
        except Exception:  # noqa: BLE001 - then one by one
            found = None
        if found is None:

            def one(mj: ManagedJob) -> Any:
                try:
                    return kind.retrieve_job(mj.job_id)
                except Exception:  # noqa: BLE001 - a KeptJob stands in
                    return None

            found = list(self._pool().map(one, lost))
        for mj, job in zip(lost, found):
            if job is None:
                job = KeptJob(self._backend, mj.job_id, mj.outcome)
            else:
                self._kind().name_reader(job, self._tag(mj))
            mj.job = job

    def _check_finished(self) -> None:
        """Tell the manager when nothing of this set is under way any more (it then keeps the
        set only while someone else does)."""
        hook = self._on_finished
        if hook is None or self._waiting:
            return
        for mj in self._managed:
            if mj.outcome is None and (mj.job is not None or not mj.submitted.is_set()):
                return
        hook(self, False)

    def _started(self) -> None:
        """Work under way again (retry_failed, resume): the manager holds the set."""
        if self._on_finished is not None:
            self._on_finished(self, True)
