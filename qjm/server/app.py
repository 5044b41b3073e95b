"""The HTTP side of ``qjm serve``: a FastAPI app over the job store and the runner.

Every ``/v1`` request carries ``Authorization: Bearer TOKEN``; a user sees and cancels only their own
jobs (another user's job id answers 404, exactly like an unknown id). Every error answers
``{"detail": "<what was wrong>"}``.
"""

import asyncio
import gzip
import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from qjm import wire
from qjm.server import page, sandbox
from qjm.server.jobstore import (
    FINAL,
    Gone,
    JobStore,
    Leased,
    NotFound,
    NotReady,
    TooManyPending,
)
from qjm.server.limits import TokenConcurrencyLimit
from qjm.server.runner import Runner, make_backend

log = logging.getLogger("qjm.server")

API_VERSION = "v1"

# Options the service sets itself: resources of the machine, and Python objects JSON cannot carry.
SERVICE_OPTIONS = frozenset(
    {
        "executor",
        "max_job_size",
        "max_shot_size",
        "noise_model",
        "max_memory_mb",
        "max_parallel_threads",
        "max_parallel_experiments",
        "max_parallel_shots",
        "accept_distributed_results",
        "device",
        "cuStateVec_enable",
        "batched_shots_gpu",
        "batched_shots_gpu_max_qubits",
        "num_threads_per_device",
        "blocking_enable",
        "blocking_qubits",
        "chunk_swap_buffer_qubits",
        "mps_omp_threads",
        "runtime_parameter_bind_enable",
    }
)
_INT64 = 2**63


@dataclass
class ServerConfig:
    """Everything ``qjm serve`` is started with."""

    tokens_file: str
    data_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    method: str = "automatic"
    results_once: bool = False
    result_lease: float = 60.0
    latency_ms: float = 0.0
    max_circuits: int = 1000
    max_shots: int = 100_000
    max_clbits: int = 4096
    max_instructions: int = 1_000_000
    parse_workers: int = 2
    parse_memory_mb: int = 1024
    parse_timeout: float = 20.0
    max_payload_bytes: int = 32 * 1024 * 1024
    max_pending: int = 32
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_requests_per_token: int = 64
    job_delay_ms: float = 0.0
    max_attempts: int = 3
    log_level: str = "info"
    access_log: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# -- tokens ---------------------------------------------------------------------------------------


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def _parse_tokens(data: bytes, path: str) -> tuple[dict[bytes, str], list[str], set[bytes]]:
    """The tokens file's bytes, checked as a whole: ``({sha256(token): user}`` of its
    well-formed lines, what is wrong with the others (no token in a message), and the digests
    of every word outside comments (to tell which tokens are still in the file)``)``."""
    errors = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        errors.append(f"{path}: not UTF-8 text (byte {exc.start})")
        text = data.decode("utf-8", "surrogateescape")
    table: dict[bytes, str] = {}
    words: set[bytes] = set()
    for n, line in enumerate(text.split("\n"), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        words.update(_digest(word) for word in parts)
        if len(parts) != 2:
            errors.append(f"{path}:{n}: expected 'NAME TOKEN', got {len(parts)} words")
            continue
        name, token = parts
        digest = _digest(token)
        if digest in table:
            errors.append(f"{path}:{n}: this token is already {table[digest]!r}'s")
            continue
        table[digest] = name
    return table, errors, words


def read_tokens(path: str) -> dict[str, str]:
    """``{sha256(token) in hex: user}`` from a file of ``NAME TOKEN`` lines (blank lines and
    ``#`` comments allowed).

    Raises:
        ValueError: a line that is not ``NAME TOKEN``, or a token given twice (every such line
            is named).
    """
    with open(path, "rb") as f:
        table, errors, _ = _parse_tokens(f.read(), path)
    if errors:
        raise ValueError("; ".join(errors))
    return {digest.hex(): name for digest, name in table.items()}


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Tokens:
    """The tokens file, read again whenever it changes (add a user without a restart).

    Each version of the file is checked as a whole. A version with a malformed line is not
    applied (an error in the log, once, names the line): the last good file stays in force,
    except that its tokens no longer anywhere in the file are revoked at once (an edit that
    removes a token revokes it even when it also breaks a line). Only SHA-256 digests of the
    tokens are kept, and a token is compared with every one of them in constant time."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        signature, data = self._read()
        table, errors, _ = _parse_tokens(data, path)
        if errors:
            raise ValueError("; ".join(errors))
        self._entries: tuple[tuple[bytes, str], ...] = tuple(table.items())
        self._signature: tuple | None = signature
        self._problem: str | None = None

    def _read(self) -> tuple[tuple[int, ...], bytes]:
        with open(self.path, "rb") as f:
            signature = _signature(os.fstat(f.fileno()))
            return signature, f.read()

    def users(self) -> list[str]:
        return sorted({name for _, name in self._entries})

    def _report(self, problem: str) -> None:
        if problem != self._problem:  # once per problem, not once per request
            self._problem = problem
            log.error("%s", problem)

    def reload(self) -> None:
        """Read the file again if it changed since it was last read."""
        try:
            signature = _signature(os.stat(self.path))
        except OSError as exc:
            self._report(f"tokens file {self.path} not reloaded: {exc}; the last one read stays")
            return
        if signature == self._signature:
            return
        with self._lock:
            try:
                signature, data = self._read()
            except OSError as exc:
                self._report(
                    f"tokens file {self.path} not reloaded: {exc}; the last one read stays"
                )
                return
            if signature == self._signature:
                return
            table, errors, words = _parse_tokens(data, self.path)
            self._signature = signature
            if not errors:
                self._entries = tuple(table.items())
                if self._problem is not None:
                    log.warning(
                        "tokens file %s is good again: reloaded (%d users)",
                        self.path,
                        len(self.users()),
                    )
                self._problem = None
                return
            kept = tuple(entry for entry in self._entries if entry[0] in words)
            revoked = sorted(name for digest, name in self._entries if digest not in words)
            self._entries = kept
            self._problem = None  # a new bad version: say so even if it is wrong the same way
            self._report(
                f"tokens file {self.path} not reloaded: {'; '.join(errors)}; the last good file "
                "stays in force"
                + (
                    f", except the tokens no longer in the file, revoked now: "
                    f"{len(revoked)} token(s) of {', '.join(sorted(set(revoked)))}"
                    if revoked
                    else ""
                )
            )

    def user(self, token: str) -> str | None:
        """The user of ``token``, or None."""
        self.reload()
        digest = _digest(token)
        found = None
        for stored, name in self._entries:  # every one, no early exit
            if hmac.compare_digest(stored, digest):
                found = name
        return found


# -- models ---------------------------------------------------------------------------------------

_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
Tag = Annotated[str, StringConstraints(min_length=1, max_length=200)]
StatusName = Literal["QUEUED", "RUNNING", "DONE", "ERROR", "CANCELLED"]


class JobRequest(BaseModel):
    """A job: its circuits, run options and tags."""

    model_config = ConfigDict(extra="forbid")
    circuits: str = Field(
        min_length=1,
        description="The base64 text of one QPY file holding the job's circuits "
        "(qiskit.qpy.dump of a list).",
        json_schema_extra={"pattern": _BASE64, "contentEncoding": "base64"},
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Run options for backend.run (shots, memory, seed_simulator, ...); "
        "GET /v1/limits lists the ones this service takes.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    instruction_subtypes: list[tuple[int, int, str]] | None = Field(
        default=None,
        max_length=100_000,
        description="For Aer's save instructions (save_statevector, ...), whose subtype QPY does "
        "not keep: [circuit index, instruction index, subtype] (single, list, average, c_... ); "
        "without it, each takes its class's default (not per shot, not conditional).",
    )


class JobInfo(BaseModel):
    id: str
    status: StatusName
    created: float = Field(description="UNIX time the job was accepted")
    started: float | None = Field(description="UNIX time its latest run started")
    finished: float | None = Field(description="UNIX time it reached a final status")
    tags: list[str]
    n_circuits: int
    shots: int | None
    error: str | None
    attempts: int = Field(description="times a worker started it (more than 1 after a restart)")
    result_available: bool
    result_consumed: bool
    result_held: bool = Field(
        description="results_once: a reader read the result and has not confirmed it yet (its "
        "lease is live)"
    )
    backend: str


class JobList(BaseModel):
    jobs: list[JobInfo]


class Limits(BaseModel):
    api_version: str
    backend_name: str
    backend_version: str
    num_qubits: int
    basis_gates: list[str]
    instructions: list[str] = Field(
        default_factory=list,
        description="other operations the service's simulator runs (Aer's save_*, set_*, "
        "initialize, kraus...), beyond the basis gates",
    )
    max_circuits: int
    max_shots: int
    max_qubits: dict[str, int] = Field(
        description="qubits per circuit, by simulation method: the job's 'method' run option, "
        "else the service's (num_qubits is the service's method's; 'automatic' may pick any "
        "method, so it takes the largest)"
    )
    max_clbits: int = Field(description="classical bits per circuit")
    max_instructions: int = Field(description="instructions per circuit")
    max_payload_bytes: int
    max_pending_jobs: int
    results_once: bool
    result_lease_seconds: float = Field(
        description="with results_once: how long a result read but not confirmed stays held "
        "for its reader"
    )
    header_timeout_seconds: float = Field(
        description="a request's line and headers must arrive within this time (from the "
        "connection's opening, or the first byte of a later request on a kept-alive "
        "connection); else 408 and the connection is closed"
    )
    body_timeout_seconds: float = Field(
        description="a request's body must arrive within this time after its headers (a "
        "total, not an idle time: upload at least max_payload_bytes / body_timeout_seconds "
        "bytes a second); else 408 and the connection is closed"
    )
    max_requests_per_token: int = Field(
        description="requests in progress at once per bearer token; one more answers 429 "
        "with Retry-After"
    )
    result_formats: list[str]
    qpy_version: int
    options: dict[str, Any] = Field(description="run options this service takes, with defaults")


class Error(BaseModel):
    detail: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Error} for code in codes}


# -- middleware -----------------------------------------------------------------------------------


class LatencyMiddleware:
    """Delays every HTTP response by ``seconds`` without holding a worker thread (an ``await``
    on the event loop), like the round trip to a provider in another region."""

    def __init__(self, app: Any, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.seconds > 0:
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


# -- options --------------------------------------------------------------------------------------


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _json_default(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def check_options(
    options: dict[str, Any], defaults: dict[str, Any], backend: Any, max_shots: int
) -> dict[str, Any]:
    """The run options of a job, checked against the backend; raises :class:`BadRequest`."""
    import difflib

    out = {}
    for name, value in options.items():
        # before any message echoes them, and before difflib compares a long name
        if len(name) > 100:
            raise BadRequest(
                f"run option {name[:40]!r}... has a name of {len(name)} characters; names have "
                "at most 100"
            )
        if isinstance(value, str) and len(value) > 1000:
            raise BadRequest(
                f"run option {name!r} is a string of {len(value)} characters; this service "
                "takes at most 1000"
            )
        if name in SERVICE_OPTIONS:
            raise BadRequest(
                f"run option {name!r} is set by this service and cannot be chosen per job"
            )
        if name not in defaults:
            close = difflib.get_close_matches(name, defaults, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadRequest(
                f"unknown run option {name!r}{hint}: this service's backend takes "
                f"{', '.join(sorted(defaults))}"
            )
        if isinstance(value, (list, dict)):
            raise BadRequest(f"run option {name!r} must be a number, string, boolean or null")
        if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            raise BadRequest(f"run option {name!r} = {value} is out of the 64-bit integer range")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"run option {name!r} must be a finite number")
        default = defaults[name]
        if value is not None and default is not None:
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, str):
                ok = isinstance(value, str)
            else:
                ok = True
            if not ok:
                kind = {
                    bool: "true or false",
                    int: "an integer",
                    float: "a number",
                    str: "a string",
                }
                raise BadRequest(
                    f"run option {name!r} must be {kind.get(type(default), type(default).__name__)}"
                    f" (like its default {default!r}), not {type(value).__name__} {value!r}"
                )
        out[name] = value
    shots = out.get("shots")
    if "shots" in out:
        if isinstance(shots, bool) or not isinstance(shots, int):
            raise BadRequest(f"shots must be an integer, not {shots!r}")
        if shots < 1:
            raise BadRequest(f"shots must be at least 1, got {shots}")
        if shots > max_shots:
            raise BadRequest(
                f"shots = {shots} is over this service's limit of {max_shots} shots per "
                "experiment (max_shots, see GET /v1/limits)"
            )
    if out.get("seed_simulator") is not None and (
        isinstance(out["seed_simulator"], bool) or not isinstance(out["seed_simulator"], int)
    ):
        raise BadRequest(f"seed_simulator must be an integer, not {out['seed_simulator']!r}")
    if out.get("memory") is not None and not isinstance(out["memory"], bool):
        raise BadRequest(f"memory must be true or false, not {out['memory']!r}")
    for name, choices in _choices(backend).items():
        if name in out and out[name] not in choices:
            raise BadRequest(
                f"run option {name!r} must be one of {sorted(choices)}, not {out[name]!r}"
            )
    validators = getattr(getattr(backend, "options", None), "validator", {}) or {}
    for name, value in out.items():
        rule = validators.get(name)
        try:
            if isinstance(rule, tuple) and not rule[0] <= value <= rule[1]:
                raise BadRequest(f"run option {name!r} must be between {rule[0]} and {rule[1]}")
            if isinstance(rule, list) and value not in rule:
                raise BadRequest(f"run option {name!r} must be one of {rule}")
        except TypeError as exc:
            raise BadRequest(f"run option {name!r} has the wrong type: {exc}") from exc
    return out


def _choices(backend: Any) -> dict[str, set]:
    out: dict[str, set] = {}
    methods = getattr(backend, "available_methods", None)
    if callable(methods):
        out["method"] = set(methods())
    out["precision"] = {"single", "double"}
    return out


# -- the app ----------------------------------------------------------------------------------------


def _detail_of_validation(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        parts.append(f"{loc}: {err.get('msg')} (got {shown})" if loc else str(err.get("msg")))
    return "invalid request: " + "; ".join(parts)


def _wants(request: Request) -> str | None:
    """The result format the client asks for with ``Accept``, or None if none is offered."""
    accept = request.headers.get("accept", "").lower()
    if not accept.strip():
        return wire.MEDIA_JSON
    offered = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        offered[media.strip()] = q
    best, best_q = None, 0.0
    for media in (wire.MEDIA_COLUMNAR, wire.MEDIA_JSON):
        q = offered.get(media, 0.0)
        if q == 0.0 and media == wire.MEDIA_JSON:
            q = max(offered.get("application/*", 0.0), offered.get("*/*", 0.0)) * 0.99
        if q > best_q:
            best, best_q = media, q
    return best


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI app of ``qjm serve`` for ``config``."""
    store = JobStore(config.data_dir)
    tokens = Tokens(config.tokens_file)
    if not tokens.users():
        log.warning("the tokens file %s names no users: every request will answer 401", tokens.path)
    backend = make_backend(config.method)
    runner = Runner(
        store,
        workers=config.workers,
        method=config.method,
        job_delay=config.job_delay_ms / 1000.0,
        max_attempts=config.max_attempts,
    )
    defaults = {
        name: _json_default(value)
        for name, value in backend.options.items()
        if name not in SERVICE_OPTIONS
    }
    from qiskit import QuantumCircuit, qpy
    from qiskit.circuit.library import get_standard_gate_name_mapping

    standard = get_standard_gate_name_mapping()
    basis = sorted(n for n in backend.target.operation_names if n in standard)
    backend_name = str(backend.name)
    limits = Limits(
        api_version=API_VERSION,
        backend_name=backend_name,
        backend_version=str(getattr(backend, "backend_version", "")),
        num_qubits=int(backend.target.num_qubits or 0),
        basis_gates=basis,
        instructions=sorted(n for n in backend.target.operation_names if n not in standard),
        max_circuits=config.max_circuits,
        max_shots=config.max_shots,
        max_qubits=sandbox.qubit_limits(backend, config.method),
        max_clbits=config.max_clbits,
        max_instructions=config.max_instructions,
        max_payload_bytes=config.max_payload_bytes,
        max_pending_jobs=config.max_pending,
        results_once=config.results_once,
        result_lease_seconds=config.result_lease,
        header_timeout_seconds=config.header_timeout,
        body_timeout_seconds=config.body_timeout,
        max_requests_per_token=config.max_requests_per_token,
        result_formats=list(wire.RESULT_FORMATS),
        qpy_version=qpy.QPY_VERSION,
        options=defaults,
    )
    # clients' bodies are parsed there, never in this process (qjm/server/sandbox.py)
    readers = sandbox.ReaderPool(
        sandbox.ReadLimits(
            max_circuits=config.max_circuits,
            max_qubits=limits.max_qubits,
            method=config.method,
            max_clbits=config.max_clbits,
            max_instructions=config.max_instructions,
            max_payload_bytes=config.max_payload_bytes,
            memory_mb=config.parse_memory_mb,
            timeout=config.parse_timeout,
        ),
        workers=config.parse_workers,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = 64
        requeued, failed = store.recover(config.max_attempts)
        counts = store.counts()
        log.warning(
            "qjm serve: %s on http://%s:%s, %d worker(s); jobs in %s: %s; requeued %d, "
            "failed %d after restarts",
            backend_name,
            config.host,
            config.port,
            config.workers,
            store.path,
            counts or "none",
            requeued,
            failed,
        )
        readers.start()
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            readers.stop()

    app = FastAPI(
        title="qjm job service",
        version=API_VERSION,
        description="Runs quantum circuits on a local Qiskit backend for many users; see "
        "docs/remote.md. Every /v1 request needs 'Authorization: Bearer TOKEN'.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.runner = runner
    app.state.readers = readers
    app.state.config = config
    if config.latency_ms > 0:
        app.add_middleware(LatencyMiddleware, seconds=config.latency_ms / 1000.0)
    # outermost: a request waiting out the latency counts as in progress
    app.add_middleware(TokenConcurrencyLimit, limit=config.max_requests_per_token)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # the client went away (or was dropped for a body that did not arrive in time) while
        # its body was read: nobody to answer, nothing to log as an error
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _detail_of_validation(exc)}, status_code=422)

    @app.exception_handler(BadRequest)
    async def _bad(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    bearer = HTTPBearer(auto_error=False, description="a token from the service's tokens file")

    def user_of(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        if credentials is None:
            raise HTTPException(
                401,
                "no bearer token: send the header 'Authorization: Bearer TOKEN'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = tokens.user(credentials.credentials)
        if user is None:
            raise HTTPException(
                401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return user

    User = Annotated[str, Depends(user_of)]
    JobId = Annotated[str, Path(max_length=100, description="the job id POST /v1/jobs gave")]

    def info(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"],
            "status": row["status"],
            "created": row["created"],
            "started": row["started"],
            "finished": row["finished"],
            "tags": row["tags"],
            "n_circuits": row["n_circuits"],
            "shots": row["shots"],
            "error": row["error"],
            "attempts": row["attempts"],
            "result_available": row["result_state"] == "stored",
            "result_consumed": row["result_state"] == "consumed",
            "result_held": row["result_state"] != "consumed"
            and (row["lease_until"] or 0) > time.time(),
            "backend": backend_name,
        }

    def not_found(job_id: str) -> HTTPException:
        return HTTPException(404, f"no job {job_id!r}")

    def gone(job_id: str, exc: Gone) -> HTTPException:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(exc.consumed or 0))
        return HTTPException(
            410,
            f"the result of job {job_id!r} was already read (confirmed at {when}); this service "
            "serves each result once (--results-once)",
        )

    def leased(job_id: str, exc: Leased) -> HTTPException:
        wait = max(1, math.ceil(exc.seconds))
        return HTTPException(
            409,
            f"the result of job {job_id!r} is held by another reader who has not confirmed it "
            f"yet; it is readable again if that reader does not confirm it within {wait} s",
            headers={"Retry-After": str(wait), "X-Result-Leased": "1", "X-Job-Status": "DONE"},
        )

    def busy(user: str, pending: int) -> HTTPException:
        retry = max(1, min(60, math.ceil(runner.mean_seconds)))
        return HTTPException(
            429,
            f"user {user!r} has {pending} job(s) QUEUED or RUNNING; this service takes at most "
            f"{config.max_pending} per user: retry after {retry} s",
            headers={"Retry-After": str(retry)},
        )

    def too_large(size: int | None) -> HTTPException:
        what = f"request body of {size} bytes" if size is not None else "request body"
        return HTTPException(
            413,
            f"{what} is over this service's limit of {config.max_payload_bytes} bytes "
            "(max_payload_bytes, see GET /v1/limits): split the job into smaller ones",
            headers={"X-Max-Payload-Bytes": str(config.max_payload_bytes)},
        )

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"status": "ok", "api_version": API_VERSION}

    status_page = page.render(backend_name, API_VERSION)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        # the status page (qjm/server/page.py): needs no token to load; its script asks
        # GET /v1/jobs with the token the user enters
        return Response(status_page, media_type="text/html; charset=utf-8", headers=page.HEADERS)

    @app.get("/v1/limits", response_model=Limits, responses=_errors(401), operation_id="get_limits")
    def get_limits(user: User) -> Limits:
        """What this service takes: job and payload limits, result formats, run options."""
        return limits

    example = QuantumCircuit(2, 2, name="bell")
    example.h(0)
    example.cx(0, 1)
    example.measure([0, 1], [0, 1])
    submit_schema = JobRequest.model_json_schema()
    submit_schema["examples"] = [
        {
            "circuits": wire.b64(wire.dump_circuits([example])),
            "options": {"shots": 100, "seed_simulator": 1},
            "tags": ["example"],
        }
    ]
    submit_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": submit_schema}},
        }
    }
    job_links = {
        name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
        for name, op in (
            ("GetJob", "get_job"),
            ("GetResult", "get_result"),
            ("CancelJob", "cancel_job"),
        )
    }

    @app.post(
        "/v1/jobs",
        status_code=201,
        response_model=JobInfo,
        responses={
            201: {"description": "the job, queued", "links": job_links},
            200: {
                "model": JobInfo,
                "description": "the job submitted before with this Idempotency-Key",
            },
            **_errors(400, 401, 413, 415, 422, 429),
        },
        openapi_extra=submit_body,
        operation_id="submit_job",
    )
    async def submit(request: Request, user: User) -> Response:
        """Queue a job. The body is JSON (see JobRequest); it is refused with 413 when it is over
        max_payload_bytes (the Content-Length is checked before the body is read), and with 429
        (and Retry-After) when the user has max_pending_jobs jobs QUEUED or RUNNING already."""
        limit = config.max_payload_bytes
        length = request.headers.get("content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise BadRequest(f"Content-Length {length!r} is not a number") from None
            if declared > limit:
                await _drain(request, limit)
                raise too_large(declared)
        ctype = request.headers.get("content-type", "application/json").lower()
        if "json" not in ctype:
            raise BadRequest(
                f"the body must be JSON (Content-Type: application/json), not {ctype!r}", 415
            )
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= 200:
            raise BadRequest("Idempotency-Key must be 1 to 200 characters")
        if key is not None:  # sent again: the job it made, whatever the limits say now
            earlier = await run_in_threadpool(store.by_key, user, key)
            if earlier is not None:
                await _drain(request, limit)
                return JSONResponse(
                    info(earlier),
                    status_code=200,
                    headers={
                        "Location": f"/v1/jobs/{earlier['id']}",
                        "X-Job-Status": earlier["status"],
                    },
                )
        pending = await run_in_threadpool(store.pending, user)
        if pending >= config.max_pending:
            await _drain(request, limit)
            raise busy(user, pending)
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                await _drain(request, limit)
                raise too_large(None)
            chunks.append(chunk)
        body = b"".join(chunks)
        row, created = await run_in_threadpool(_accept, user, body, key)
        if created:
            runner.notify()
        return JSONResponse(
            info(row),
            status_code=201 if created else 200,
            headers={"Location": f"/v1/jobs/{row['id']}", "X-Job-Status": row["status"]},
        )

    def _accept(user: str, body: bytes, key: str | None) -> tuple[dict[str, Any], bool]:
        # JSON, JobRequest, QPY headers, qpy.load, max_circuits, instruction_subtypes: all in
        # a reader process with memory and CPU limits (sandbox.py); back come plain values
        try:
            parsed = readers.read(body)
        except sandbox.Refused as exc:
            if exc.status == 503:
                raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
            raise BadRequest(str(exc), exc.status) from None
        options = check_options(parsed.options, defaults, backend, config.max_shots)
        if parsed.error is not None:
            raise BadRequest(parsed.error[1], parsed.error[0])
        try:
            return store.add(
                user,
                parsed.qpy,
                parsed.n_circuits,
                options,
                parsed.tags,
                config.max_pending,
                key,
                parsed.subtypes,
            )
        except TooManyPending as exc:
            raise busy(user, exc.pending) from exc

    @app.get(
        "/v1/jobs", response_model=JobList, responses=_errors(401, 422), operation_id="list_jobs"
    )
    def list_jobs(
        request: Request,
        user: User,
        tag: Annotated[
            list[Tag] | None,
            # a job has at most 50; and each is one more level of SQLite's expression tree
            Query(max_length=50, description="only jobs with every one of these tags"),
        ] = None,
        status: Annotated[
            list[StatusName] | None, Query(description="only jobs in one of these")
        ] = None,
        since: Annotated[
            float | None, Query(description="created at or after (UNIX time)", allow_inf_nan=False)
        ] = None,
        until: Annotated[
            float | None, Query(description="created before (UNIX time)", allow_inf_nan=False)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        id: Annotated[
            list[Annotated[str, StringConstraints(max_length=100)]] | None,
            Query(max_length=200, description="only these jobs (look up many ids at once)"),
        ] = None,
    ) -> dict[str, Any]:
        """The user's jobs, newest first."""
        for name in ("since", "until", "limit"):
            if len(request.query_params.getlist(name)) > 1:
                raise HTTPException(422, f"give the query parameter {name!r} at most once")
        rows = store.list(user, tag or [], status or [], since, until, limit, id or [])
        return {"jobs": [info(r) for r in rows]}

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobInfo,
        responses=_errors(401, 404, 422),
        operation_id="get_job",
    )
    def get_job(job_id: JobId, user: User) -> Response:
        """The job's status, times, tags and error message."""
        try:
            row = store.get(job_id, user)
        except NotFound:
            raise not_found(job_id) from None
        return JSONResponse(info(row), headers={"X-Job-Status": row["status"]})

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        response_model=JobInfo,
        responses=_errors(401, 404, 409, 422),
        operation_id="cancel_job",
    )
    def cancel_job(job_id: JobId, user: User) -> Response:
        """Cancel a QUEUED or RUNNING job; 409 when it had already finished."""
        try:
            row, cancelled = store.cancel(job_id, user)
        except NotFound:
            raise not_found(job_id) from None
        if not cancelled:
            raise HTTPException(
                409,
                f"job {job_id!r} is {row['status']} already and cannot be cancelled",
                headers={"X-Job-Status": row["status"]},
            )
        return JSONResponse(info(row), headers={"X-Job-Status": row["status"]})

    @app.get(
        "/v1/jobs/{job_id}/result",
        responses={
            200: {
                "description": "The result, as the Accept header asks: "
                f"{wire.MEDIA_COLUMNAR} (qjm's columnar arrays, what RemoteBackend uses) or "
                "application/json (qiskit's Result.to_dict()). gzip-compressed when "
                "Accept-Encoding allows.",
                "content": {
                    wire.MEDIA_COLUMNAR: {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"type": "object"}},
                },
            },
            **_errors(401, 404, 406, 409, 410, 422),
        },
        operation_id="get_result",
    )
    def get_result(
        job_id: JobId,
        request: Request,
        user: User,
        lease: Annotated[str | None, Header(alias="X-Result-Lease", max_length=64)] = None,
    ) -> Response:
        """The job's result. 409 while the job is not finished (or when it ended without a
        result). When the service serves each result once (``results_once`` in /v1/limits), the
        reader gets it under a read lease, named in the ``X-Result-Lease`` response header
        (send your own id in the request header to read it again after a lost response): it
        confirms it has the result with ``DELETE /v1/jobs/{id}/result`` and that lease; until
        then other readers get 409 with ``Retry-After``, and a lease that expires unconfirmed
        makes the result readable again. 410 once it was confirmed."""
        media = _wants(request)
        if media is None:
            raise HTTPException(
                406, f"this service sends results as {' or '.join(wire.RESULT_FORMATS)}"
            )
        try:
            row, packed, lease = store.result(
                job_id, user, config.results_once, lease, config.result_lease
            )
        except NotFound:
            raise not_found(job_id) from None
        except Gone as exc:
            raise gone(job_id, exc) from None
        except Leased as exc:
            raise leased(job_id, exc) from None
        except NotReady as exc:
            if exc.status in FINAL:
                why = f"job {job_id!r} ended as {exc.status} without a result"
                if exc.error:
                    why += f": {exc.error}"
            else:
                why = f"job {job_id!r} is {exc.status}: its result is not ready yet"
            raise HTTPException(409, why, headers={"X-Job-Status": exc.status}) from None
        gzip_ok = "gzip" in request.headers.get("accept-encoding", "").lower()
        headers = {"X-Job-Status": row["status"], "Vary": "Accept, Accept-Encoding"}
        if lease is not None:
            headers["X-Result-Lease"] = lease
        if media == wire.MEDIA_COLUMNAR:
            if gzip_ok:
                headers["Content-Encoding"] = "gzip"
                return Response(packed, media_type=media, headers=headers)
            return Response(gzip.decompress(packed), media_type=media, headers=headers)
        record = wire.decode_columnar(gzip.decompress(packed))
        body = wire.encode_result_json(record.to_result())
        if gzip_ok:
            headers["Content-Encoding"] = "gzip"
            body = gzip.compress(body, compresslevel=1)
        return Response(body, media_type=wire.MEDIA_JSON, headers=headers)

    @app.delete(
        "/v1/jobs/{job_id}/result",
        status_code=204,
        responses=_errors(401, 404, 409, 410, 422),
        operation_id="confirm_result",
    )
    def confirm_result(
        job_id: JobId,
        user: User,
        lease: Annotated[str | None, Header(alias="X-Result-Lease", max_length=64)] = None,
    ) -> Response:
        """The reader has the result and kept it: the service deletes it for good (later reads
        get 410). In results-once mode send the ``X-Result-Lease`` the read gave; confirming
        twice with it is harmless. 409 while another reader's lease is live, or when the job
        has no result."""
        try:
            row = store.confirm(job_id, user, lease)
        except NotFound:
            raise not_found(job_id) from None
        except Gone as exc:
            raise gone(job_id, exc) from None
        except Leased as exc:
            raise leased(job_id, exc) from None
        except NotReady as exc:
            raise HTTPException(
                409,
                f"job {job_id!r} is {exc.status} and has no result to confirm",
                headers={"X-Job-Status": exc.status},
            ) from None
        return Response(status_code=204, headers={"X-Job-Status": row["status"]})

    return app


def _check_subtypes(subtypes: list | None, circuits: list) -> list | None:
    from qjm.server.runner import _AER_SAVES, SUBTYPES

    if not subtypes:
        return None
    for ci, ii, subtype in subtypes:
        where = f"instruction_subtypes entry {[ci, ii, subtype]!r:.120}"
        if not 0 <= ci < len(circuits):
            raise BadRequest(f"{where}: there is no circuit {ci}")
        data = circuits[ci].data
        if not 0 <= ii < len(data):
            raise BadRequest(f"{where}: circuit {ci} has no instruction {ii}")
        if data[ii].operation.name not in _AER_SAVES:
            raise BadRequest(
                f"{where}: instruction {ii} is {data[ii].operation.name!r}, not a save instruction"
            )
        if subtype not in SUBTYPES:
            raise BadRequest(f"{where}: the subtype must be one of {sorted(SUBTYPES)}")
    return [list(x) for x in subtypes]


async def _drain(request: Request, limit: int) -> None:
    """Read and drop what the client is still sending (up to 4 x ``limit`` bytes), so that it
    reads the error response instead of a reset connection."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > 4 * limit:
                break
    except Exception:  # noqa: BLE001 - the client went away: nothing to answer
        pass
