"""Fault-injecting backends: test your own pipeline against the failures a job manager meets.

Every backend here is a real :class:`qiskit.providers.BackendV2` whose jobs are real
:class:`qiskit.providers.JobV1` objects (no mocks). The simulation itself is delegated to an
*inner* backend (``BasicSimulator()`` unless another ``BackendV2`` such as ``AerSimulator()`` is
passed), so every ``Result`` is a genuine qiskit ``Result`` built by a real simulator. The wrappers
only add the faults: slow jobs, slow result transfers, refused submissions, jobs with failed
experiments, results that can be fetched only once, flaky networks, busy services and job limits.
qjm's own test suite runs on them.

Usage::

    import qjm
    from qjm.testing import PartialFailBackend, SlowBackend
    from qiskit_aer import AerSimulator

    # experiment "c3" fails inside its job; every job takes 0.5 s
    backend = PartialFailBackend(fail_names={"c3"}, inner=SlowBackend(delay=0.5, inner=AerSimulator()))
    job_set = qjm.JobManager(store=":memory:").run(circuits, backend=backend,
                                                   max_experiments_per_job=5, shots=100)
    results = job_set.results(timeout=60, partial=True)
    assert not results.success              # c3 is missing, the others are there
    assert backend.submitted                # the circuit names of every job created

Wrappers nest: ``OnceBackend(inner=SlowBackend(delay=0.2))`` gives slow jobs whose result can be
read once. Circuits are run as given (nothing is transpiled).

Thread safety: all counters and job state are guarded by locks; ``run`` may be called from many
threads at once (calls into one inner backend are serialised, because ``BasicSimulator`` keeps
per-run state on the instance), and ``status()``/``result()``/``cancel()`` may be called
concurrently on the same job. Nothing here is picklable.

Summary (constructor keywords; every backend also takes ``inner=None, max_circuits=None,
name=None`` and option overrides as ``**fields``):

``WrappedBackend``
    Pass-through. Jobs are whatever the inner job is (DONE at once for ``BasicSimulator``).
``SlowBackend(delay=1.0)``
    A job is QUEUED for the first half of ``delay`` seconds after submission, RUNNING for the
    second half, then reports the inner job's status (DONE). ``result(timeout=None)`` blocks
    until then and raises ``JobTimeoutError`` when ``timeout`` runs out first. ``delay`` may be a
    callable ``f(circuit_names) -> float`` and may be ``None`` (held until ``job.release()`` or
    ``backend.release_all()``). ``cancel()`` on a pending job makes it CANCELLED and returns
    True; ``result()`` of a cancelled job raises ``JobError`` (as IBM's jobs do); ``cancel()`` of
    a finished job returns False and changes nothing.
``HandoverBackend(handover=0.5)``
    Jobs are DONE at once; every ``result()`` call sleeps ``handover`` seconds (a slow network
    transfer). With ``result(timeout=t)``, ``t < handover``, it sleeps ``t`` and raises
    ``JobTimeoutError``. ``handover`` may be a callable ``f(circuit_names) -> float``.
``SubmitFailBackend(fail_names=(), fail_if=None)``
    ``run`` raises ``RuntimeError("submit refused: ...")`` when any circuit in the batch has a
    name in ``fail_names`` or ``fail_if(circuits)`` is true. No job is created.
``PartialFailBackend(fail_names=(), raise_unless_partial=False)``
    Jobs run, but experiments whose circuit name is in ``fail_names`` fail: in the job's
    ``Result`` they have ``success=False``, ``status="ERROR: ..."`` and empty data; the other
    experiments are the inner simulator's real results. Such a job's ``status()`` is ERROR and
    its ``Result.success`` is False. With ``raise_unless_partial=True`` the job behaves like
    IBM's ``IBMCircuitJob``: ``result()`` raises ``JobError`` unless called as
    ``result(partial=True)``.
``OnceBackend()``
    The first ``result()`` of each job returns the result; every later call raises
    ``JobError("result already consumed")``. ``backend.results_served`` counts results handed
    out by this instance, ``OnceBackend.total_results_served`` by all instances.
``FlakyBackend(rate, seed=0, submit_error=ConnectionRefusedError)``
    A network that fails now and then: each ``run`` is refused with ``submit_error`` (default:
    nothing reached the backend) and each ``result()`` drops the connection
    (``ConnectionError``), each with probability ``rate`` (seeded). Counters: ``refusals``,
    ``dropped``.
``BusyBackend(busy, retry_after=0.1)``
    A busy service (an HTTP 429): the first ``busy`` ``run`` calls raise :class:`BusyError`, whose
    ``retry_after`` says when to come back. ``refusals`` holds the monotonic time of each.
``JobLimitBackend(limit, delay=0.1)``
    A service with a limit on unfinished jobs: jobs are slow as ``SlowBackend(delay)``'s, and a
    ``run`` while ``limit`` jobs are unfinished raises ``RuntimeError("too many jobs pending
    ...")``. ``most`` is the most unfinished jobs it ever held at once, ``refusals`` counts
    refused runs.

Bookkeeping on every backend: ``run_calls`` (every ``run`` call, refused ones too), ``submitted``
(list of lists of circuit names, one per job created, in creation order, which is not submission
order when several threads submit), ``refused`` (same, for refused calls), ``result_calls``
(every ``result()`` call on any of its jobs), ``results_in_flight`` and
``max_results_in_flight`` (most ``result()`` calls running at the same moment),
``retrieve_job(job_id)``, ``job_ids()``. On every job: ``result_calls``, ``circuit_names``,
``inner_job``. A job's id is its inner job's id, so it equals ``result().job_id``.

Write your own fault by subclassing :class:`WrappedBackend`: override ``_check_submit(circuits,
names)`` (raise to refuse a submission) or ``_make_job(inner_job, names)``, and subclass
:class:`WrappedJob` overriding ``_result(timeout)``.
"""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable

from qiskit.circuit import QuantumCircuit
from qiskit.exceptions import QiskitError
from qiskit.providers import BackendV2, JobError, JobStatus, JobTimeoutError, JobV1, Options
from qiskit.providers.basic_provider import BasicSimulator
from qiskit.result import Result
from qiskit.result.models import ExperimentResult

__all__ = [
    "WrappedBackend",
    "WrappedJob",
    "SlowBackend",
    "SlowJob",
    "HandoverBackend",
    "HandoverJob",
    "SubmitFailBackend",
    "PartialFailBackend",
    "PartialFailJob",
    "OnceBackend",
    "OnceJob",
    "FlakyBackend",
    "FlakyJob",
    "BusyBackend",
    "BusyError",
    "JobLimitBackend",
]

# One lock per inner backend object: BasicSimulator.run stores per-run state (shots, seed,
# statevector) on the instance, so two threads must never be inside it at once.  Several
# wrappers may share one inner backend, hence a module-level registry.
_INNER_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_INNER_LOCKS_GUARD = threading.Lock()


def _inner_lock(backend) -> threading.Lock:
    with _INNER_LOCKS_GUARD:
        lock = _INNER_LOCKS.get(backend)
        if lock is None:
            lock = _INNER_LOCKS[backend] = threading.Lock()
        return lock


def _per_job(value, names: list[str]):
    """``value`` itself, or ``value(names)`` when it is callable."""
    return value(names) if callable(value) else value


# --------------------------------------------------------------------------------------------
# Base classes
# --------------------------------------------------------------------------------------------


class WrappedJob(JobV1):
    """A job that delegates to a job of the inner backend.

    ``result(timeout=None)`` counts the call (``self.result_calls`` and the backend's counters)
    and then calls ``_result``, which subclasses override to inject faults.
    """

    def __init__(self, backend: WrappedBackend, inner_job: JobV1, circuit_names: list[str]):
        super().__init__(backend, inner_job.job_id())
        self.inner_job = inner_job
        self.circuit_names = list(circuit_names)
        self.result_calls = 0
        self._lock = threading.Lock()

    def submit(self):
        """Jobs are submitted by ``backend.run``; this is a no-op."""
        return None

    def status(self) -> JobStatus:
        return self.inner_job.status()

    def cancel(self) -> bool:
        """Cancel the inner job if it supports it; False when nothing was cancelled."""
        try:
            return bool(self.inner_job.cancel())
        except NotImplementedError:
            return False

    def result(self, timeout: float | None = None, **kwargs) -> Result:
        with self._lock:
            self.result_calls += 1
        backend = self._backend
        backend._result_started()
        try:
            return self._result(timeout, **kwargs)
        finally:
            backend._result_finished()

    # -- for subclasses -------------------------------------------------------------------
    def _inner_result(self, timeout: float | None = None) -> Result:
        # BasicProviderJob is synchronous and warns when given a timeout.
        if timeout is None or not getattr(self.inner_job, "_async", True):
            return self.inner_job.result()
        return self.inner_job.result(timeout=timeout)

    def _result(self, timeout: float | None) -> Result:
        return self._inner_result(timeout)


class WrappedBackend(BackendV2):
    """A ``BackendV2`` that runs circuits on ``inner`` (default ``BasicSimulator()``).

    Its ``target`` and ``options`` are the inner backend's (options copied at construction, so
    ``shots``, ``memory``, ``seed_simulator`` are valid); ``**fields`` override option values and
    are passed to every inner ``run``, as are the keywords given to ``run``.  ``max_circuits`` is
    what was given; a ``run`` with more circuits raises ``QiskitError``.
    """

    job_class = WrappedJob
    kind = "wrapped"

    def __init__(
        self,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        inner = BasicSimulator() if inner is None else inner
        super().__init__(
            name=name or f"{self.kind}({inner.name})",
            description=f"{type(self).__name__} around {inner.name}",
            backend_version=getattr(inner, "backend_version", None),
        )
        self._inner = inner
        self._max_circuits = max_circuits
        # _default_options() is a classmethod called by BackendV2.__init__, before the inner
        # backend is known; replace its empty Options with a copy of the inner backend's.
        self._options = Options(**dict(inner.options.items()))
        self._overrides: dict = {}
        self._lock = threading.Lock()
        self._jobs: dict[str, WrappedJob] = {}
        self.run_calls = 0
        self.submitted: list[list[str]] = []
        self.refused: list[list[str]] = []
        self.result_calls = 0
        self.results_in_flight = 0
        self.max_results_in_flight = 0
        if fields:
            self.set_options(**fields)

    @classmethod
    def _default_options(cls) -> Options:
        return Options()

    def set_options(self, **fields):
        super().set_options(**fields)
        with self._lock:
            self._overrides.update(fields)

    @property
    def inner(self) -> BackendV2:
        return self._inner

    @property
    def target(self):
        return self._inner.target

    @property
    def max_circuits(self) -> int | None:
        return self._max_circuits

    def run(self, run_input, **options) -> WrappedJob:
        if isinstance(run_input, QuantumCircuit):
            circuits = [run_input]
        else:
            circuits = list(run_input)
        for circuit in circuits:
            if not isinstance(circuit, QuantumCircuit):
                raise TypeError(f"{type(self).__name__}.run takes QuantumCircuits, got {circuit!r}")
        names = [circuit.name for circuit in circuits]
        with self._lock:
            self.run_calls += 1
            run_options = {**self._overrides, **options}
        try:
            if self._max_circuits is not None and len(circuits) > self._max_circuits:
                raise QiskitError(
                    f"{self.name}: {len(circuits)} circuits in one job, "
                    f"max_circuits is {self._max_circuits}"
                )
            self._check_submit(circuits, names)
        except Exception:
            with self._lock:
                self.refused.append(names)
            raise
        with _inner_lock(self._inner):
            inner_job = self._inner.run(circuits, **run_options)
        job = self._make_job(inner_job, names)
        with self._lock:
            self.submitted.append(names)
            self._jobs[job.job_id()] = job
        return job

    def retrieve_job(self, job_id: str) -> WrappedJob:
        """The job with this id, as IBM backends offer; ``JobError`` when unknown."""
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise JobError(f"{self.name}: no job with id {job_id!r}") from None

    def job_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    # -- hooks for subclasses ---------------------------------------------------------------
    def _check_submit(self, circuits: list[QuantumCircuit], names: list[str]) -> None:
        """Raise to refuse a submission."""

    def _make_job(self, inner_job: JobV1, names: list[str]) -> WrappedJob:
        return self.job_class(self, inner_job, names)

    def _result_started(self) -> None:
        with self._lock:
            self.result_calls += 1
            self.results_in_flight += 1
            self.max_results_in_flight = max(self.max_results_in_flight, self.results_in_flight)

    def _result_finished(self) -> None:
        with self._lock:
            self.results_in_flight -= 1


# --------------------------------------------------------------------------------------------
# 1 + 6. Slow jobs, cancellable while pending
# --------------------------------------------------------------------------------------------


class SlowJob(WrappedJob):
    """Pending (QUEUED, then RUNNING) until its ready time; cancellable while pending."""

    def __init__(self, backend, inner_job, circuit_names, delay: float | None):
        super().__init__(backend, inner_job, circuit_names)
        self._cond = threading.Condition(self._lock)
        self._submitted_at = time.monotonic()
        self._ready_at = None if delay is None else self._submitted_at + max(0.0, float(delay))
        self._cancelled = False

    def release(self) -> None:
        """Finish waiting now (for jobs created with ``delay=None``, or to cut a delay short)."""
        with self._cond:
            now = time.monotonic()
            if self._ready_at is None or self._ready_at > now:
                self._ready_at = now
            self._cond.notify_all()

    def status(self) -> JobStatus:
        with self._cond:
            if self._cancelled:
                return JobStatus.CANCELLED
            now = time.monotonic()
            if self._ready_at is None:
                return JobStatus.QUEUED
            if now < self._ready_at:
                halfway = self._submitted_at + (self._ready_at - self._submitted_at) / 2
                return JobStatus.QUEUED if now < halfway else JobStatus.RUNNING
        return self.inner_job.status()

    def cancel(self) -> bool:
        """Cancel a pending job (True); a finished or already cancelled job gives False."""
        with self._cond:
            if self._cancelled:
                return False
            if self._ready_at is not None and time.monotonic() >= self._ready_at:
                return False
            self._cancelled = True
            self._cond.notify_all()
        super().cancel()  # best effort on the inner job; BasicProviderJob cannot cancel
        return True

    def _result(self, timeout: float | None) -> Result:
        end = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._cancelled:
                    raise JobError(f"job {self.job_id()} was cancelled; it has no result")
                now = time.monotonic()
                if self._ready_at is not None and now >= self._ready_at:
                    break
                waits = [] if self._ready_at is None else [self._ready_at - now]
                if end is not None:
                    if now >= end:
                        raise JobTimeoutError(f"timeout while waiting for job {self.job_id()}")
                    waits.append(end - now)
                self._cond.wait(min(waits) if waits else None)
        left = None if end is None else max(0.0, end - time.monotonic())
        return self._inner_result(left)


class SlowBackend(WrappedBackend):
    """Slow jobs: each finishes ``delay`` seconds after submission (QUEUED, then RUNNING).

    Knobs: ``delay`` (seconds, a callable ``f(circuit_names)``, or ``None``: held until
    ``release_all()`` or ``job.release()``). Pending jobs can be cancelled.
    """

    job_class = SlowJob
    kind = "slow"

    def __init__(
        self,
        delay: float | Callable[[list[str]], float | None] | None = 1.0,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.delay = delay

    def _make_job(self, inner_job, names):
        return SlowJob(self, inner_job, names, _per_job(self.delay, names))

    def release_all(self) -> None:
        """Release every job of this backend (see ``SlowJob.release``)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.release()


# --------------------------------------------------------------------------------------------
# 2. Slow result transfer
# --------------------------------------------------------------------------------------------


class HandoverJob(WrappedJob):
    """DONE at once; each ``result()`` call takes ``handover`` seconds (times out within it)."""

    def __init__(self, backend, inner_job, circuit_names, handover: float):
        super().__init__(backend, inner_job, circuit_names)
        self.handover = float(handover)

    def _result(self, timeout: float | None) -> Result:
        if timeout is not None and timeout < self.handover:
            time.sleep(max(0.0, timeout))
            raise JobTimeoutError(
                f"timeout after {timeout} s while fetching job {self.job_id()} "
                f"(transfer takes {self.handover} s)"
            )
        time.sleep(self.handover)
        return self._inner_result(None if timeout is None else timeout - self.handover)


class HandoverBackend(WrappedBackend):
    """Slow result transfers: jobs are DONE at once, each ``result()`` call takes ``handover``
    seconds (a float, or a callable ``f(circuit_names)``)."""

    job_class = HandoverJob
    kind = "handover"

    def __init__(
        self,
        handover: float | Callable[[list[str]], float] = 0.5,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.handover = handover

    def _make_job(self, inner_job, names):
        return HandoverJob(self, inner_job, names, _per_job(self.handover, names))


# --------------------------------------------------------------------------------------------
# 3. Refused submissions
# --------------------------------------------------------------------------------------------


class SubmitFailBackend(WrappedBackend):
    """Refused submissions: ``run`` raises ``RuntimeError("submit refused: ...")`` for a batch
    holding a circuit named in ``fail_names``, or for which ``fail_if(circuits)`` is true."""

    kind = "submit_fail"

    def __init__(
        self,
        fail_names: Iterable[str] = (),
        fail_if: Callable[[list[QuantumCircuit]], bool] | None = None,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.fail_names = frozenset(fail_names)
        self.fail_if = fail_if

    def _check_submit(self, circuits, names):
        bad = [n for n in names if n in self.fail_names]
        if bad:
            raise RuntimeError(f"submit refused: batch contains {', '.join(map(repr, bad))}")
        if self.fail_if is not None and self.fail_if(circuits):
            raise RuntimeError(f"submit refused by fail_if for batch {names[:3]!r}...")


# --------------------------------------------------------------------------------------------
# 4. Jobs with failed experiments
# --------------------------------------------------------------------------------------------


class PartialFailJob(WrappedJob):
    """Status ERROR when any of its experiments is in ``fail_names``; its result has those
    experiments failed and the others real (``raise_unless_partial``: IBM's behaviour)."""

    def __init__(self, backend, inner_job, circuit_names, fail_names, raise_unless_partial):
        super().__init__(backend, inner_job, circuit_names)
        self.failed_indices = [i for i, n in enumerate(self.circuit_names) if n in fail_names]
        self.raise_unless_partial = raise_unless_partial
        self._built: Result | None = None

    def status(self) -> JobStatus:
        status = self.inner_job.status()
        if status == JobStatus.DONE and self.failed_indices:
            return JobStatus.ERROR
        return status

    def _result(self, timeout: float | None, partial: bool = False) -> Result:
        if self.failed_indices and self.raise_unless_partial and not partial:
            raise JobError(
                f"job {self.job_id()} failed: {len(self.failed_indices)} experiment(s) failed; "
                "use result(partial=True)"
            )
        inner = self._inner_result(timeout)
        if not self.failed_indices:
            return inner
        with self._lock:
            if self._built is None:
                self._built = self._with_failures(inner)
            return self._built

    def _with_failures(self, inner: Result) -> Result:
        failed = set(self.failed_indices)
        experiments = []
        for i, exp in enumerate(inner.results):
            if i in failed:
                d = exp.to_dict()
                d["success"] = False
                d["status"] = (
                    f"ERROR: experiment {self.circuit_names[i]!r} failed "
                    "(injected by PartialFailBackend)"
                )
                d["data"] = {}
                exp = ExperimentResult.from_dict(d)
            experiments.append(exp)
        return Result(
            backend_name=inner.backend_name,
            backend_version=inner.backend_version,
            job_id=inner.job_id,
            success=False,
            results=experiments,
            date=inner.date,
            status=f"ERROR: {len(failed)} of {len(experiments)} experiments failed",
            header=inner.header,
            **inner._metadata,
        )


class PartialFailBackend(WrappedBackend):
    """Partially failed jobs: experiments named in ``fail_names`` fail inside otherwise
    successful jobs. ``raise_unless_partial=True``: ``result()`` raises ``JobError`` unless
    called as ``result(partial=True)``, as IBM's jobs do."""

    job_class = PartialFailJob
    kind = "partial_fail"

    def __init__(
        self,
        fail_names: Iterable[str] = (),
        raise_unless_partial: bool = False,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.fail_names = frozenset(fail_names)
        self.raise_unless_partial = raise_unless_partial

    def _make_job(self, inner_job, names):
        return PartialFailJob(self, inner_job, names, self.fail_names, self.raise_unless_partial)


# --------------------------------------------------------------------------------------------
# 5. Results served once
# --------------------------------------------------------------------------------------------


class OnceJob(WrappedJob):
    """Its result can be read once; later ``result()`` calls raise ``JobError``."""

    def __init__(self, backend, inner_job, circuit_names):
        super().__init__(backend, inner_job, circuit_names)
        self.consumed = False

    def _result(self, timeout: float | None) -> Result:
        with self._lock:
            if self.consumed:
                raise JobError("result already consumed")
        result = self._inner_result(timeout)  # may block or time out: nothing consumed then
        with self._lock:
            if self.consumed:  # another thread won the race
                raise JobError("result already consumed")
            self.consumed = True
        self._backend._served()
        return result


class OnceBackend(WrappedBackend):
    """Results served once (a service that deletes what it handed out): each job's result can
    be fetched once, later ``result()`` calls raise ``JobError("result already consumed")``.
    No knobs; ``results_served`` counts what this instance handed out."""

    job_class = OnceJob
    kind = "once"
    total_results_served = 0
    _class_lock = threading.Lock()

    def __init__(
        self,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.results_served = 0

    def _served(self) -> None:
        with self._lock:
            self.results_served += 1
        with OnceBackend._class_lock:
            OnceBackend.total_results_served += 1


# --------------------------------------------------------------------------------------------
# 7. A flaky network
# --------------------------------------------------------------------------------------------


class FlakyJob(WrappedJob):
    """Its ``result()`` drops the connection (``ConnectionError``) with its backend's ``rate``."""

    def _result(self, timeout: float | None, **kwargs) -> Result:
        backend = self._backend
        if backend._roll():
            with backend._lock:
                backend.dropped += 1
            raise ConnectionError("connection dropped while reading the result")
        return self._inner_result(timeout)


class FlakyBackend(WrappedBackend):
    """A network that fails now and then: each ``run`` raises ``submit_error`` (default
    ``ConnectionRefusedError``: nothing reached the backend, safe to send again) and each
    ``result()`` raises ``ConnectionError``, each with probability ``rate``, drawn from a
    ``random.Random(seed)``. ``refusals`` and ``dropped`` count them.

    ``submit_error=TimeoutError`` makes a refusal ambiguous (the submission may have reached the
    backend), which a careful job manager must not send again.
    """

    job_class = FlakyJob
    kind = "flaky"

    def __init__(
        self,
        rate: float,
        seed: int = 0,
        submit_error: type[BaseException] = ConnectionRefusedError,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.rate = float(rate)
        self.rng = random.Random(seed)
        self.submit_error = submit_error
        self.refusals = 0
        self.dropped = 0

    def _roll(self) -> bool:
        with self._lock:
            return self.rng.random() < self.rate

    def _check_submit(self, circuits, names):
        if self._roll():
            with self._lock:
                self.refusals += 1
            raise self.submit_error("connection refused by the flaky network")


# --------------------------------------------------------------------------------------------
# 8. A busy service and a job limit
# --------------------------------------------------------------------------------------------


class BusyError(QiskitError):
    """A refusal that says when to come back (``retry_after`` seconds), like an HTTP 429."""

    def __init__(self, retry_after: float):
        super().__init__(f"busy, retry after {retry_after}")
        self.retry_after = retry_after


class BusyBackend(WrappedBackend):
    """A busy service: the first ``busy`` ``run`` calls raise :class:`BusyError` with
    ``retry_after`` (seconds); later calls run. ``refusals`` holds the ``time.monotonic()`` of
    each refusal."""

    kind = "busy"

    def __init__(
        self,
        busy: int,
        retry_after: float = 0.1,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.busy = int(busy)
        self.retry_after = retry_after
        self.refusals: list[float] = []

    def _check_submit(self, circuits, names):
        with self._lock:
            if len(self.refusals) < self.busy:
                self.refusals.append(time.monotonic())
                raise BusyError(self.retry_after)


class JobLimitBackend(SlowBackend):
    """A service with a limit on unfinished jobs: jobs take ``delay`` seconds (as
    :class:`SlowBackend`'s), and a ``run`` while ``limit`` of its jobs are unfinished raises
    ``RuntimeError("too many jobs pending ...")`` (a refusal that nothing reached the backend
    with, worth trying again later). ``most`` is the most unfinished jobs it held at once,
    ``refusals`` the number of refused runs."""

    kind = "job_limit"

    def __init__(
        self,
        limit: int,
        delay: float | Callable[[list[str]], float | None] | None = 0.1,
        inner: BackendV2 | None = None,
        max_circuits: int | None = None,
        name: str | None = None,
        **fields,
    ):
        super().__init__(delay=delay, inner=inner, max_circuits=max_circuits, name=name, **fields)
        self.limit = int(limit)
        self.most = 0
        self.refusals = 0
        self._admit = threading.Lock()  # one run() at a time between the check and the job

    def unfinished(self) -> int:
        """How many of its jobs are not finished (neither done, failed nor cancelled)."""
        with self._lock:
            jobs = list(self._jobs.values())
        return sum(1 for job in jobs if job.status() not in _FINISHED)

    def run(self, run_input, **options):
        with self._admit:  # the count and the new job, as one step
            job = super().run(run_input, **options)
            active = self.unfinished()
            with self._lock:
                self.most = max(self.most, active)
            return job

    def _check_submit(self, circuits, names):
        active = self.unfinished()
        if active >= self.limit:
            with self._lock:
                self.refusals += 1
            raise RuntimeError(f"too many jobs pending ({active}), try again later")


_FINISHED = (JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED)
