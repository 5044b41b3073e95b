"""Circuits against the backend's ``Target``: checked before anything is submitted, and on request
transpiled on the way in, in worker processes, pipelined with submission.

:func:`check_target` refuses, before anything is submitted, a circuit holding an operation the
backend's ``Target`` does not have, or (on a device with a coupling map) a two-qubit operation on
qubits that are not coupled or more qubits than the device has. :class:`Transpiler` runs qiskit's
preset pass manager for the backend on each job's circuits in a pool of worker processes; each
job is submitted as soon as its own circuits are transpiled, while later jobs' circuits are
still being transpiled.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

from qiskit.circuit import QuantumCircuit

logger = logging.getLogger(__name__)

# operations a Target need not list: the transpiler and every simulator take them as they are
_DIRECTIVES = frozenset({"barrier"})
_SMALL = 64  # fewer circuits than this, on one worker: transpiled in this process only


def check_target(circuits: list[QuantumCircuit], backend: Any) -> None:
    """Refuse circuits the backend's ``Target`` cannot run as they are.

    Every circuit is checked (before anything is submitted) at a few microseconds each: its
    operation names are counted in Rust (``count_ops``), and its instructions are walked only
    when it holds an operation the target allows on some qubits and not others (a device's
    coupling map). An operation listed on every qubit (or every ordered tuple of distinct qubits)
    of the target, as a simulator lists ``measure``, is limited by the qubit count alone.

    Raises:
        ValueError: names the circuit, the operation (or qubits) and the fix.
    """
    target = getattr(backend, "target", None)
    if target is None:
        return
    try:
        names = set(target.operation_names)
    except Exception:  # noqa: BLE001 - a target that cannot say is not checked
        return
    restricted, device_qubits = _coupled_operations(target)
    where = getattr(backend, "name", type(backend).__name__)
    fix = (
        "transpile the circuits for it: run(..., transpile=True) (or optimization_level=N), or "
        "qiskit.transpile(circuits, backend) first. Nothing was submitted."
    )
    for i, circuit in enumerate(circuits):
        if device_qubits is not None and circuit.num_qubits > device_qubits:
            raise ValueError(
                f"{_label(circuit, i)} has {circuit.num_qubits} qubits; {where} has "
                f"{device_qubits}. Use fewer qubits, or another backend. Nothing was submitted."
            )
        ops = circuit.count_ops()
        unknown = sorted(n for n in ops if n not in names and n not in _DIRECTIVES)
        if unknown:
            raise ValueError(
                f"{_label(circuit, i)} holds {', '.join(repr(n) for n in unknown)}, which {where} "
                f"cannot run (its Target has no such operation); {fix}"
            )
        if restricted and any(n in restricted for n in ops):
            index = {q: j for j, q in enumerate(circuit.qubits)}
            for inst in circuit.data:
                allowed = restricted.get(inst.name)  # no Python gate object is built
                if allowed is None:
                    continue
                qargs = tuple(index[q] for q in inst.qubits)
                if qargs not in allowed:
                    raise ValueError(
                        f"{_label(circuit, i)} applies {inst.name!r} to qubits {qargs}, "
                        f"which {where} does not couple; {fix}"
                    )


def _label(circuit: QuantumCircuit, i: int) -> str:
    return f"circuit {circuit.name!r} (circuits[{i}])"


def _coupled_operations(target: Any) -> tuple[dict[str, set[tuple[int, ...]]], int | None]:
    """Operations the target allows only on listed qubits (a device's coupling map), and the
    number of qubits the target has when it lists qubits for any operation (else None)."""
    out: dict[str, set[tuple[int, ...]]] = {}
    lists_qubits = False
    try:
        n = target.num_qubits
        for name in target.operation_names:
            props = target[name]
            if props and None not in props:
                lists_qubits = True
                allowed = {tuple(q) for q in props}
                if not _everywhere(allowed, n):
                    out[name] = allowed
    except Exception:  # noqa: BLE001 - a target that cannot say is not checked this way
        return {}, None
    return out, (n if lists_qubits else None)


def _everywhere(allowed: set[tuple[int, ...]], n: int | None) -> bool:
    """Whether ``allowed`` holds every ordered tuple of distinct qubits of ``n`` (of its one
    arity): then only the qubit count limits the operation."""
    if not n:
        return False
    arities = {len(q) for q in allowed}
    if len(arities) != 1:
        return False
    k = arities.pop()
    if k < 1 or len(allowed) < math.perm(n, k):
        return False
    return all(q in allowed for q in itertools.permutations(range(n), k))


def transpile_options(transpile: Any, optimization_level: Any) -> dict[str, Any] | None:
    """The pass manager's keywords from ``run(transpile=..., optimization_level=...)``, or None
    when nothing is to be transpiled.

    Raises:
        TypeError, ValueError: a ``transpile`` that is not a bool or a dict, or a bad level.
    """
    if optimization_level is not None:
        if isinstance(optimization_level, bool) or optimization_level not in (0, 1, 2, 3):
            raise ValueError(f"optimization_level must be 0, 1, 2 or 3, not {optimization_level!r}")
    if transpile is False or transpile is None:
        if optimization_level is None:
            return None
        transpile = True
    if transpile is True:
        options: dict[str, Any] = {}
    elif isinstance(transpile, dict):
        options = dict(transpile)
    else:
        raise TypeError(
            "transpile must be True, False, or a dict of keywords for qiskit's "
            f"generate_preset_pass_manager, not {transpile!r}"
        )
    if optimization_level is not None:
        options["optimization_level"] = optimization_level
    options.setdefault("optimization_level", 2)
    return options


class _Workers:
    """``n`` worker processes (``python -m qjm._transpile_worker``), each fed by a daemon thread
    from one queue of tasks in submission order; circuits go both ways as QPY."""

    def __init__(self, n: int):
        self._tasks: queue.Queue = queue.Queue()
        # started first: their interpreters import qiskit while this one builds the pass manager
        self._procs = [
            subprocess.Popen(
                [sys.executable, "-m", "qjm._transpile_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for _ in range(n)
        ]
        self._started = False

    def start(self, pass_manager: Any) -> None:
        """Send the pass manager to every worker and start feeding them; this process's own
        thread transpiles too (so the first jobs do not wait for the workers to start)."""
        self._started = True
        blob = _dumps(pass_manager)
        for i, proc in enumerate(self._procs):
            try:
                proc.stdin.write(struct.pack("<Q", len(blob)) + blob)
                proc.stdin.flush()
            except OSError as exc:  # a worker that did not start: the others do its share
                logger.warning("a transpiling process did not start: %s", exc)
                continue
            threading.Thread(
                target=self._feed, args=(proc,), name=f"qjm-transpile-{i}", daemon=True
            ).start()
        threading.Thread(
            target=self._local, args=(pass_manager,), name="qjm-transpile-local", daemon=True
        ).start()

    def _local(self, pass_manager: Any) -> None:
        self._serve(lambda circuits: list(pass_manager.run(circuits, num_processes=1)))

    def submit(self, circuits: list[QuantumCircuit]) -> Future:
        future: Future = Future()
        self._tasks.put((circuits, future))
        return future

    def _serve(self, transpile: Any) -> None:
        """Take tasks until told to stop; a task whose worker died goes back to the queue for
        another one (this process's own thread always takes tasks)."""
        while True:
            task = self._tasks.get()
            if task is None:
                return
            circuits, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(transpile(circuits))
            except _WorkerDied as exc:
                logger.warning("a transpiling process ended (%s); its task goes to another", exc)
                retry: Future = Future()
                retry.add_done_callback(lambda done, f=future: _copy(done, f))
                self._tasks.put((circuits, retry))
                return
            except Exception as exc:  # noqa: BLE001 - the job says why
                future.set_exception(exc)

    def _feed(self, proc: subprocess.Popen) -> None:
        from qiskit import qpy

        def transpile(circuits: list) -> list:
            buffer = io.BytesIO()
            qpy.dump(circuits, buffer)
            body = buffer.getvalue()
            try:
                proc.stdin.write(struct.pack("<Q", len(body)) + body)
                proc.stdin.flush()
                status, size = struct.unpack("<BQ", _read_exactly(proc.stdout, 9))
                answer = _read_exactly(proc.stdout, size)
            except (OSError, EOFError, struct.error) as exc:
                raise _WorkerDied(_describe(exc)) from exc
            if status:
                raise RuntimeError(answer.decode(errors="replace"))
            return list(qpy.load(io.BytesIO(answer)))

        try:
            self._serve(transpile)
        finally:
            self._stop(proc)

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        try:
            proc.stdin.write(struct.pack("<Q", 0))
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()

    def shutdown(self) -> None:
        """Cancel what is queued; each worker ends after its current task."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[1].cancel()
        if not self._started:  # never given a pass manager: end of input ends them
            for proc in self._procs:
                self._stop(proc)
            return
        for _ in range(len(self._procs) + 1):  # the workers' feeders and the local thread
            self._tasks.put(None)


class _WorkerDied(Exception):
    """The worker process's pipe broke."""


def _copy(source: Future, target: Future) -> None:
    """Settle ``target`` as ``source`` settled (a task run again for it)."""
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def _read_exactly(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"expected {size} bytes, got {len(data)}")
    return data


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _dumps(pass_manager: Any) -> bytes:
    import dill  # qiskit's own dependency: pass managers hold callables pickle cannot send

    return dill.dumps(pass_manager)


class Transpiler:
    """Transpiles each job's circuits for ``backend`` with qiskit's preset pass manager, in
    ``processes`` worker processes (in the submitting threads for small sets).

    Raises:
        ValueError: qiskit cannot build a pass manager for this backend with these options.
    """

    def __init__(
        self, backend: Any, options: dict[str, Any], n_circuits: int, processes: int | None
    ):
        from qiskit.transpiler import generate_preset_pass_manager

        if processes is None:  # with this process's own transpiling thread: one per CPU
            processes = min((os.cpu_count() or 1) - 1, 8)
        self._lock = threading.Lock()
        self._outstanding = 0  # futures of the workers not yet collected
        self._pool: _Workers | None = None
        if processes >= 1 and n_circuits >= _SMALL:
            self._pool = _Workers(processes)
        options = dict(options)
        level = options.pop("optimization_level")
        try:
            self._pm = generate_preset_pass_manager(level, backend=backend, **options)
        except Exception as exc:
            self.shutdown()
            raise ValueError(
                f"cannot transpile for {getattr(backend, 'name', backend)!r} with {options}: {exc}"
            ) from exc
        if self._pool is not None:
            self._pool.start(self._pm)

    def submit(self, circuits: list[QuantumCircuit]) -> Future:
        """A future of the transpiled circuits (for small sets, transpiled by the thread that
        asks for :meth:`result`)."""
        with self._lock:
            if self._pool is not None:
                self._outstanding += 1
                return self._pool.submit(circuits)
        future: Future = Future()
        future.circuits = circuits  # type: ignore[attr-defined]
        return future

    def result(self, future: Future) -> list[QuantumCircuit]:
        """The transpiled circuits of ``future`` (transpiling them here when no pool)."""
        pending = getattr(future, "circuits", None)
        if pending is not None:
            with self._lock:
                if not future.done():
                    try:
                        future.set_result(list(self._pm.run(pending, num_processes=1)))
                    except Exception as exc:  # noqa: BLE001 - the job says why
                        future.set_exception(exc)
            return future.result()
        try:
            return future.result()
        finally:
            with self._lock:
                self._outstanding -= 1
                last = self._outstanding == 0
            if last:  # every job's circuits are back: the worker processes are not needed
                self.shutdown()

    def shutdown(self) -> None:
        """Stop the worker processes (circuits asked for later are transpiled in-thread)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
