"""Runs queued jobs in worker processes: each job is one ``backend.run(circuits, **options).result()``.

Why processes and not threads: Aer runs every ``AerSimulator.run`` of a process through one
single-worker thread pool, so N threads in one process would still simulate one job at a time;
the Python side of a job (reading QPY, building the ``Result``, decoding it into columnar arrays,
compressing them) holds the GIL and would slow the HTTP side of the service; and a simulator
that crashes takes down only its worker, not the service (the job is run again, and marked ERROR
after ``max_attempts``). Each worker process is started once (``spawn``) and runs job after job.
A worker gives Aer ``cpu_count // workers`` threads, so N workers share the machine.

A dispatcher thread in the service takes the oldest QUEUED job from the store whenever a worker is
free; the worker returns the finished result already encoded (gzip-compressed columnar bytes), so
the service only stores bytes and later sends them as they are.
"""

from __future__ import annotations

import gzip
import io
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from qjm.server.jobstore import DONE, ERROR, JobStore

log = logging.getLogger("qjm.server")

# -- in the worker process -----------------------------------------------------------------------

_BACKEND: Any = None
# the scheduler address of ``qjm serve --dask`` (set by the command, read by the workers)
DASK_ENV = "QJM_SERVE_DASK"


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)  # the service died: do not run on as an orphan


def _init_worker(method: str, threads: int, parent: int) -> None:
    global _BACKEND
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the service's to handle
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    _BACKEND = make_backend(method)
    address = os.environ.get(DASK_ENV)
    if address:  # qjm serve --dask ADDRESS: this worker's jobs run on the cluster's workers
        from qjm.dask import DaskBackend

        # the service requeues a job whose worker died: nothing to publish for other processes
        _BACKEND = DaskBackend(_BACKEND, address, publish=False)
        return
    try:
        _BACKEND.set_options(max_parallel_threads=threads)
    except Exception:  # noqa: BLE001 - a backend without this option
        pass


def make_backend(method: str) -> Any:
    from qiskit_aer import AerSimulator

    return AerSimulator(method=method)


def _warm() -> int:
    return os.getpid()


# Aer's save instructions, by name: QPY brings them back as plain Instructions (name, label and
# params survive; the class and its subtype do not), and Aer needs its own classes to run them.
_AER_SAVES = {
    "save_amplitudes": "SaveAmplitudes",
    "save_amplitudes_sq": "SaveAmplitudesSquared",
    "save_clifford": "SaveClifford",
    "save_density_matrix": "SaveDensityMatrix",
    "save_expval": "SaveExpectationValue",
    "save_expval_var": "SaveExpectationValueVariance",
    "save_matrix_product_state": "SaveMatrixProductState",
    "save_probabilities": "SaveProbabilities",
    "save_probabilities_dict": "SaveProbabilitiesDict",
    "save_stabilizer": "SaveStabilizer",
    "save_state": "SaveState",
    "save_statevector": "SaveStatevector",
    "save_statevector_dict": "SaveStatevectorDict",
    "save_superop": "SaveSuperOp",
    "save_unitary": "SaveUnitary",
}
SUBTYPES = frozenset(
    {"single", "c_single", "list", "c_list", "average", "c_average", "accum", "c_accum"}
)


def restore_aer_instructions(circuits: list, subtypes: list | None) -> None:
    """Turn the plain Instructions QPY made of Aer's save instructions back into Aer's classes,
    with the subtypes the client sent (``[[circuit, instruction, subtype], ...]``) or, for those
    it did not, the class's default (not per shot, not conditional)."""
    from qiskit_aer import library
    from qiskit_aer.library.save_instructions.save_data import SaveAverageData, SaveData

    given = {(int(c), int(i)): str(t) for c, i, t in subtypes or ()}
    for ci, circuit in enumerate(circuits):
        data = circuit.data
        for ii, inst in enumerate(data):
            op = inst.operation
            cls_name = _AER_SAVES.get(op.name)
            if cls_name is None or isinstance(op, SaveData):
                continue
            cls = getattr(library, cls_name)
            subtype = given.get((ci, ii)) or (
                "average" if issubclass(cls, SaveAverageData) else "single"
            )
            params = list(op.params)
            if op.name in ("save_amplitudes", "save_amplitudes_sq"):
                params = [int(p) for p in params]
            new = cls.__new__(cls)
            SaveData.__init__(new, op.name, op.num_qubits, op.label or op.name, subtype, params)
            data[ii] = inst.replace(operation=new)


def run_job(
    job_id: str, qpy_bytes: bytes, options: dict[str, Any], subtypes: list | None, delay: float
) -> tuple:
    """Run one job in a worker: (status, error, gzip(columnar result) or None, raw size)."""
    from qiskit import qpy

    from qjm.records import decode_result
    from qjm.wire import encode_columnar

    if delay:
        time.sleep(delay)
    try:
        circuits = qpy.load(io.BytesIO(qpy_bytes))
        restore_aer_instructions(circuits, subtypes)
        result = _BACKEND.run(circuits, **options).result()
    except Exception as exc:  # noqa: BLE001 - any failure of the run is the job's error
        return ERROR, f"the backend could not run the job: {type(exc).__name__}: {exc}", None, None
    record = decode_result(result)
    record.fields["job_id"] = job_id  # the service's id, as job.job_id() says
    body = encode_columnar(record)
    packed = gzip.compress(body, compresslevel=1)
    if result.success:
        return DONE, None, packed, len(body)
    failed = [
        # a failed experiment may have no header at all (qiskit's ExperimentResult then raises
        # AttributeError for it)
        f"experiment {i} ({(getattr(e, 'header', None) or {}).get('name', '?')}): {e.status}"
        for i, e in enumerate(result.results)
        if not e.success
    ]
    why = f"the backend reported {result.status or 'failure'}"
    if failed:
        why += (
            "; "
            + "; ".join(failed[:10])
            + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        )
    return ERROR, why, packed, len(body)


# -- in the service ------------------------------------------------------------------------------


class Runner:
    """Takes QUEUED jobs from ``store`` and runs them on ``workers`` worker processes."""

    def __init__(
        self,
        store: JobStore,
        workers: int,
        method: str,
        job_delay: float = 0.0,
        max_attempts: int = 3,
    ):
        self.store = store
        self.workers = workers
        self.method = method
        self.job_delay = job_delay
        self.max_attempts = max_attempts
        self._threads = max(1, (os.cpu_count() or 1) // workers)
        self._cond = threading.Condition()
        self._in_flight: dict[str, Future] = {}
        self._stopping = False
        self._wake = False
        self._executor: ProcessPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self.mean_seconds = 1.0  # moving average of a job's run time, for Retry-After

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.method, self._threads, os.getpid()),
        )

    def start(self) -> None:
        self._executor = self._new_executor()
        for f in [self._executor.submit(_warm) for _ in range(self.workers)]:
            f.add_done_callback(lambda _f: None)
        self._thread = threading.Thread(target=self._dispatch, name="qjm-dispatch", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A job was queued: wake the dispatcher."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop taking jobs and end the workers. Jobs still RUNNING stay RUNNING in the store and
        are run again when the service starts next."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        executor = self._executor
        if executor is not None:
            processes = list(getattr(executor, "_processes", {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for p in processes:
                try:
                    p.terminate()
                except Exception:  # noqa: BLE001
                    pass
            for p in processes:
                p.join(timeout=5)
            executor.shutdown(wait=True)  # its threads and semaphores, now the workers are gone

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and len(self._in_flight) >= self.workers:
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                claim = self.store.claim()
            except Exception:  # noqa: BLE001 - a busy database: try again shortly
                log.exception("could not take a job from the queue")
                claim = None
                time.sleep(0.5)
            if claim is None:
                with self._cond:
                    if not self._wake and not self._stopping:
                        self._cond.wait(timeout=1.0)
                    self._wake = False
                continue
            job_id, qpy_bytes, options, subtypes, _attempt = claim
            started = time.monotonic()
            with self._cond:
                try:
                    future = self._executor.submit(
                        run_job, job_id, qpy_bytes, options, subtypes, self.job_delay
                    )
                except (BrokenProcessPool, RuntimeError) as exc:
                    self._replace_executor()
                    self.store.requeue(
                        job_id, self.max_attempts, f"no worker could take it ({exc})"
                    )
                    continue
                self._in_flight[job_id] = future
            future.add_done_callback(lambda f, j=job_id, t=started: self._done(j, f, t))

    def _replace_executor(self) -> None:
        old = self._executor
        self._executor = self._new_executor()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    def _done(self, job_id: str, future: Future, started: float) -> None:
        try:
            if future.cancelled():
                return  # the service is stopping: the job stays RUNNING and is run again later
            exc = future.exception()
            if exc is None:
                status, error, body, size = future.result()
                self.store.finish(job_id, status, error, body, size)
                elapsed = time.monotonic() - started
                self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * elapsed
            elif isinstance(exc, BrokenProcessPool):
                if not self._stopping:
                    with self._cond:
                        if self._executor is not None and getattr(self._executor, "_broken", False):
                            self._replace_executor()
                    self.store.requeue(
                        job_id, self.max_attempts, "the worker process running this job died"
                    )
            else:
                self.store.finish(
                    job_id, ERROR, f"the worker failed: {type(exc).__name__}: {exc}", None, None
                )
        except Exception:  # noqa: BLE001 - never let a callback kill the dispatcher
            log.exception("could not record the end of job %s", job_id)
        finally:
            with self._cond:
                self._in_flight.pop(job_id, None)
                self._wake = True
                self._cond.notify_all()
