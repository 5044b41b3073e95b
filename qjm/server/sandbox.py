"""Where ``qjm serve`` reads what clients send: a small pool of worker processes with memory and
CPU limits, never the process that answers HTTP.

A job's body (JSON holding the base64 text of a QPY file) is read in a *reader* process:

1. the JSON's nesting depth is measured without parsing it (:func:`json_depth`; more than
   :data:`MAX_JSON_DEPTH` is refused), then it is parsed and checked against ``JobRequest``;
2. the QPY file's headers are walked (:func:`check_qpy_headers`: the file header, the circuit
   table, each circuit's header and registers) and declared sizes over the service's limits
   (circuits, qubits, clbits, instructions), or over what the bytes that are there could hold,
   are refused before qiskit allocates anything for them;
3. only then does ``qpy.load`` read the circuits, and the checks that need them run
   (``max_circuits``, ``instruction_subtypes``).

A reader runs under ``RLIMIT_AS`` (its size when ready plus ``memory_mb``), ``RLIMIT_CPU``
(``timeout`` seconds per body, on top of what it used before) and ``RLIMIT_CORE`` 0, and the
service waits at most ``timeout`` seconds for its answer. A reader that breaks a limit, crashes
or is too slow is killed and replaced; the request gets a 4xx saying why, and the other requests
never notice (they go to the other readers, and the HTTP process's event loop is never blocked).

Nothing is pickled between the service and its readers: the body goes in as bytes, and the answer
comes back as bytes (a JSON header of plain values, then the QPY bytes that loaded), which the
service parses with ``json.loads``; a reader the client managed to subvert could still not make
the service run code. The QPY bytes stored for the job are the client's own bytes, which loaded
within the limits (qiskit reads them the same way again in the job's worker); dumping the loaded
circuits again would cost more time than the whole rest of a submission.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import queue
import re
import signal
import struct
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("qjm.server")

__all__ = [
    "MAX_JSON_DEPTH",
    "Parsed",
    "ReadLimits",
    "ReaderPool",
    "Refused",
    "check_qpy_headers",
    "json_depth",
    "qubit_limits",
]

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (a job needs 3)."""

_START_TIMEOUT = 120.0  # seconds a new reader may take to import qiskit and say it is ready
_LIMITS_WORDS = "the circuits could not be read within the service's limits"


class Refused(Exception):
    """A body the service does not take: ``status`` (4xx, or 503 when no reader is free) and a
    message for the client."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReadLimits:
    """What a reader takes (the first four are stated in GET /v1/limits) and its own bounds.

    ``max_qubits`` is by simulation method (see :func:`qubit_limits`); a job runs with its
    ``method`` run option, else with ``method``.
    """

    max_circuits: int
    max_qubits: dict[str, int]
    method: str
    max_clbits: int
    max_instructions: int
    max_payload_bytes: int
    memory_mb: int = 1024
    timeout: float = 20.0

    def qubits_for(self, method: Any) -> tuple[int, str]:
        """(the most qubits a circuit may have, the method) for a job whose ``method`` run
        option is ``method`` (None or not a method: the service's)."""
        if not isinstance(method, str) or method not in self.max_qubits:
            method = self.method
        return self.max_qubits.get(method, 0), method


def qubit_limits(backend: Any, method: str) -> dict[str, int]:
    """The most qubits a circuit may have, by simulation method: what the backend states for
    each of its methods (AerSimulator: ``AerSimulator(method=m).num_qubits``, e.g. 30 for
    statevector on this machine, 10000 for stabilizer). ``automatic`` lets Aer choose any of
    them, so it takes the largest."""
    table: dict[str, int] = {}
    available = getattr(backend, "available_methods", None)
    for name in available() if callable(available) else ():
        try:
            table[name] = int(type(backend)(method=name).num_qubits or 0)
        except Exception:  # noqa: BLE001 - a method this build cannot construct
            continue
    own = int(getattr(backend, "num_qubits", 0) or 0)
    table[method] = max(table.get(method, 0), own)
    if "automatic" in table:
        table["automatic"] = max(table.values())
    return table


@dataclass
class Parsed:
    """A body read by a reader: plain values only.

    ``error`` is a refusal of the circuits (status, message), given after the run options are
    checked so that a job with bad options and bad circuits is told about its options first, as
    before; ``qpy`` and ``n_circuits`` are then None.
    """

    options: dict[str, Any]
    tags: list[str]
    subtypes: list | None
    n_circuits: int | None
    qpy: bytes | None
    error: tuple[int, str] | None


# -- cheap checks before parsing ------------------------------------------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``[`` and ``{`` nest in ``body`` outside JSON strings, found without parsing it
    (byte counts, a regular expression and numpy: linear time). A result up to ``limit`` means
    "not deeper than ``limit``" (it is the exact depth, or the number of brackets when there are
    no more than ``limit`` of them); over ``limit`` means "too deep" (counting stops soon after
    ``limit`` is passed)."""
    import numpy as np

    brackets = body.count(b"[") + body.count(b"{")
    if brackets <= limit:  # the usual case, at memchr speed
        return brackets
    skeleton = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if len(skeleton) <= 2 * limit:  # the usual case: a handful of brackets
        depth = deepest = 0
        for byte in skeleton:
            depth += 1 if byte in b"[{" else -1
            deepest = max(deepest, depth)
        return deepest
    depth = deepest = 0
    view = np.frombuffer(skeleton, dtype=np.uint8)
    chunk = 1 << 16
    for start in range(0, len(view), chunk):
        part = view[start : start + chunk]
        steps = np.where((part == ord("[")) | (part == ord("{")), 1, -1).astype(np.int32)
        running = np.cumsum(steps) + depth
        deepest = max(deepest, int(running.max()))
        if deepest > limit:
            return deepest
        depth = int(running[-1])
    return deepest


def _cut_short(what: str, need: int, have: int) -> Refused:
    return Refused(
        f"'circuits' is not a QPY file qiskit can read: {what} needs {need} bytes, but only "
        f"{have} bytes of the file follow"
    )


def check_qpy_headers(raw: bytes, limits: ReadLimits, method: str | None = None) -> None:
    """Walk the headers of the QPY file ``raw`` and refuse what must not reach ``qpy.load``.

    Checked without reading any circuit: the number of circuits (``max_circuits``, 400 as
    before); each circuit's declared ``num_qubits`` (against ``limits.qubits_for(method)``),
    ``num_clbits`` and ``num_instructions`` and each register's size against the service's
    limits (422); and every size the headers declare (name, global phase, metadata, registers,
    variables, instructions) against the bytes that follow (400). From QPY version 16 on, the
    file has a table of its circuits' offsets and every circuit's header is checked; before it,
    circuits follow one another and only the first one's header can be found without reading
    the circuit, so the others are left to the reader's memory and CPU limits.

    Raises:
        Refused: what is wrong, naming the field, its value and the limit.
    """
    from qiskit.qpy import formats

    n = len(raw)
    version = raw[6] if n > 6 else 0
    file_header = struct.Struct(
        formats.FILE_HEADER_V10_PACK if version >= 10 else formats.FILE_HEADER_PACK
    )
    if n < file_header.size:
        raise _cut_short("the QPY file header", file_header.size, n)
    num_programs = file_header.unpack_from(raw, 0)[5]
    pos = file_header.size + (formats.TYPE_KEY_SIZE if version >= 5 else 0)
    if num_programs > limits.max_circuits:
        raise Refused(
            f"the job has {num_programs} circuits; this service takes at most "
            f"{limits.max_circuits} per job (max_circuits, see GET /v1/limits)"
        )
    if version >= 16:
        table_end = pos + num_programs * formats.CIRCUIT_TABLE_ENTRY_SIZE
        if table_end > n:
            raise _cut_short(
                f"the table of {num_programs} circuits", table_end - pos, max(0, n - pos)
            )
        offsets = struct.unpack_from(f"!{num_programs}Q", raw, pos)
        for i, offset in enumerate(offsets):
            if not table_end <= offset < n:
                raise Refused(
                    f"'circuits' is not a QPY file qiskit can read: its table puts circuit {i} at "
                    f"byte {offset}, outside the circuits' bytes {table_end}..{n}"
                )
            _check_circuit(raw, offset, version, i, limits, method)
    elif num_programs:
        _check_circuit(raw, pos, version, 0, limits, method)


def _check_circuit(
    raw: bytes, pos: int, version: int, index: int, limits: ReadLimits, method: str | None
) -> None:
    from qiskit.qpy import formats

    n = len(raw)
    where = f"circuit {index} of the QPY file"
    if version >= 12:
        header = struct.Struct(formats.CIRCUIT_HEADER_V12_PACK)
    elif version >= 2:
        header = struct.Struct(formats.CIRCUIT_HEADER_V2_PACK)
    else:
        header = struct.Struct(formats.CIRCUIT_HEADER_PACK)
    if pos + header.size > n:
        raise _cut_short(f"the header of {where}", header.size, n - pos)
    fields = header.unpack_from(raw, pos)
    pos += header.size
    if version >= 2:
        name_size, _phase_type, phase_size, qubits, clbits, metadata_size = fields[:6]
        registers, instructions = fields[6:8]
        num_vars = fields[8] if version >= 12 else 0
    else:
        name_size, _phase, qubits, clbits, metadata_size, registers, instructions = fields
        phase_size, num_vars = 0, 0

    max_qubits, method = limits.qubits_for(method)
    on_qubits = f"this service's backend takes at most {{limit}} with method {method!r}"
    for field, value, limit, what in (
        ("num_qubits", qubits, max_qubits, on_qubits),
        ("num_clbits", clbits, limits.max_clbits, "this service takes at most {limit} per circuit"),
        (
            "num_instructions",
            instructions,
            limits.max_instructions,
            "this service takes at most {limit} per circuit",
        ),
    ):
        if value > limit:
            name = f"max_{field[4:]}"
            raise Refused(
                f"{where} declares {field} = {value}; {what.format(limit=limit)} "
                f"({name}, see GET /v1/limits)",
                422,
            )

    for field, size in (
        ("name_size", name_size),
        ("global_phase_size", phase_size),
        ("metadata_size", metadata_size),
    ):
        if size > n - pos:
            raise Refused(
                f"'circuits' is not a QPY file qiskit can read: {where} declares {field} = "
                f"{size}, but only {n - pos} bytes of the file follow"
            )
        pos += size

    # REGISTER: "!1c?IH" and uint32 indices before version 4; "!1c?IH?" (in_circuit) and int64
    # indices from 4; "!1c?IH?c" from 18, whose last byte (register_attachment) 1 means one
    # uint32 (the first index of a contiguous run) instead of ``size`` uint32 indices, and whose
    # type may also be b"a" (an ancilla register)
    if version >= 18:
        register, index_size = struct.Struct("!1c?IH?c"), 4
    elif version >= 4:
        register, index_size = struct.Struct("!1c?IH?"), 8
    else:
        register, index_size = struct.Struct("!1c?IH"), 4
    if registers * register.size > n - pos:
        raise Refused(
            f"'circuits' is not a QPY file qiskit can read: {where} declares num_registers = "
            f"{registers} ({register.size} bytes each at least), but only {n - pos} bytes of the "
            "file follow"
        )
    for r in range(registers):
        entry = register.unpack_from(raw, pos)
        kind, size, reg_name_size = entry[0], entry[2], entry[3]
        contiguous = version >= 18 and entry[5] == b"\x01"
        pos += register.size
        if kind not in (b"q", b"c", b"a"):
            raise Refused(
                f"'circuits' is not a QPY file qiskit can read: register {r} of {where} is of "
                f"type {kind!r}, not b'q', b'a' or b'c'"
            )
        limit, name = (
            (limits.max_clbits, "max_clbits") if kind == b"c" else (max_qubits, "max_qubits")
        )
        if size > limit:
            bits = "clbits" if kind == b"c" else "qubits"
            raise Refused(
                f"register {r} of {where} declares size = {size} {bits}; this service takes at "
                f"most {limit} ({name}, see GET /v1/limits)",
                422,
            )
        need = reg_name_size + (1 if contiguous else size) * index_size
        if need > n - pos:
            raise Refused(
                f"'circuits' is not a QPY file qiskit can read: register {r} of {where} declares "
                f"size = {size} and name_size = {reg_name_size} ({need} bytes), but only "
                f"{n - pos} bytes of the file follow"
            )
        pos += need

    for field, count, each in (
        ("num_vars", num_vars, formats.EXPR_VAR_DECLARATION_SIZE),
        ("num_instructions", instructions, formats.CIRCUIT_INSTRUCTION_SIZE),
    ):
        if count * each > n - pos:
            raise Refused(
                f"'circuits' is not a QPY file qiskit can read: {where} declares {field} = "
                f"{count} ({each} bytes each at least), but only {n - pos} bytes of the file "
                "follow"
            )


# -- in a reader process --------------------------------------------------------------------------


def _name_process(name: bytes) -> None:
    """Shown by ps and in /proc/PID/comm (Linux), so an operator sees which process is which."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
    except Exception:  # noqa: BLE001 - not Linux: a cosmetic loss
        pass


def _vm_size() -> int:
    """This process's address space in bytes (Linux), or 0 when unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(message: str, limit: int = 1000) -> str:
    """``message`` without terminal colours (qiskit's Rust reader draws its errors as a coloured
    backtrace), at most ``limit`` characters."""
    message = _ANSI.sub("", message)
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _read_job(body: bytes, limits: ReadLimits) -> tuple[dict[str, Any], bytes]:
    """Read one job body: (the answer's header, the QPY bytes or b"")."""
    from pydantic import ValidationError

    from qjm import wire
    from qjm.server.app import BadRequest, JobRequest, _check_subtypes, _detail_of_validation

    def refused(status: int, message: str) -> tuple[dict[str, Any], bytes]:
        return {"refused": [status, message]}, b""

    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return refused(
            400,
            f"the body nests arrays and objects more than {MAX_JSON_DEPTH} deep (at least "
            f"{depth}); this service reads JSON up to {MAX_JSON_DEPTH} levels",
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return refused(400, f"the body is not JSON: {exc}")
    try:
        req = JobRequest.model_validate(data)
    except ValidationError as exc:
        return refused(422, _detail_of_validation(exc))
    del data
    header: dict[str, Any] = {
        "options": req.options,
        "tags": list(req.tags),
        "subtypes": None,
        "n_circuits": None,
        "error": None,
    }
    try:
        circuits, raw = wire.decode_circuits(
            req.circuits,
            check=lambda raw: check_qpy_headers(raw, limits, req.options.get("method")),
        )
        if len(circuits) > limits.max_circuits:
            raise Refused(
                f"the job has {len(circuits)} circuits; this service takes at most "
                f"{limits.max_circuits} per job (max_circuits, see GET /v1/limits)"
            )
        header["subtypes"] = _check_subtypes(req.instruction_subtypes, circuits)
    except Refused as exc:
        header["error"] = [exc.status, str(exc)]
        return header, b""
    except BadRequest as exc:
        header["error"] = [exc.status, str(exc)]
        return header, b""
    except wire.WireError as exc:
        message = _plain(str(exc))
        cause = exc.__cause__
        if isinstance(cause, (MemoryError, RecursionError)) or "memory allocation" in message:
            header["error"] = [422, f"{_LIMITS_WORDS}: {message}"]
        else:
            header["error"] = [400, message]
        return header, b""
    header["n_circuits"] = len(circuits)
    return header, raw


def _warm_up(limits: ReadLimits) -> None:
    """Import and run everything a body needs once, so that the limits bound the body only."""
    from qiskit import QuantumCircuit

    from qjm import wire

    qc = QuantumCircuit(2, 2, name="warm")
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    body = json.dumps(
        {"circuits": wire.b64(wire.dump_circuits([qc])), "options": {}, "tags": ["x"]}
    ).encode()
    header, _ = _read_job(body, limits)
    if header.get("error") or header.get("refused"):
        raise RuntimeError(f"the reader cannot read a Bell circuit: {header}")
    json_depth(b"[" * (4 * MAX_JSON_DEPTH + 1))


def _pack(header: dict[str, Any], qpy: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("!I", len(head)) + head + qpy


def reader_main(conn: Any, limits: dict[str, Any]) -> None:
    """A reader process: read bodies from ``conn`` (bytes), answer with :func:`_pack` bytes.

    It ends when the service closes its end of the pipe, or dies (the pipe's other end closes
    with it): an idle reader sees that at once, a busy one after the body (bounded by its
    limits)."""
    import resource

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the service's to handle
    _name_process(b"qjm-reader")
    read_limits = ReadLimits(**limits)
    _warm_up(read_limits)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    base = _vm_size()
    if base:
        cap = base + read_limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    conn.send_bytes(b"ready")
    while True:
        try:
            body = conn.recv_bytes()
            conn.send_bytes(b"+")  # "I have it": a death from now on is this body's business
        except (EOFError, OSError):
            return  # the service closed the pipe: it is stopping
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + read_limits.timeout) + 1
        if cpu_hard != resource.RLIM_INFINITY:
            soft = min(soft, cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))
        retire = False
        try:
            header, qpy = _read_job(body, read_limits)
        except MemoryError:
            header, qpy, retire = (
                {
                    "refused": [
                        422,
                        f"{_LIMITS_WORDS}: they need more than "
                        f"{read_limits.memory_mb} MB of memory",
                    ]
                },
                b"",
                True,
            )
        except BaseException as exc:  # noqa: BLE001 - anything else a body can make fail
            header, qpy, retire = (
                {"refused": [422, f"{_LIMITS_WORDS}: {type(exc).__name__}: {exc}"[:2000]]},
                b"",
                True,
            )
        del body
        header["retire"] = retire  # after a MemoryError, start afresh
        try:
            answer = _pack(header, qpy)
        except BaseException as exc:  # noqa: BLE001 - values JSON cannot carry, no memory
            refusal = f"{_LIMITS_WORDS}: the answer could not be written: {type(exc).__name__}"
            answer, retire = _pack({"refused": [422, refusal], "retire": True}, b""), True
        try:
            conn.send_bytes(answer)
        except (OSError, ValueError):
            return
        if retire:
            return


# -- in the service -------------------------------------------------------------------------------

_SIGNALS = {
    signal.SIGKILL: "was killed (SIGKILL)",
    signal.SIGXCPU: "used up its CPU time (SIGXCPU)",
    signal.SIGABRT: "aborted (SIGABRT; typically a failed memory allocation)",
    signal.SIGSEGV: "crashed (SIGSEGV)",
    signal.SIGBUS: "crashed (SIGBUS)",
}


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(_PRELOAD))
    return ctx


_PRELOAD = ("numpy", "pydantic", "qiskit.qpy", "qjm.wire", "qjm.server.app", "qjm.server.sandbox")


class _Reader:
    def __init__(self, process: Any, conn: Any):
        self.process = process
        self.conn = conn


class ReaderPool:
    """``workers`` long-lived reader processes; a dead one is replaced at once.

    They are forked by multiprocessing's ``forkserver`` (a single-threaded process the service
    starts once, with qiskit, pydantic and this module imported), so a replacement is ready in
    milliseconds, not the second a fresh interpreter takes to import qiskit; ``spawn`` where
    there is no forkserver. Both are children of the service's process group.

    :meth:`read` gives a body to an idle reader and waits for its answer (at most
    ``limits.timeout`` seconds); it is safe to call from many threads at once.
    """

    def __init__(self, limits: ReadLimits, workers: int = 2, max_waiting: int = 32):
        self.limits = limits
        self.workers = workers
        # requests reading or waiting for a reader at once; more answer 503 at once, so that
        # waiting submissions never take every thread of the HTTP side's pool
        self.max_waiting = max_waiting
        self._waiting = 0
        self._ctx = _context()
        self._idle: queue.Queue[_Reader] = queue.Queue()
        self._all: set[_Reader] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.replaced = 0  # readers that died or were killed and were replaced

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.workers):
            self._start_one()

    def _start_one(self) -> None:
        threading.Thread(target=self._spawn, name="qjm-reader-start", daemon=True).start()

    def _spawn(self) -> None:
        delay = 0.5
        while True:
            with self._lock:
                if self._closed:
                    return
            parent_end, child_end = self._ctx.Pipe(duplex=True)
            process = self._ctx.Process(
                target=reader_main,
                args=(child_end, asdict(self.limits)),
                name="qjm-reader",
                daemon=True,
            )
            try:
                process.start()
            except Exception:  # noqa: BLE001 - out of processes or memory: try again later
                log.exception("could not start a reader process")
                parent_end.close()
                child_end.close()
                time.sleep(delay)
                delay = min(10.0, delay * 2)
                continue
            child_end.close()
            reader = _Reader(process, parent_end)
            with self._lock:
                self._all.add(reader)
                closed = self._closed
            ready = False
            if not closed:
                try:
                    ready = parent_end.poll(_START_TIMEOUT) and parent_end.recv_bytes() == b"ready"
                except (EOFError, OSError):
                    ready = False
            with self._lock:
                closed = self._closed
                if ready and not closed:
                    self._idle.put(reader)
                    return
            self._end(reader, kill=True)
            if closed:
                return
            log.error("a reader process did not start (exit code %s)", process.exitcode)
            time.sleep(delay)
            delay = min(10.0, delay * 2)

    def stop(self, timeout: float = 5.0) -> None:
        """End every reader: close its pipe (it exits), then SIGKILL what is left."""
        with self._lock:
            self._closed = True
            readers = list(self._all)
        for reader in readers:
            try:
                reader.conn.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for reader in readers:
            reader.process.join(max(0.0, deadline - time.monotonic()))
        for reader in readers:
            self._end(reader, kill=True)

    def _end(self, reader: _Reader, kill: bool = False) -> int | None:
        """Forget ``reader`` (kill it first if asked) and return its exit code."""
        if kill and reader.process.is_alive():
            try:
                reader.process.kill()
            except Exception:  # noqa: BLE001 - gone already
                pass
        reader.process.join(5)
        try:
            reader.conn.close()
        except OSError:
            pass
        with self._lock:
            self._all.discard(reader)
        return reader.process.exitcode

    def _replace(self, reader: _Reader, kill: bool = False) -> int | None:
        code = self._end(reader, kill=kill)
        with self._lock:
            closed = self._closed
            if not closed:
                self.replaced += 1
        if not closed:
            self._start_one()
        return code

    def pids(self) -> list[int]:
        with self._lock:
            return sorted(r.process.pid for r in self._all if r.process.pid)

    # -- reading ---------------------------------------------------------------------------------

    def _checkout(self, deadline: float) -> _Reader:
        while True:
            if self._closed:
                raise Refused("the service is stopping: retry later", 503)
            try:
                reader = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Refused(
                    f"all {self.workers} circuit readers of this service are busy: retry later",
                    503,
                ) from None
            if reader.process.is_alive():
                return reader
            self._replace(reader)  # died while idle (killed from outside): take another

    def read(self, body: bytes) -> Parsed:
        """Read a job body in a reader.

        Raises:
            Refused: the body is refused (400/422 with the reason; 422 when the reader broke a
                limit, crashed or timed out), or no reader was free in time (503).
        """
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise Refused(
                    f"{self._waiting} submissions are being read already: retry later", 503
                )
            self._waiting += 1
        try:
            return self._read(body)
        finally:
            with self._lock:
                self._waiting -= 1

    def _read(self, body: bytes) -> Parsed:
        timeout = self.limits.timeout
        # waiting for a free reader: as long as a read may take, and long enough for a new
        # reader to start when every one was just replaced
        deadline = time.monotonic() + max(timeout, 10.0)
        retried = False
        while True:  # bounded: every turn takes a reader out, and _checkout keeps the deadline
            reader = self._checkout(deadline)
            try:
                reader.conn.send_bytes(body)
                got = reader.conn.poll(max(timeout, 10.0)) and reader.conn.recv_bytes(16) == b"+"
            except (EOFError, OSError, ValueError):
                got = None
            if not got:  # died (killed while idle) before it had the body: another one
                self._replace(reader, kill=True)
                if got is None:
                    continue
                raise Refused("no reader of this service took the job in time: retry later", 503)
            if not reader.conn.poll(timeout):
                self._replace(reader, kill=True)
                log.warning(
                    "a reader took more than %g s over a body; killed and replaced", timeout
                )
                raise Refused(f"{_LIMITS_WORDS}: reading them took more than {timeout:g} s", 422)
            try:
                # the header's JSON escapes non-ASCII text (at most 3 bytes for each byte of the
                # body) and the QPY bytes are 3/4 of their base64 text
                answer = reader.conn.recv_bytes(3 * self.limits.max_payload_bytes + (1 << 20))
            except (EOFError, ConnectionError):  # the reader died
                code = self._replace(reader, kill=True)
                if code == -signal.SIGKILL and not retried:
                    # killed from outside (an operator, the kernel's OOM killer) while it read:
                    # the body is likely innocent, so it gets one more reader
                    log.warning("a reader was killed while reading a body: trying another")
                    retried = True
                    continue
                why = _SIGNALS.get(-code, f"died with exit code {code}") if code else "died"
                log.warning("a reader process %s while reading a body; replaced", why)
                raise Refused(f"{_LIMITS_WORDS}: the reader process {why}", 422) from None
            except OSError as exc:  # an answer over that length; the reader is alive
                self._replace(reader, kill=True)
                raise Refused(f"{_LIMITS_WORDS}: the reader's answer was too long", 422) from exc
            parsed, retire = self._decode(answer)
            if retire:
                self._replace(reader)
            else:
                self._idle.put(reader)
            if isinstance(parsed, Refused):
                raise parsed
            return parsed

    @staticmethod
    def _decode(answer: bytes) -> tuple[Parsed | Refused, bool]:
        """The reader's answer, checked value by value (a reader is not trusted either), and
        whether the reader retires after it."""
        retire = True
        try:
            (size,) = struct.unpack_from("!I", answer, 0)
            header = json.loads(answer[4 : 4 + size])
            qpy = answer[4 + size :]
            retire = header.get("retire") is not False
            refused = header.get("refused")
            if refused is not None:
                status, message = refused
                if not (
                    isinstance(status, int) and 400 <= status < 500 and isinstance(message, str)
                ):
                    raise ValueError("refusal")
                return Refused(message, status), retire
            options, tags = header["options"], header["tags"]
            subtypes, n, error = header["subtypes"], header["n_circuits"], header["error"]
            if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
                raise ValueError("options")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ValueError("tags")
            if subtypes is not None and not (
                isinstance(subtypes, list)
                and all(
                    isinstance(s, list)
                    and len(s) == 3
                    and isinstance(s[0], int)
                    and isinstance(s[1], int)
                    and isinstance(s[2], str)
                    for s in subtypes
                )
            ):
                raise ValueError("subtypes")
            if error is not None:
                status, message = error
                if not (
                    isinstance(status, int) and 400 <= status < 500 and isinstance(message, str)
                ):
                    raise ValueError(f"bad error {error!r}")
                return Parsed(options, tags, subtypes, None, None, (status, message)), retire
            if not (isinstance(n, int) and n > 0 and qpy.startswith(b"QISKIT")):
                raise ValueError("circuits")
            return Parsed(options, tags, subtypes, n, bytes(qpy), None), retire
        except (
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            RecursionError,
            struct.error,
        ) as exc:
            why = f"{_LIMITS_WORDS}: the reader's answer was not understood ({type(exc).__name__})"
            return Refused(why, 422), True
