"""A qiskit backend that runs circuits on a ``qjm serve`` job service over HTTP.

.. code-block:: python

    from qjm.remote import RemoteBackend

    backend = RemoteBackend("http://simhost:8000", token="...")   # reads GET /v1/limits
    job = backend.run(circuits, shots=1000, memory=True)            # POST /v1/jobs (QPY)
    job.status(); job.result(timeout=600)                           # a qiskit Result
    job.columnar_result()                                           # qjm's JobRecord, no hex strings
    backend.retrieve_job(job.job_id()); backend.jobs(tags=["sweep"], limit=10)

One ``requests.Session`` carries every request, with a connection pool of ``pool_size`` connections
(make it at least the number of threads that use the backend at once: ``max_workers`` of the job
manager) and a connect and a read timeout on every request. Results come in qjm's columnar format
(:mod:`qjm.wire`): numpy arrays straight from the bytes, nothing unpickled.

Errors are :class:`qiskit.exceptions.QiskitError` subclasses carrying the service's message:
:class:`AuthenticationError` (401), :class:`JobNotFoundError` (404), :class:`InvalidRequestError`
(other 4xx), :class:`PayloadTooLargeError` (413, ``limit`` in bytes), :class:`ServiceBusyError`
(429, ``retry_after`` in seconds), :class:`ResultConsumedError` (410, also a ``JobError``),
:class:`ServiceConnectionError` (the network; also a ``JobError``), :class:`ServiceError` (5xx).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
from qiskit.circuit import QuantumCircuit
from qiskit.exceptions import QiskitError
from qiskit.providers import BackendV2, JobError, JobStatus, JobTimeoutError, JobV1, Options
from qiskit.result import Result

from qjm import wire
from qjm.retry import never_sent

__all__ = [
    "RemoteBackend",
    "RemoteJob",
    "RemoteError",
    "AuthenticationError",
    "JobNotFoundError",
    "InvalidRequestError",
    "PayloadTooLargeError",
    "ServiceBusyError",
    "ResultConsumedError",
    "ServiceConnectionError",
    "ServiceError",
]

DEFAULT_TIMEOUT = (5.0, 60.0)
_FINAL = {"DONE", "ERROR", "CANCELLED"}
_POLL_FIRST = 0.05
_POLL_MAX = 1.0


# -- errors -----------------------------------------------------------------------------------


class RemoteError(QiskitError):
    """An error from the job service (or from reaching it).

    Attributes:
        status_code: the HTTP status, or None when no answer came.
        detail: the service's message.
    """

    def __init__(self, message: str, status_code: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail if detail is not None else message


class AuthenticationError(RemoteError):
    """401: no token, or a token the service does not know."""


class JobNotFoundError(RemoteError):
    """404: no such job for this user (another user's job looks the same)."""


class InvalidRequestError(RemoteError):
    """400/406/415/422: the service refused the request as malformed; the message says why."""


class PayloadTooLargeError(RemoteError):
    """413: the request body is over the service's limit.

    Attributes:
        limit: the service's ``max_payload_bytes``.
        size: the size of the refused body, when known.
    """

    def __init__(self, message: str, limit: int | None, size: int | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.limit = limit
        self.size = size


class ServiceBusyError(RemoteError):
    """429: the user has as many jobs pending as the service allows.

    Attributes:
        retry_after: seconds to wait before submitting again (the ``Retry-After`` header).
    """

    def __init__(self, message: str, retry_after: float, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ResultConsumedError(RemoteError, JobError):
    """410: the service serves each result once, and this one was read already."""


class ServiceConnectionError(RemoteError, JobError):
    """The service could not be reached, or the connection broke (chained from the cause)."""


class ServiceError(RemoteError):
    """5xx: the service failed."""


def _detail(resp: Any) -> str:
    try:
        data = resp.json()
    except ValueError:
        return (resp.text or resp.reason or "").strip()[:500]
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail) if detail is not None else json.dumps(data)[:500]


def _retry_after(value: str | None) -> float:
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    return 1.0


def _error_for(resp: Any, what: str) -> RemoteError:
    code = resp.status_code
    detail = _detail(resp)
    message = f"{what}: {code} {resp.reason}: {detail}"
    if code == 401:
        return AuthenticationError(message, status_code=code, detail=detail)
    if code == 404:
        return JobNotFoundError(message, status_code=code, detail=detail)
    if code == 410:
        return ResultConsumedError(
            f"{what}: the result was already read, and the service serves each result only "
            f"once (410 Gone): {detail}",
            status_code=code,
            detail=detail,
        )
    if code == 413:
        limit = resp.headers.get("X-Max-Payload-Bytes")
        if limit is None:
            m = re.search(r"limit of (\d+) bytes", detail)
            limit = m.group(1) if m else None
        return PayloadTooLargeError(
            message, int(limit) if limit else None, status_code=code, detail=detail
        )
    if code == 429:
        return ServiceBusyError(
            message, _retry_after(resp.headers.get("Retry-After")), status_code=code, detail=detail
        )
    if code >= 500:
        return ServiceError(message, status_code=code, detail=detail)
    return InvalidRequestError(message, status_code=code, detail=detail)


def _jsonable(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(
        f"run option {name}={value!r} cannot be sent to the service: only numbers, strings, "
        "booleans and None travel as run options"
    )


def _save_subtypes(circuits: list) -> list[list]:
    """``[circuit, instruction, subtype]`` of every Aer save instruction: QPY keeps their name,
    label and parameters but not their subtype (per shot, conditional), which the service needs
    to rebuild them."""
    out = []
    for ci, circuit in enumerate(circuits):
        if not any(name.startswith("save_") for name in circuit.count_ops()):
            continue
        for ii, inst in enumerate(circuit.data):
            subtype = getattr(inst.operation, "_subtype", None)
            if subtype is not None and inst.operation.name.startswith("save_"):
                out.append([ci, ii, str(subtype)])
    return out


# -- jobs ---------------------------------------------------------------------------------------


class RemoteJob(JobV1):
    """A job on a ``qjm serve`` service.

    ``result()`` and ``columnar_result()`` fetch the result once and keep it, so either may be
    called any number of times, from any thread, even when the service serves each result only
    once. There the job reads it under a read lease of its own (a response lost in transit is
    read again) and confirms it (``confirm_result()``) once it has it; the job manager passes
    ``confirm=False`` and confirms only after its store has committed the result.
    """

    def __init__(self, backend: RemoteBackend, job_id: str, info: dict[str, Any] | None = None):
        super().__init__(backend, job_id)
        self._info = info
        self._lock = threading.Lock()
        self._record: Any = None
        self._result: Result | None = None
        self.result_wire_bytes: int | None = None  # bytes of the result as they came over the wire
        # this reader's read lease (results served once); the job manager names it after the
        # job's place in its set, so that a new process reading for it is the same reader
        self.result_lease = uuid.uuid4().hex
        self._confirmed = False

    def submit(self) -> None:
        raise JobError(
            "a RemoteJob is submitted by RemoteBackend.run(); it cannot be submitted again"
        )

    # -- state ----------------------------------------------------------------------------------

    def info(self, refresh: bool = True) -> dict[str, Any]:
        """The service's record of the job: status, created/started/finished (UNIX times),
        tags, n_circuits, shots, error, attempts, result_available, result_consumed."""
        if refresh and not (self._info and self._info["status"] in _FINAL):
            self._info = self._backend._json("GET", f"/v1/jobs/{self._job_id}", what=self._what())
        return dict(self._info or {})

    def status(self) -> JobStatus:
        return JobStatus[self.info()["status"]]

    def tags(self) -> list[str]:
        return list(self.info(refresh=self._info is None).get("tags", []))

    def error_message(self) -> str | None:
        """Why the job failed or was cancelled, if it was."""
        return self.info().get("error")

    def cancel(self) -> bool:
        """Cancel the job; False when it had finished already."""
        resp = self._backend._request(
            "POST", f"/v1/jobs/{self._job_id}/cancel", what=self._what("cancel"), ok=(200, 409)
        )
        if resp.status_code == 200:
            self._info = resp.json()
            return True
        self._info = None
        return False

    def _what(self, action: str = "status of") -> str:
        return f"{action} job {self._job_id}"

    # -- results ----------------------------------------------------------------------------------

    def result(self, timeout: float | None = None, confirm: bool = True) -> Result:
        """The job's ``qiskit.result.Result``, waiting up to ``timeout`` seconds (None: for ever)
        for the job to finish.

        Raises:
            JobTimeoutError: the job did not finish in time.
            JobError: it was cancelled or failed without a result; or its result was read
                before (``ResultConsumedError``); or the service could not be reached
                (``ServiceConnectionError``).
        """
        record = self.columnar_result(timeout=timeout, confirm=confirm)
        with self._lock:
            if self._result is None:
                self._result = record.to_result()
            return self._result

    def columnar_result(self, timeout: float | None = None, confirm: bool = True) -> Any:
        """The job's result as a :class:`qjm.records.JobRecord` (count and memory arrays
        straight from the wire); the same waiting and errors as :meth:`result`.

        Args:
            timeout: seconds to wait for the job to finish (None: for ever).
            confirm: on a service that serves each result once, confirm at once that the result
                arrived (:meth:`confirm_result`). Pass False to confirm later, after keeping it
                somewhere safe; an unconfirmed result becomes readable again when the service's
                read lease (``result_lease_seconds`` in its limits) expires.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if deadline is None else max(0.0, timeout)):
            raise JobTimeoutError(f"timed out waiting for the result of job {self._job_id}")
        try:
            if self._record is None:
                self._record = self._fetch(deadline)
            record = self._record
        finally:
            self._lock.release()
        if confirm:
            self.confirm_result()
        return record

    @property
    def needs_confirmation(self) -> bool:
        """True while the service serves each result once and this job has not confirmed its
        result."""
        return self._backend.results_once and not self._confirmed

    def confirm_result(self, kept: bool = False) -> bool:
        """Tell a service that serves each result once that this job's result arrived and is
        kept, so it deletes it (later reads get 410). True when confirmed (now or before);
        False when there is nothing to confirm (the service keeps results, or this job read
        none and ``kept`` is False). ``kept=True`` confirms a result kept elsewhere (read by an
        earlier process under the same ``result_lease``). Sending it again is safe."""
        if not self._backend.results_once or (self._record is None and not kept):
            return False
        with self._lock:
            if not self._confirmed:
                self._backend._request(
                    "DELETE",
                    f"/v1/jobs/{self._job_id}/result",
                    what=f"confirm the result of job {self._job_id}",
                    ok=(204,),
                    headers={"X-Result-Lease": self.result_lease},
                    repeatable=True,  # the same lease confirms twice harmlessly
                )
                self._confirmed = True
        return True

    def _fetch(self, deadline: float | None) -> Any:
        poll = _POLL_FIRST
        what = f"result of job {self._job_id}"
        while True:
            resp = self._backend._request(
                "GET",
                f"/v1/jobs/{self._job_id}/result",
                what=what,
                ok=(200, 409),
                # a result served once is read under this job's lease: reading it again after
                # a lost response is safe
                headers={"Accept": wire.MEDIA_COLUMNAR, "X-Result-Lease": self.result_lease},
            )
            status = resp.headers.get("X-Job-Status")
            if resp.status_code == 200:
                length = resp.headers.get("Content-Length")
                self.result_wire_bytes = int(length) if length else len(resp.content)
                try:
                    record = wire.decode_columnar(resp.content)
                except wire.WireError as exc:
                    raise JobError(
                        f"{what}: the service sent a result qjm cannot read: {exc}"
                    ) from exc
                if status in _FINAL and self._info is not None:
                    self._info = dict(self._info, status=status)
                return record
            leased = resp.headers.get("X-Result-Leased") is not None
            if status in _FINAL and not leased:
                self._info = None
                raise JobError(f"{what}: {_detail(resp)}")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if leased:
                    raise JobTimeoutError(f"timed out waiting for the {what}: {_detail(resp)}")
                raise JobTimeoutError(
                    f"timed out waiting for job {self._job_id} (it is {status or 'not finished'})"
                )
            if leased:
                # another reader (a process that was killed before it confirmed?) holds it:
                # it is ours to read when that reader's lease expires
                poll = max(poll, min(_retry_after(resp.headers.get("Retry-After")), 5.0))
            wait = poll if deadline is None else min(poll, deadline - now)
            time.sleep(max(0.0, wait))
            poll = min(poll * 1.5, _POLL_MAX)

    def __repr__(self) -> str:
        return f"RemoteJob({self._job_id!r}, backend={self._backend.url!r})"


# -- the backend --------------------------------------------------------------------------------


class RemoteBackend(BackendV2):
    """The backend of a ``qjm serve`` service, as a qiskit ``BackendV2``.

    Args:
        url: the service, e.g. ``"http://127.0.0.1:8000"``.
        token: the user's bearer token (a line of the service's tokens file).
        timeout: ``(connect, read)`` seconds for every request (or one number for both).
        pool_size: connections kept open to the service; at least the number of threads that
            use this backend at once.
        name: the backend's name (default: the name of the service's backend).

    Raises:
        AuthenticationError: the service does not know the token.
        ServiceConnectionError: the service could not be reached.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        pool_size: int = 32,
        name: str | None = None,
        retries: int = 3,
    ):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.url = url.rstrip("/")
        if not re.match(r"^https?://", self.url):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        self._timeout = timeout
        self._session = requests.Session()
        # Retries only where nothing reached the service (connect errors); a request that may
        # have arrived is not sent again behind the caller's back (results may be served once).
        retry = Retry(
            total=retries,
            connect=retries,
            read=False,
            status=0,
            other=0,
            redirect=0,
            backoff_factor=0.2,
            allowed_methods=None,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._session.headers["User-Agent"] = "qjm-remote"
        self.pool_size = pool_size
        self._limits = self._json("GET", "/v1/limits", what="limits of the service")
        super().__init__(
            name=name or self._limits["backend_name"],
            description=f"{self._limits['backend_name']} served by qjm at {self.url}",
            backend_version=self._limits.get("backend_version") or None,
        )
        self._service_defaults = dict(self._limits.get("options") or {})
        self._options = Options(**self._service_defaults)
        self._target = None

    # -- HTTP ---------------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ok: Iterable[int] = (200,),
        repeatable: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """One request; ``repeatable`` (default: for GET) allows sending it once more when the
        connection broke under it (a kept-alive connection the service had just closed)."""
        import requests
        from urllib3.exceptions import ProtocolError

        if repeatable is None:
            repeatable = method == "GET"
        for attempt in (0, 1):
            try:
                resp = self._session.request(
                    method, self.url + path, timeout=self._timeout, **kwargs
                )
                break
            except requests.exceptions.RequestException as exc:
                broken = isinstance(exc, requests.exceptions.ConnectionError) and any(
                    isinstance(a, ProtocolError) for a in exc.args
                )
                if attempt == 0 and repeatable and broken:
                    continue
                raise ServiceConnectionError(
                    f"{what}: could not reach the job service at {self.url}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        if resp.status_code not in tuple(ok):
            raise _error_for(resp, what)
        return resp

    def _json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, what=what, **kwargs)
        try:
            return resp.json()
        except ValueError as exc:
            raise ServiceError(f"{what}: the service answered with something not JSON") from exc

    def close(self) -> None:
        """Close the connections to the service."""
        self._session.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what the service says --------------------------------------------------------------------

    @property
    def limits(self) -> dict[str, Any]:
        """``GET /v1/limits`` as read when this backend was made (see :meth:`refresh_limits`)."""
        return dict(self._limits)

    def refresh_limits(self) -> dict[str, Any]:
        self._limits = self._json("GET", "/v1/limits", what="limits of the service")
        return self.limits

    @property
    def max_circuits(self) -> int | None:
        return self._limits.get("max_circuits")

    @property
    def max_shots(self) -> int | None:
        return self._limits.get("max_shots")

    @property
    def max_payload_bytes(self) -> int | None:
        return self._limits.get("max_payload_bytes")

    @property
    def max_pending_jobs(self) -> int | None:
        return self._limits.get("max_pending_jobs")

    @property
    def results_once(self) -> bool:
        return bool(self._limits.get("results_once"))

    @property
    def target(self) -> Any:
        """A ``Target`` of the service's qubits, basis gates and other instructions (Aer's
        ``save_*``...), all-to-all: what the service runs as it is, for the job manager's
        check before submission and for transpiling to it."""
        if self._target is None:
            from qiskit.circuit import Instruction
            from qiskit.transpiler import Target

            basis = [g for g in self._limits.get("basis_gates", []) if g != "delay"]
            try:
                target = Target.from_configuration(
                    basis_gates=basis, num_qubits=self._limits.get("num_qubits") or None
                )
            except Exception:  # noqa: BLE001 - a basis qiskit does not know: bare qubits
                target = Target(num_qubits=self._limits.get("num_qubits") or None)
            others = list(self._limits.get("instructions", []))
            if "delay" in self._limits.get("basis_gates", []):
                others.append("delay")
            for name in others:
                if name not in target.operation_names and isinstance(name, str):
                    target.add_instruction(Instruction, name=name)  # on any qubits
            self._target = target
        return self._target

    # the service refuses options its backend does not take: JobManager refuses them up front
    run_options_strict = True

    @classmethod
    def _default_options(cls) -> Options:
        return Options()  # the service's options replace these in __init__

    # -- jobs ------------------------------------------------------------------------------------

    def _options_for(self, options: dict[str, Any]) -> dict[str, Any]:
        out = {
            k: v
            for k, v in self._options.items()
            if k in self._service_defaults and v != self._service_defaults[k]
        }
        out.update(options)
        return {k: _jsonable(k, v) for k, v in out.items()}

    def _qpy_version(self) -> int | None:
        from qiskit import qpy

        theirs = self._limits.get("qpy_version")
        if isinstance(theirs, int) and theirs < qpy.QPY_VERSION:
            return max(theirs, qpy.QPY_COMPATIBILITY_VERSION)
        return None

    def _body(self, circuits: list, options: dict[str, Any], tags: list[str]) -> bytes:
        raw = wire.dump_circuits(circuits, self._qpy_version())
        body: dict[str, Any] = {"circuits": wire.b64(raw), "options": options, "tags": tags}
        subtypes = _save_subtypes(circuits)
        if subtypes:
            body["instruction_subtypes"] = subtypes
        return json.dumps(body, separators=(",", ":")).encode()

    @staticmethod
    def _circuits(run_input: Any) -> list:
        if isinstance(run_input, QuantumCircuit):
            return [run_input]
        circuits = list(run_input)
        for i, c in enumerate(circuits):
            if not isinstance(c, QuantumCircuit):
                raise TypeError(f"run_input[{i}] is a {type(c).__name__}, not a QuantumCircuit")
        if not circuits:
            raise ValueError("no circuits to run")
        return circuits

    def payload_size(self, circuits: Any, *, tags: Iterable[str] = (), **options: Any) -> int:
        """The bytes of the request body :meth:`run` would send for these circuits (and these
        run options and tags: they add ``len(json.dumps(options))`` bytes or so)."""
        return len(self._body(self._circuits(circuits), self._options_for(options), list(tags)))

    def run(
        self,
        run_input: Any,
        *,
        tags: Iterable[str] = (),
        idempotency_key: str | None = None,
        **options: Any,
    ) -> RemoteJob:
        """Submit the circuits as one job (``POST /v1/jobs``).

        Args:
            run_input: a ``QuantumCircuit`` or a list of them (run as given, not transpiled).
            tags: tags of the job, for :meth:`jobs`.
            idempotency_key: sent as ``Idempotency-Key`` (1 to 200 characters): a later
                ``run()`` with the same key gets the job this one made, not a new one. Default:
                a new key, which makes this call's own resends after a broken connection safe.
            **options: run options (``shots``, ``memory``, ``seed_simulator``, ...); the service
                refuses those its backend does not take.

        Raises:
            PayloadTooLargeError: the body would be over ``max_payload_bytes`` (checked here,
                before anything is sent, and by the service).
            ServiceBusyError: too many of this user's jobs are pending; ``retry_after`` says when
                to try again.
            InvalidRequestError: the service refused the job (bad option, too many circuits...).
            ServiceConnectionError: the service could not be reached.
        """
        circuits = self._circuits(run_input)
        tags = [tags] if isinstance(tags, str) else list(tags)
        body = self._body(circuits, self._options_for(options), tags)
        limit = self.max_payload_bytes
        if limit is not None and len(body) > limit:
            raise PayloadTooLargeError(
                f"the job's request body would be {len(body)} bytes, over the service's limit "
                f"of {limit} bytes (max_payload_bytes): split the job (nothing was sent)",
                limit,
                size=len(body),
                status_code=None,
            )
        if idempotency_key is None:
            key = uuid.uuid4().hex
        elif isinstance(idempotency_key, str) and 0 < len(idempotency_key) <= 200:
            key = idempotency_key
        else:
            raise ValueError(
                f"idempotency_key must be a string of 1 to 200 characters, not {idempotency_key!r}"
            )
        attempts = 3
        arrived: ServiceConnectionError | None = None  # an attempt that may have made the job
        for attempt in range(attempts):
            try:
                resp = self._request(
                    "POST",
                    "/v1/jobs",
                    what=f"submit a job of {len(circuits)} circuit(s)",
                    ok=(200, 201),
                    data=body,
                    headers={"Content-Type": "application/json", "Idempotency-Key": key},
                )
                break
            except ServiceConnectionError as exc:
                # the job may or may not have arrived: the same Idempotency-Key makes sending
                # it again safe (the service answers with the job it already has)
                if arrived is None and not never_sent(exc):
                    arrived = exc
                if attempt < attempts - 1:
                    time.sleep(0.2 * 2**attempt)
                elif arrived is None:
                    raise
                else:  # not "refused": a later refusal must not hide that the job may exist
                    raise ServiceConnectionError(
                        f"{arrived}; the job may have been made before the connection broke: "
                        f"run() again with idempotency_key={key!r} gets it if so, and makes it "
                        "once if not"
                    ) from arrived
        info = resp.json()
        return RemoteJob(self, info["id"], info=info)

    def retrieve_job(self, job_id: str) -> RemoteJob:
        """The job with this id (one of this user's).

        Raises:
            JobNotFoundError: no such job for this user.
        """
        info = self._json("GET", f"/v1/jobs/{job_id}", what=f"job {job_id}")
        return RemoteJob(self, info["id"], info=info)

    def retrieve_jobs(self, job_ids: Iterable[str]) -> list[RemoteJob | None]:
        """The jobs with these ids, in the same order (None where this user has no such job):
        one request per 100 ids, instead of one per job."""
        job_ids = [str(i) for i in job_ids]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(job_ids), 100):
            chunk = job_ids[start : start + 100]
            params = [("limit", 1000)] + [("id", i) for i in chunk]
            data = self._json("GET", "/v1/jobs", what="look up jobs", params=params)
            found.update((info["id"], info) for info in data["jobs"])
        return [RemoteJob(self, i, info=found[i]) if i in found else None for i in job_ids]

    def jobs(
        self,
        tags: Iterable[str] | None = None,
        status: Any = None,
        limit: int = 100,
        since: float | None = None,
        until: float | None = None,
    ) -> list[RemoteJob]:
        """This user's jobs, newest first.

        Args:
            tags: only jobs with every one of these tags.
            status: only jobs in this status (a ``JobStatus``, its name, or a list of them).
            limit: at most this many (1..1000).
            since, until: only jobs created in ``[since, until)`` (UNIX times).
        """
        params: list[tuple[str, Any]] = [("limit", int(limit))]
        if tags is not None:
            params += [("tag", t) for t in ([tags] if isinstance(tags, str) else tags)]
        if status is not None:
            statuses = status if isinstance(status, (list, tuple, set)) else [status]
            params += [("status", s.name if isinstance(s, JobStatus) else str(s)) for s in statuses]
        if since is not None:
            params.append(("since", float(since)))
        if until is not None:
            params.append(("until", float(until)))
        data = self._json("GET", "/v1/jobs", what="list jobs", params=params)
        return [RemoteJob(self, info["id"], info=info) for info in data["jobs"]]

    def __repr__(self) -> str:
        return f"RemoteBackend({self.url!r}, name={self.name!r})"
