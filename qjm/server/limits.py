"""Bounds on what one client can hold of ``qjm serve``: time to send a request, requests at once.

* :func:`bounded_h11_protocol`: uvicorn's h11 protocol with two deadlines per request, kept on the
  connection itself (so they hold whatever the app does, even when it answered without reading
  the body): the request line and headers must arrive within ``header_timeout`` seconds (from the
  connection's opening, or from the first byte of a later request on a kept-alive connection),
  and the body within ``body_timeout`` seconds after the headers. A client that misses one gets
  ``408 Request Timeout`` (when it had sent part of a request and no answer was started) and the
  connection is closed. A kept-alive connection idle between requests is uvicorn's
  ``timeout_keep_alive``'s business, not these.
* :class:`TokenConcurrencyLimit`: an ASGI middleware that lets each bearer token have at most
  ``limit`` requests in progress; one more answers ``429`` with ``Retry-After`` at once, without
  touching the other tokens' requests.

Both keep no plain token: requests are counted by the token's SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

log = logging.getLogger("qjm.server")

__all__ = ["TokenConcurrencyLimit", "bounded_h11_protocol", "bearer_digest"]


def _timeout_body(what: str, seconds: float) -> bytes:
    return json.dumps(
        {
            "detail": f"the request {what} did not arrive within {seconds:g} s "
            f"({'header' if what == 'headers' else 'body'}_timeout_seconds, see GET /v1/limits): "
            "the connection is closed"
        }
    ).encode()


def bounded_h11_protocol(header_timeout: float, body_timeout: float) -> type:
    """A subclass of uvicorn's ``H11Protocol`` (give it to ``uvicorn.Config(http=...)``) that
    drops a client who does not send its request's headers within ``header_timeout`` seconds or
    its body within ``body_timeout`` seconds after them. Both are total deadlines, not idle
    times: a client that trickles a byte a second is dropped all the same."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    if not header_timeout > 0 or not body_timeout > 0:
        raise ValueError("header_timeout and body_timeout must be > 0")

    class BoundedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._deadline: Any = None  # asyncio.TimerHandle
            self._deadline_kind: str | None = None
            self._requests = 0
            super().connection_made(transport)
            self._arm("headers", header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        # -- the deadlines -----------------------------------------------------------------

        def _arm(self, kind: str, seconds: float) -> None:
            if self._deadline_kind == kind:
                return  # armed already: a deadline, not an idle time
            self._disarm()
            self._deadline_kind = kind
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = None
            self._deadline_kind = None

        def _watch(self) -> None:
            """After every piece of input or answer: which deadline, if any, applies now."""
            if self.transport is None or self.transport.is_closing():
                self._disarm()
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                partial = bool(self.conn.trailing_data[0])
                if partial or self.timeout_keep_alive_task is None:
                    # part of a request's head has come (or none yet on a new connection)
                    self._arm("headers", header_timeout)
                else:  # idle between requests: uvicorn's keep-alive timeout applies
                    self._disarm()
            elif state is h11.SEND_BODY:
                self._arm("body", body_timeout)
            else:  # the whole request is in (or the connection is ending): the app's turn
                self._disarm()

        def _expired(self) -> None:
            kind = self._deadline_kind
            self._deadline = None
            self._deadline_kind = None
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            cycle = self.cycle if kind == "body" else None
            if kind == "headers":
                if self.conn.trailing_data[0]:  # a partial request: tell it why
                    body = _timeout_body("headers", header_timeout)
                    transport.write(
                        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                        b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                    )
                log.info("dropped %s: no complete request head within %g s", client, header_timeout)
            else:
                if cycle is not None and not cycle.response_started:
                    body = _timeout_body("body", body_timeout)
                    try:
                        for event in (
                            h11.Response(
                                status_code=408,
                                headers=[
                                    (b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"connection", b"close"),
                                ],
                                reason=b"Request Timeout",
                            ),
                            h11.Data(data=body),
                            h11.EndOfMessage(),
                        ):
                            transport.write(self.conn.send(event))
                    except h11.LocalProtocolError:  # pragma: no cover - h11 refused: just close
                        pass
                log.info("dropped %s: request body not complete within %g s", client, body_timeout)
            if cycle is not None and not cycle.response_complete:
                # the app, if it is still reading the body, sees the client gone; whatever it
                # sends from now on is dropped
                cycle.disconnected = True
                cycle.message_event.set()
            transport.close()

    BoundedH11Protocol.header_timeout = header_timeout  # type: ignore[attr-defined]
    BoundedH11Protocol.body_timeout = body_timeout  # type: ignore[attr-defined]
    return BoundedH11Protocol


def bearer_digest(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """SHA-256 of the bearer token of an ASGI scope's headers, or None if there is none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                return hashlib.sha256(token).digest()
            return None
    return None


class TokenConcurrencyLimit:
    """ASGI middleware: at most ``limit`` requests in progress per bearer token (from the end of
    their headers until their answer is sent); one more answers 429 with ``Retry-After`` at once.
    Requests without a bearer token (``/health``, the OpenAPI document) are not counted. A token
    that is not valid is counted like any other (it is answered 401 at once anyway)."""

    def __init__(self, app: Any, limit: int, retry_after: int = 1):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.app = app
        self.limit = limit
        self.retry_after = retry_after
        self.active: dict[bytes, int] = {}  # digest of a token -> its requests in progress

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = bearer_digest(scope.get("headers") or [])
        if key is None:
            await self.app(scope, receive, send)
            return
        active = self.active.get(key, 0)
        if active >= self.limit:
            body = json.dumps(
                {
                    "detail": f"this token has {active} requests in progress; this service takes "
                    f"at most {self.limit} at once per token (max_requests_per_token, see "
                    f"GET /v1/limits): try again after {self.retry_after} s"
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(self.retry_after).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.active[key] = active + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.active[key] - 1
            if left:
                self.active[key] = left
            else:
                del self.active[key]
