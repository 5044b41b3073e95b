"""RetryPolicy: which errors are retried when submitting and fetching, how often, how long apart.

Transient errors (a dropped or refused connection, a timeout, HTTP 5xx and 429, a backend's
refusal because too many jobs are pending) are retried with exponential backoff and full jitter
(``tenacity.wait_random_exponential``); permanent ones (an invalid circuit, an unknown option,
HTTP 401/403/404, any other error) are not. A submission is retried only when it certainly did not
start a job (refused connection, HTTP 429/503, a job-limit refusal): a submission that timed out
may have reached the backend, and qjm runs nothing twice unless asked (a backend that takes a
submission key, as ``RemoteBackend`` does, makes any transient failure safe to retry: the job
manager then calls :meth:`RetryPolicy.retries` with ``submitting=False``). A busy backend that
says when to come back
(``retry_after``) is waited for as it says, without counting against ``max_attempts``.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tenacity

_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_PERMANENT_HTTP = {400, 401, 403, 404, 405, 409, 410, 413, 422}
_TRANSIENT_ERRNO = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
}
# words of refusals that pass with time (job limits, busy services), in an error's message
_TRANSIENT_WORDS = ("too many jobs", "job limit", "pending jobs", "try again", "temporarily")


def _chain(exc: BaseException) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def never_sent(exc: BaseException) -> bool:
    """``exc`` says the request did not reach the backend, or was refused by it: a submission
    that failed so can be made again without running a job twice."""
    for err in _chain(exc):
        status = getattr(err, "status_code", None)
        if status in (429, 503) or getattr(err, "retry_after", None) is not None:
            return True
        if isinstance(err, ConnectionRefusedError) or type(err).__name__ == "NewConnectionError":
            return True
        if isinstance(err, OSError) and err.errno == errno.ECONNREFUSED:
            return True
        if any(word in str(err).lower() for word in _TRANSIENT_WORDS):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """qjm's default: is ``exc`` an error that may pass if the call is made again?"""
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        if status in _TRANSIENT_HTTP:
            return True
        if status in _PERMANENT_HTTP:
            return False
    if getattr(exc, "retry_after", None) is not None:
        return True
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover - requests is a dependency
        pass
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNO:
        return True
    message = str(exc).lower()
    cause = exc.__cause__ or exc.__context__
    if any(word in message for word in _TRANSIENT_WORDS):
        return True
    return cause is not None and cause is not exc and is_transient(cause)


@dataclass(frozen=True)
class RetryPolicy:
    """How qjm retries a failed submission or result fetch.

    Args:
        max_attempts: calls in all, the first included (1: never retry).
        initial_delay: seconds; the wait before attempt ``n + 1`` is drawn uniformly from
            ``[0, min(max_delay, initial_delay * 2 ** (n - 1))]`` (full jitter).
        max_delay: the longest wait between two attempts, in seconds.
        retry_on: which errors to retry: exception classes, or a function of the error; None
            for qjm's default (:func:`is_transient`).
    """

    max_attempts: int = 5
    initial_delay: float = 1.0
    max_delay: float = 60.0
    retry_on: tuple[type[BaseException], ...] | Callable[[BaseException], bool] | None = None
    _wait: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an integer >= 1, not {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds, not {value!r}")
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        if isinstance(self.retry_on, type):
            object.__setattr__(self, "retry_on", (self.retry_on,))
        wait = tenacity.wait_random_exponential(multiplier=self.initial_delay, max=self.max_delay)
        object.__setattr__(self, "_wait", wait)

    def retries(self, exc: BaseException, submitting: bool = False) -> bool:
        """Whether ``exc`` is retried under this policy. By default a failed submission is
        retried only when it certainly did not start a job (:func:`never_sent`): a timeout may
        have reached the backend, and nothing is run twice unless asked."""
        if self.retry_on is None:
            return never_sent(exc) if submitting else is_transient(exc)
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1 for the first call)."""
        return float(self._wait(_Attempt(attempt)))

    def describe(self) -> str:
        what = (
            "transient errors"
            if self.retry_on is None
            else ", ".join(c.__name__ for c in self.retry_on)
            if isinstance(self.retry_on, tuple)
            else getattr(self.retry_on, "__name__", "errors the given function accepts")
        )
        return (
            f"up to {self.max_attempts} attempts on {what}, waits of full jitter from "
            f"{self.initial_delay:g} s doubling to at most {self.max_delay:g} s"
        )


class _Attempt:
    """What tenacity's wait strategies read of a retry state."""

    def __init__(self, attempt_number: int):
        self.attempt_number = attempt_number


DEFAULT_RETRY = RetryPolicy()
