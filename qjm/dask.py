"""Scale out on Dask: a job set's jobs run as tasks on a cluster's worker processes.

.. code-block:: python

    from dask.distributed import Client
    from qiskit_aer import AerSimulator
    import qjm

    client = Client()                              # a LocalCluster; or Client("tcp://head:8786")
    backend = qjm.DaskBackend(AerSimulator(), client)
    job_set = qjm.JobManager().run(circuits, backend=backend, max_experiments_per_job=500,
                                   shots=1000, seed_simulator=7)
    results = job_set.results(timeout=3600, progress=True)

:class:`DaskBackend` is a ``BackendV2`` with the wrapped backend's target, options and limits. Its
``run()`` submits one Dask task per job (``pure=False``: the same circuits submitted twice run
twice), a module-level function that runs the wrapped backend on a worker and decodes the
``Result`` there into qjm's columnar :class:`~qjm.records.JobRecord`. What crosses the network:

* to the worker: the circuits as one QPY file (never pickled circuits), the run options, and the
  pickled wrapped backend (or a picklable factory of it), unpickled once per worker process;
* back: the record in qjm's columnar wire format (:mod:`qjm.wire`: a JSON header and raw arrays,
  no pickled ``Result``), zlib-compressed; the client only merges.

A job is a ``JobV1`` over the task's Dask future; its job id is the task key (``qjm-<hex>``).
Each task's future is published on the scheduler under that key (``client.publish_dataset``), so
the scheduler holds the task and its result for whoever asks by the key: a job set retrieved in
another process (``retrieve_job_set(id, backend=DaskBackend(...))``) reattaches to the tasks
that are still held. The job manager unpublishes a task once its result is committed to the store
(``confirm_result()``); ``job.result()`` called directly unpublishes at once.

Faults: a worker that dies mid-task has its task run again on another worker by Dask (the job's
future is held, so a result is fetched once); a task that kills ``allowed-failures`` workers, or
that raises, makes its job ERROR with the reason; a scheduler that goes away makes every job not
yet fetched ERROR with a :class:`~qiskit.providers.JobError` saying so (results kept so far are
kept).

Needs Dask distributed: ``pip install "qjm[dask]"``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import pickle
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from qiskit.circuit import QuantumCircuit
from qiskit.primitives import BaseEstimatorV2, BasePrimitiveJob, BaseSamplerV2
from qiskit.providers import BackendV2, JobError, JobStatus, JobTimeoutError, JobV1, Options

from qjm.managedprimitives import StatusPredicates

INSTALL = (
    'qjm.DaskBackend, DaskSampler and DaskEstimator need Dask distributed: pip install "qjm[dask]"'
)

try:
    import cloudpickle
    import distributed
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(INSTALL) from _exc

__all__ = [
    "DaskBackend",
    "DaskJob",
    "DaskSampler",
    "DaskEstimator",
    "DaskPrimitiveJob",
    "DaskTaskError",
    "cluster_client",
]

KEY_PREFIX = "qjm-"
_COMPRESSED = b"QJMZ"  # a zlib-compressed columnar record follows
_CANCEL_REASON = "qjm-cancel"
_PROCESSING_TTL = 0.5  # seconds a look at the scheduler's running tasks is reused


class DaskTaskError(RuntimeError):
    """The wrapped backend or primitive failed on the worker (the message says how)."""


# -- on the worker ------------------------------------------------------------------------------

_TARGETS: OrderedDict[str, Any] = OrderedDict()  # token -> backend/primitive, per worker process
_TARGETS_LOCK = threading.Lock()
_TARGETS_KEPT = 8


def _target(token: str, blob: bytes) -> Any:
    """The wrapped backend or primitive in this worker process: unpickled (or made by its
    factory) once per process and kept."""
    with _TARGETS_LOCK:
        target = _TARGETS.get(token)
        if target is not None:
            _TARGETS.move_to_end(token)
            return target
        how, obj = pickle.loads(blob)
        target = obj() if how == "factory" else obj
        _TARGETS[token] = target
        while len(_TARGETS) > _TARGETS_KEPT:
            _TARGETS.popitem(last=False)
        return target


def _pack(body: bytes, compress: bool) -> bytes:
    if compress and len(body) > 512:
        return _COMPRESSED + zlib.compress(body, 1)
    return body


def _unpack(blob: bytes) -> bytes:
    if blob[:4] == _COMPRESSED:
        return zlib.decompress(memoryview(blob)[4:])
    return blob


def _failed(what: str, exc: BaseException) -> DaskTaskError:
    return DaskTaskError(f"{what}: {type(exc).__name__}: {exc}")


def run_circuits_task(
    token: str,
    blob: bytes,
    qpy_bytes: bytes,
    options: dict[str, Any],
    subtypes: list | None,
    job_id: str,
    compress: bool = True,
) -> bytes:
    """One job on a worker: the circuits (QPY) run on the wrapped backend, the ``Result``
    decoded into a columnar record, returned in qjm's wire format (compressed)."""
    from qiskit import qpy

    from qjm.records import decode_result
    from qjm.wire import encode_record

    circuits = qpy.load(io.BytesIO(qpy_bytes))
    if subtypes:
        from qjm.server.runner import restore_aer_instructions

        restore_aer_instructions(circuits, subtypes)
    backend = _target(token, blob)
    try:
        result = backend.run(circuits, **options).result()
    except Exception as exc:  # noqa: BLE001 - the job's error, picklable and readable
        raise _failed("the backend could not run the job", exc) from None
    record = decode_result(result)
    record.fields["job_id"] = job_id  # the task key, as job.job_id() says
    return _pack(encode_record(record), compress)


def run_pubs_task(
    token: str,
    blob: bytes,
    pubs_bytes: bytes,
    options: dict[str, Any],
    job_id: str,
    compress: bool = True,
) -> bytes:
    """One primitive job on a worker: the PUBs (:mod:`qjm.pubwire`) run on the wrapped primitive,
    the ``PrimitiveResult`` decoded and returned in qjm's wire format (compressed)."""
    from qjm.pubrecords import decode_primitive_result
    from qjm.pubwire import decode_pubs
    from qjm.wire import encode_record

    pubs = decode_pubs(pubs_bytes)
    primitive = _target(token, blob)
    try:
        result = primitive.run(pubs, **options).result()
    except Exception as exc:  # noqa: BLE001
        raise _failed("the primitive could not run the job", exc) from None
    record = decode_primitive_result(result)
    record.metadata = dict(record.metadata, job_id=job_id)
    return _pack(encode_record(record), compress)


# -- in the client ------------------------------------------------------------------------------


def _client(client: Any) -> tuple[Any, bool]:
    """A ``distributed.Client``: the one given, one connected to an address (owned: closed by
    ``close()``), or the current default client."""
    if client is None:
        return distributed.get_client(), False
    if isinstance(client, str):
        return distributed.Client(client), True
    if not isinstance(client, distributed.Client):
        raise TypeError(
            f"client must be a dask.distributed.Client or a scheduler address, not {client!r}"
        )
    return client, False


@contextlib.contextmanager
def cluster_client(spec: str | int) -> Iterator[Any]:
    """A client for ``qjm demo --dask SPEC``: a number starts a ``LocalCluster`` of that many
    worker processes (one thread each, on 127.0.0.1, no dashboard), anything else is a
    scheduler's address (``tcp://head:8786``). What is started here is closed on exit."""
    import warnings

    text = str(spec).strip()
    if text.isdigit():
        workers = int(text)
        if workers < 1:
            raise ValueError(f"--dask: a local cluster needs at least 1 worker, not {workers}")
        with warnings.catch_warnings():
            # its scheduler's HTTP port (8787, taken by another cluster?) moves elsewhere
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = distributed.LocalCluster(
                n_workers=workers,
                processes=True,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
            )
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
        return
    client = distributed.Client(text)
    try:
        yield client
    finally:
        client.close()


def _address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # noqa: BLE001
        return "?"


def _blob(target: Any, factory: Callable[[], Any] | None) -> tuple[str, bytes]:
    """The pickled target (or factory) and its token (the worker's cache key)."""
    payload = ("factory", factory) if factory is not None else ("object", target)
    try:
        blob = cloudpickle.dumps(payload)
    except Exception as exc:
        what = "factory" if factory is not None else f"{type(target).__name__}"
        raise TypeError(
            f"the {what} cannot be pickled to run on the Dask workers ({type(exc).__name__}: "
            f"{exc}); pass factory=, a picklable function that makes it on the worker"
        ) from exc
    return hashlib.sha256(blob).hexdigest(), blob


class _Cluster:
    """What the jobs of one wrapper share: the client, publishing, and a cached look at which
    tasks the workers are running (for RUNNING versus QUEUED)."""

    def __init__(self, client: Any, owned: bool, publish: bool, compress: bool):
        self.client = client
        self.owned = owned
        self.publish = bool(publish)
        self.compress = bool(compress)
        self.address = _address(client)
        self._lock = threading.Lock()
        self._running: set = set()
        self._looked = -1e9
        self._traffic = {"tasks": 0, "bytes_to_workers": 0, "bytes_from_workers": 0}

    def count(self, **amounts: int) -> None:
        with self._lock:
            for name, n in amounts.items():
                self._traffic[name] += n

    def traffic(self) -> dict[str, int]:
        with self._lock:
            return dict(self._traffic)

    def submit(self, function: Callable, *args: Any) -> Any:
        key = f"{KEY_PREFIX}{uuid.uuid4().hex}"
        future = self.client.submit(function, *args, key, self.compress, key=key, pure=False)
        sent = sum(len(a) for a in args if isinstance(a, bytes))
        self.count(tasks=1, bytes_to_workers=sent)
        if self.publish:
            try:
                self.client.publish_dataset(future, name=key)
            except Exception:
                future.cancel()
                raise
        return future

    def running(self) -> set:
        """Keys of the tasks the workers are processing (looked up at most every 0.5 s)."""
        now = time.monotonic()
        with self._lock:
            if now - self._looked < _PROCESSING_TTL:
                return self._running
            self._looked = now
        try:
            info = self.client.sync(
                self.client.scheduler.processing, workers=None, callback_timeout=2.0
            )
            running = {k for keys in info.values() for k in keys}
        except Exception:  # noqa: BLE001 - unknown: the last look stands
            running = self._running
        self._running = running
        return running

    def unpublish(self, keys: list[str]) -> None:
        if keys:
            self.client.unpublish_dataset(list(keys))

    def retrieve(self, job_ids: list[str]) -> list[Any]:
        """The published futures of these keys (None where the scheduler holds none)."""
        return list(self.client.get_dataset([str(i) for i in job_ids], default=None))

    def published(self) -> list[str]:
        return sorted(str(n) for n in self.client.list_datasets() if str(n).startswith(KEY_PREFIX))

    def close(self) -> None:
        if self.owned:
            self.client.close()


class _TaskJob:
    """What a job over one Dask task does (shared by backend and primitive jobs)."""

    def _init_task(self, cluster: _Cluster, future: Any, published: bool, decode: Callable):
        self._cluster = cluster
        self._future = future
        self._decode = decode
        self._published = bool(published)
        self._confirmed = not published
        self._cancelled = False
        self._released = False
        self._record: Any = None
        self._error: str | None = None  # why the result cannot be had, once known
        self._final: JobStatus | None = None  # the status then
        self._lock = threading.Lock()
        self.result_wire_bytes: int | None = None  # bytes that crossed to this process

    @property
    def future(self) -> Any:
        """The task's ``distributed.Future``."""
        return self._future

    @property
    def key(self) -> str:
        return str(self._future.key)

    def _lost(self) -> BaseException | None:
        """The cancellation of a task qjm did not cancel (the scheduler went away, the client
        was closed): an error, not a cancellation."""
        if self._cancelled:
            return None
        state = getattr(self._future, "_state", None)
        exc = getattr(state, "exception", None)
        reason = getattr(exc, "reason", None)
        if reason == _CANCEL_REASON:
            return None
        return exc if exc is not None else JobError("cancelled on the cluster")

    def _status(self) -> JobStatus:
        if self._record is not None:
            return JobStatus.DONE  # its result is here (and the future may be released)
        if self._final is not None:
            return self._final  # failed or cancelled, and the future released
        state = self._future.status
        if state == "finished":
            return JobStatus.DONE
        if state == "error":
            return JobStatus.ERROR
        if state == "cancelled":
            return JobStatus.ERROR if self._lost() is not None else JobStatus.CANCELLED
        if state == "pending" and self.key in self._cluster.running():
            return JobStatus.RUNNING
        return JobStatus.QUEUED  # pending, or "lost" (Dask computes it again)

    def error_message(self) -> str | None:
        """Why the task failed or was cancelled, if it was."""
        if self._error is not None:
            return self._error
        state = self._future.status
        if state == "error":
            try:
                exc = self._future.exception(timeout=5)
            except Exception as err:  # noqa: BLE001
                exc = err
            return f"{type(exc).__name__}: {exc}"
        if state == "cancelled":
            return self._cancel_message()
        return None

    def _cancel_message(self) -> str:
        lost = self._lost()
        if lost is None:
            return f"job {self.key} was cancelled"
        reason = getattr(lost, "reason", None)
        if reason == "scheduler-connection-lost":
            return (
                f"job {self.key}: the connection to the Dask scheduler at "
                f"{self._cluster.address} was lost before its result was fetched (the task "
                "and its result are gone with it; run the job again)"
            )
        return f"job {self.key}: its Dask task was cancelled on the cluster ({lost})"

    def _cancel(self) -> bool:
        if self._future.done():
            return False
        self._cancelled = True
        self._forget()  # unpublished first: the published dataset wants the task too
        try:
            self._future.cancel(force=True, reason=_CANCEL_REASON)
        except TypeError:  # a distributed without cancellation reasons
            self._future.cancel(force=True)
        return True

    def _forget(self) -> None:
        if self._published and not self._confirmed:
            try:
                self._cluster.unpublish([self.key])
            except Exception:  # noqa: BLE001 - the scheduler may be gone with it
                pass
            self._confirmed = True

    def columnar_result(self, timeout: float | None = None, confirm: bool = True) -> Any:
        """The job's result as qjm's columnar record (a :class:`~qjm.records.JobRecord`, or a
        :class:`~qjm.pubrecords.PrimitiveJobRecord` for a primitive), as it came from the
        worker: nothing is decoded here but the arrays.

        Args:
            timeout: seconds to wait for the task (None: for ever).
            confirm: unpublish the task at once (the scheduler may then discard its result);
                the job manager passes False and confirms after its store has the result.

        Raises:
            JobTimeoutError: the task did not finish in time.
            JobError: it failed on the cluster (the message says why), was cancelled, or the
                scheduler went away.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise JobTimeoutError(f"timed out waiting for the result of job {self.key}")
        try:
            if self._error is not None:
                raise JobError(self._error)
            if self._record is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                blob = self._fetch(left)
                self.result_wire_bytes = len(blob)
                self._cluster.count(bytes_from_workers=len(blob))
                if not self._published:
                    self._release_future()  # the bytes are here: the cluster may drop them
                try:
                    self._record = self._decode(_unpack(blob))
                except Exception as exc:
                    raise JobError(
                        f"job {self.key}: the worker sent a result qjm cannot read: {exc}"
                    ) from exc
            record = self._record
        finally:
            self._lock.release()
        if confirm:
            self.confirm_result()
        return record

    def _fetch(self, timeout: float | None) -> bytes:
        from concurrent.futures import CancelledError

        try:
            return self._future.result(timeout=timeout)
        except CancelledError as exc:
            error, cause = JobError(self._cancel_message()), exc
        except TimeoutError as exc:
            if not self._future.done():
                raise JobTimeoutError(f"timed out waiting for job {self.key}") from exc
            error, cause = JobError(f"job {self.key} failed on the Dask cluster: {exc}"), exc
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                error = JobError(
                    f"job {self.key}: its Dask task was running on every worker that died "
                    f"under it (Dask gave up: {exc})"
                )
            else:
                error = JobError(
                    f"job {self.key} failed on the Dask cluster: {type(exc).__name__}: {exc}"
                )
            cause = exc
        # final: there is no result to keep, so the scheduler need not hold the task any more
        self._error = str(error)
        self._final = self._status()
        self._forget()
        self._release_future()
        raise error from cause

    @property
    def needs_confirmation(self) -> bool:
        """True while the task is published and its result not confirmed as kept."""
        return self._published and not self._confirmed

    def confirm_result(self, kept: bool = False) -> bool:
        """The result is kept: unpublish the task and let the cluster discard it. True when
        the task was published (and now is not); safe to call again."""
        if not self._published:
            return False
        with self._lock:
            self._forget()
            self._release_future()
        return True

    def _release_future(self) -> None:
        if not self._released:
            self._released = True
            self._future.release()


def _circuits_record(data: bytes) -> Any:
    """A circuits job's record as its worker sent it. In qjm's pooled layout (what
    :func:`run_circuits_task` sends) it is kept as those very bytes, a
    :class:`~qjm.records.PooledRecord`: its header is checked and read now (what succeeded),
    each experiment is decoded when first read, and the store keeps the same bytes, so this
    process neither decodes every experiment nor encodes them again. Another layout is decoded.

    Raises:
        WireError: the bytes are not a columnar record.
    """
    from qjm.records import PooledRecord
    from qjm.wire import WireError, decode_record

    record = PooledRecord(data if isinstance(data, bytes) else bytes(data))
    try:
        record.successes()  # reads the header: is it the pooled layout, and is it sound
    except WireError:
        return decode_record(data)
    return record


class DaskJob(_TaskJob, JobV1):
    """A job of a :class:`DaskBackend`: one Dask task; its job id is the task key.

    ``status()`` comes from the task's future (QUEUED until a worker is processing it, RUNNING
    then, DONE, ERROR, CANCELLED); ``result()`` is the ``Result`` rebuilt from the columnar record
    the worker decoded; ``columnar_result()`` hands over the record itself; ``cancel()`` cancels
    the task through the client.
    """

    def __init__(self, backend: DaskBackend, future: Any, published: bool):
        JobV1.__init__(self, backend, str(future.key))
        self._init_task(backend._cluster, future, published, _circuits_record)
        self._result: Any = None

    def submit(self) -> None:
        raise JobError("a DaskJob is submitted by DaskBackend.run(); it cannot be submitted again")

    def status(self) -> JobStatus:
        return self._status()

    def cancel(self) -> bool:
        """Cancel the task (a task already running finishes on its worker, unread); False when
        it had finished already."""
        return self._cancel()

    def result(self, timeout: float | None = None, confirm: bool = True) -> Any:
        """The job's ``qiskit.result.Result``; the same waiting and errors as
        :meth:`columnar_result`."""
        record = self.columnar_result(timeout=timeout, confirm=confirm)
        with self._lock:
            if self._result is None:
                self._result = record.to_result()
            return self._result

    def __repr__(self) -> str:
        return f"DaskJob({self.key!r}, scheduler={self._cluster.address!r})"


class DaskBackend(BackendV2):
    """A backend whose jobs run as Dask tasks on a cluster's worker processes.

    Args:
        backend: the backend that runs the circuits (``AerSimulator()``, ...); its target,
            options and limits are this backend's. It is pickled once here and unpickled once
            per worker process, unless ``factory`` is given.
        client: a ``dask.distributed.Client``, a scheduler address (``"tcp://head:8786"``: a
            client is made, and closed by :meth:`close`), or None for the current client.
        factory: a picklable callable that makes the backend on a worker (for a backend that
            cannot be pickled, or should be built there); ``backend`` then only describes it.
        publish: publish each task under its key on the scheduler, so that a job set can be
            retrieved in another process (default True); the job manager unpublishes a task
            once its result is in its store.
        compress: zlib-compress the records that come back (default True).

    Raises:
        TypeError: ``backend`` (or ``factory``) cannot be pickled, or ``client`` is not a client.
        ImportError: Dask distributed is not installed (``pip install "qjm[dask]"``).
    """

    def __init__(
        self,
        backend: Any,
        client: Any = None,
        *,
        factory: Callable[[], Any] | None = None,
        publish: bool = True,
        compress: bool = True,
        name: str | None = None,
    ):
        if not callable(getattr(backend, "run", None)):
            raise TypeError(f"backend must be a qiskit backend with run(), not {backend!r}")
        self._token, self._blob = _blob(backend, factory)
        client, owned = _client(client)
        self._cluster = _Cluster(client, owned, publish, compress)
        inner_name = getattr(backend, "name", None)
        inner_name = inner_name() if callable(inner_name) else inner_name
        super().__init__(
            name=name or str(inner_name or type(backend).__name__),
            description=f"{inner_name} on the Dask cluster at {self._cluster.address}",
            backend_version=getattr(backend, "backend_version", None),
        )
        self._backend = backend
        inner_options = getattr(backend, "options", None)
        self._options = copy.copy(inner_options) if inner_options is not None else Options()
        self._baseline = dict(self._options.items())
        self.run_options_strict = bool(getattr(backend, "run_options_strict", False))

    @classmethod
    def _default_options(cls) -> Options:
        return Options()  # the wrapped backend's options replace these in __init__

    # -- what the wrapped backend says -----------------------------------------------------------

    @property
    def backend(self) -> Any:
        """The wrapped backend (as given; the workers run their own copy)."""
        return self._backend

    @property
    def client(self) -> Any:
        """The ``dask.distributed.Client`` jobs are submitted through."""
        return self._cluster.client

    @property
    def target(self) -> Any:
        return self._backend.target

    @property
    def max_circuits(self) -> int | None:
        return getattr(self._backend, "max_circuits", None)

    @property
    def max_shots(self) -> int | None:
        return getattr(self._backend, "max_shots", None)

    # -- jobs ------------------------------------------------------------------------------------

    def _forwarded(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options set on this backend since it was made, and the run's own."""
        out = {
            k: v
            for k, v in self._options.items()
            if k not in self._baseline or v is not self._baseline[k]
        }
        out.update(options)
        return out

    def run(self, run_input: Any, **options: Any) -> DaskJob:
        """Submit the circuits as one Dask task (one job); returns at once.

        Args:
            run_input: a ``QuantumCircuit`` or a list of them (run as given).
            **options: run options of the wrapped backend (``shots``, ``seed_simulator``...).
        """
        from qjm.wire import dump_circuits

        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        for i, c in enumerate(circuits):
            if not isinstance(c, QuantumCircuit):
                raise TypeError(f"run_input[{i}] is a {type(c).__name__}, not a QuantumCircuit")
        if not circuits:
            raise ValueError("no circuits to run")
        return self.run_qpy(dump_circuits(circuits), circuits, **options)

    def run_qpy(self, qpy_bytes: bytes, circuits: list, **options: Any) -> DaskJob:
        """:meth:`run` for circuits already written as one QPY file (``qpy_bytes``, of
        ``circuits``): the job manager hands over the QPY its journal wrote, so the circuits
        are written once."""
        from qjm.remote import _save_subtypes

        future = self._cluster.submit(
            run_circuits_task,
            self._token,
            self._blob,
            qpy_bytes,
            self._forwarded(options),
            _save_subtypes(circuits) or None,
        )
        return DaskJob(self, future, self._cluster.publish)

    def retrieve_job(self, job_id: str) -> DaskJob:
        """The job with this id (task key), from the tasks published on the scheduler.

        Raises:
            JobError: the scheduler holds no task with this key (its result was kept and
                released, it was never published, or the scheduler was restarted).
        """
        job = self.retrieve_jobs([job_id])[0]
        if job is None:
            raise JobError(
                f"the Dask scheduler at {self._cluster.address} holds no task {job_id!r} (its "
                "result was kept and released, or the scheduler was restarted)"
            )
        return job

    def retrieve_jobs(self, job_ids: Iterable[str]) -> list[DaskJob | None]:
        """The jobs with these ids in one look-up (None where the scheduler holds none)."""
        futures = self._cluster.retrieve(list(job_ids))
        return [None if f is None else DaskJob(self, f, published=True) for f in futures]

    def traffic(self) -> dict[str, int]:
        """What this backend's jobs sent through Dask so far: ``tasks`` submitted,
        ``bytes_to_workers`` (QPY and the pickled backend, per task) and
        ``bytes_from_workers`` (the records fetched, compressed)."""
        return self._cluster.traffic()

    def published_job_ids(self) -> list[str]:
        """Keys of the qjm tasks published on the scheduler (by any client)."""
        return self._cluster.published()

    def forget(self, job_ids: Iterable[str]) -> None:
        """Unpublish these tasks: the scheduler may discard them and their results."""
        self._cluster.unpublish([str(i) for i in job_ids])

    def close(self) -> None:
        """Close the client, if this backend made it (from an address)."""
        self._cluster.close()

    def __enter__(self) -> DaskBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskBackend({self.name!r}, scheduler={self._cluster.address!r})"


# -- primitives ---------------------------------------------------------------------------------


class DaskPrimitiveJob(_TaskJob, StatusPredicates, BasePrimitiveJob):
    """A job of a :class:`DaskSampler` / :class:`DaskEstimator`: one Dask task."""

    def __init__(self, cluster: _Cluster, future: Any, published: bool):
        from qjm.wire import decode_record

        BasePrimitiveJob.__init__(self, str(future.key))
        self._init_task(cluster, future, published, decode_record)
        self._result: Any = None

    def result(self, timeout: float | None = None, confirm: bool = True) -> Any:
        """The job's ``PrimitiveResult``, rebuilt from the columnar record the worker decoded."""
        from qiskit.primitives import PrimitiveResult

        record = self.columnar_result(timeout=timeout, confirm=confirm)
        with self._lock:
            if self._result is None:
                self._result = PrimitiveResult(
                    [p.to_pub_result() for p in record.pubs], metadata=dict(record.metadata)
                )
            return self._result

    def status(self) -> JobStatus:
        return self._status()

    def cancel(self) -> bool:
        return self._cancel()

    def __repr__(self) -> str:
        return f"DaskPrimitiveJob({self.key!r}, scheduler={self._cluster.address!r})"


class _DaskPrimitive:
    """What :class:`DaskSampler` and :class:`DaskEstimator` share."""

    def _init_primitive(
        self,
        primitive: Any,
        client: Any,
        factory: Callable[[], Any] | None,
        publish: bool,
        compress: bool,
        cluster: _Cluster | None = None,
    ) -> None:
        if not callable(getattr(primitive, "run", None)):
            raise TypeError(f"expected a V2 primitive with run(pubs), not {primitive!r}")
        self._primitive = primitive
        self._factory = factory
        self._token, self._blob = _blob(primitive, factory)
        if cluster is None:
            client, owned = _client(client)
            cluster = _Cluster(client, owned, publish, compress)
        self._cluster = cluster

    @property
    def wrapped_primitive(self) -> Any:
        """The wrapped primitive (as given; the workers run their own copy)."""
        return self._primitive

    @property
    def client(self) -> Any:
        return self._cluster.client

    def with_primitive(self, primitive: Any) -> Any:
        """The same wrapper (same client) around another primitive: qjm gives each job the
        primitive with that job's seed this way. With a ``factory``, the workers' primitive
        keeps its own seed, and this is the wrapper itself."""
        if self._factory is not None:
            return self
        other = copy.copy(self)
        other._primitive = primitive
        other._token, other._blob = _blob(primitive, None)
        return other

    def backend(self) -> Any:
        """The backend the wrapped primitive runs on, where it says."""
        backend = getattr(self._primitive, "backend", None)
        return backend() if callable(backend) else backend

    def _submit(self, pubs: list, options: dict[str, Any]) -> DaskPrimitiveJob:
        from qjm.pubwire import encode_pubs

        future = self._cluster.submit(
            run_pubs_task, self._token, self._blob, encode_pubs(pubs), options
        )
        return DaskPrimitiveJob(self._cluster, future, self._cluster.publish)

    def retrieve_job(self, job_id: str) -> DaskPrimitiveJob:
        """The job with this id (task key), from the tasks published on the scheduler.

        Raises:
            JobError: the scheduler holds no task with this key.
        """
        future = self._cluster.retrieve([job_id])[0]
        if future is None:
            raise JobError(
                f"the Dask scheduler at {self._cluster.address} holds no task {job_id!r} (its "
                "result was kept and released, or the scheduler was restarted)"
            )
        return DaskPrimitiveJob(self._cluster, future, published=True)

    def close(self) -> None:
        """Close the client, if this wrapper made it (from an address)."""
        self._cluster.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self._primitive).__name__}, "
            f"scheduler={self._cluster.address!r})"
        )


class DaskSampler(_DaskPrimitive, BaseSamplerV2):
    """A Sampler V2 whose jobs run the wrapped sampler as Dask tasks on a cluster's workers.

    PUBs cross to the workers as QPY plus raw parameter arrays (:mod:`qjm.pubwire`), results
    come back as qjm's columnar records (BitArray bytes, no pickled ``PrimitiveResult``).
    ``qjm.JobManager().run(pubs, sampler=qjm.DaskSampler(SamplerV2(seed=7), client))`` splits
    the PUBs into jobs, and each job runs the sampler with that job's seed.

    Args: as :class:`DaskBackend`, with ``sampler`` for ``backend``.
    """

    def __init__(
        self,
        sampler: Any,
        client: Any = None,
        *,
        factory: Callable[[], Any] | None = None,
        publish: bool = True,
        compress: bool = True,
    ):
        self._init_primitive(sampler, client, factory, publish, compress)

    @property
    def wrapped_sampler(self) -> Any:
        return self._primitive

    @property
    def default_shots(self) -> int | None:
        from qjm.kinds.sampler import SamplerKind

        return SamplerKind(self._primitive).default_shots()

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> DaskPrimitiveJob:
        from qiskit.primitives.containers.sampler_pub import SamplerPub

        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        return self._submit(coerced, {} if shots is None else {"shots": shots})


class DaskEstimator(_DaskPrimitive, BaseEstimatorV2):
    """An Estimator V2 whose jobs run the wrapped estimator as Dask tasks (see
    :class:`DaskSampler`)."""

    def __init__(
        self,
        estimator: Any,
        client: Any = None,
        *,
        factory: Callable[[], Any] | None = None,
        publish: bool = True,
        compress: bool = True,
    ):
        self._init_primitive(estimator, client, factory, publish, compress)

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> DaskPrimitiveJob:
        from qiskit.primitives.containers.estimator_pub import EstimatorPub

        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        return self._submit(coerced, {} if precision is None else {"precision": precision})
