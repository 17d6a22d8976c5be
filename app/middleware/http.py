"""The one pure ASGI middleware every request passes through.

It does, in one pass and with one `send` wrapper:

- request id: an incoming `X-Request-ID` when it is a sane token, else a generated one; echoed
  on the response, stored in `scope["state"]` and bound for every log line of the request;
- Host allow-list (400), except for the probe paths: the kubelet sends the pod IP as Host
  (docs/facts.md). Starlette's `TrustedHostMiddleware` cannot exempt paths and answers in plain
  text;
- body size limit (413), counted on the bytes `receive()` really delivers, so a chunked body or
  one longer than its Content-Length is caught too;
- request time limit (504): the handler's task is cancelled (`Deadlines`); Gunicorn's `timeout`
  does not bound a request for async workers;
- unexpected exceptions (500): answered in the problem format with a fresh `error_id` and
  logged exactly once with it and the traceback. Starlette's own 500 handler sits outside all
  user middleware and re-raises, so the server would log the traceback a second time;
- security headers on every response, errors included;
- one access line per request and a warning for slow ones, timed to the last body chunk.

One class rather than six because every ASGI layer costs a share of a small request: measured
with `make bench`, three separate layers left `/health` at 0.76-0.78 of a bare app. Each
concern is one method here or a helper module (`deadline.py`, `access.py`, `hosts.py`);
`__call__` only puts them in order. What a request carries through them (its status, when its
last byte went out) lives in a small per-request object, `_Response`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import uuid
from asyncio import current_task
from time import perf_counter

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY, problem
from app.logging import REQUEST_ID
from app.metrics import Metrics
from app.middleware.access import AccessLog
from app.middleware.deadline import Deadlines
from app.middleware.hosts import host_allowed
from app.middleware.route_templates import route_template
from app.tracing import record_error

# An incoming id is kept only when it is a sane token: bounded, and nothing that could forge a
# log line or a header (no spaces, quotes, control characters).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")

error_log = structlog.get_logger("app.errors")
limits_log = structlog.get_logger("app.limits")


def security_headers(*, hsts_max_age: int) -> list[tuple[bytes, bytes]]:
    """OWASP REST defaults for an API that serves no HTML of its own."""
    headers = [
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", b"frame-ancestors 'none'"),
    ]
    if hsts_max_age:
        headers.append((b"strict-transport-security", f"max-age={hsts_max_age}".encode()))
    return headers


class BodyTooLarge(HTTPException):
    """Raised from `receive()`; FastAPI re-raises HTTPExceptions from body parsing as they are."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")


def _limited(receive: Receive, max_body: int) -> Receive:
    """`receive` counting the body bytes really delivered; 413 past `max_body`."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_body:
                raise BodyTooLarge(max_body)
        return message

    return receive_limited


class _Response:
    """One request's `send`: adds our headers, remembers the status and when the last body
    chunk went out (a slow-request timer must stop there, not when the app returns)."""

    __slots__ = ("_send", "added_headers", "finished_at", "status")

    def __init__(self, send: Send, added_headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self.added_headers = added_headers
        self.status = 0
        self.finished_at = 0.0

    @property
    def started(self) -> bool:
        return self.status != 0

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), *self.added_headers]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished_at = perf_counter()
        await self._send(message)


class HttpMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: list[tuple[bytes, bytes]],
        allowed_hosts: frozenset[str],
        probe_paths: frozenset[str],
        max_body_bytes: int,
        timeout: float,
        access_log: AccessLog,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.headers = headers
        self.allowed_hosts = allowed_hosts  # empty: any Host (development and tests)
        self.probe_paths = probe_paths
        self.max_body_bytes = max_body_bytes
        self.deadlines = Deadlines(timeout)
        self.access_log = access_log
        self.metrics = metrics
        # Generated ids: 64 random bits per process (this runs after the fork, on the first
        # request) plus a counter; 32 hex characters like a UUID, without a urandom call per
        # request. Unique across workers and pods; not secret, and not meant to be.
        self._id_prefix = os.urandom(8).hex().encode("ascii")
        self._id_counter = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = perf_counter()
        # One pass in C; for a repeated name the last value wins, as a loop over them would do.
        headers = dict(scope["headers"])
        request_id = self._request_id(headers.get(b"x-request-id"))
        request_id_text = request_id.decode("ascii")
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id_text
        # Appended to the app's own headers; a new list, never the Response object's own.
        response = _Response(send, [(b"x-request-id", request_id), *self.headers])
        token = REQUEST_ID.set(request_id_text)
        self.metrics.in_flight_now += 1
        try:
            refusal = self._refusal(scope, headers)
            if refusal is None:
                await self._call_app(scope, self._receive(receive, headers), response)
            else:
                await problem(*refusal, scope=scope)(scope, receive, response.send)
        finally:
            self.metrics.in_flight_now -= 1
            self._record(scope, response, started_at)
            REQUEST_ID.reset(token)

    def _request_id(self, incoming: bytes | None) -> bytes:
        if incoming is not None and _VALID_REQUEST_ID.fullmatch(incoming):
            return incoming
        return b"%s%016x" % (self._id_prefix, next(self._id_counter))

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """400 for a Host outside the allow-list (probes exempt) or a malformed Content-Length;
        413 for an announced body over the limit."""
        if self.allowed_hosts and scope["path"] not in self.probe_paths:
            host = headers.get(b"host")
            if host is None or not host_allowed(host, self.allowed_hosts):
                return 400, "Invalid Host header."
        content_length = headers.get(b"content-length")
        if content_length is not None:
            if not content_length.isdigit():
                return 400, "Invalid Content-Length."
            if int(content_length) > self.max_body_bytes:
                return 413, str(BodyTooLarge(self.max_body_bytes).detail)
        return None

    def _receive(self, receive: Receive, headers: dict[bytes, bytes]) -> Receive:
        """`receive`, counting body bytes when a body is announced (most GETs have none)."""
        if b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0":
            return _limited(receive, self.max_body_bytes)
        return receive

    async def _call_app(self, scope: Scope, receive: Receive, response: _Response) -> None:
        """The app under the request time limit; a 500 or 504 for what it raises. (A 413 from
        `receive()` is an HTTPException: FastAPI answers it inside the app.)"""
        task = current_task()
        assert task is not None  # noqa: S101 - ASGI servers run each request in a task
        deadlines = self.deadlines
        deadlines.start(task, perf_counter())
        try:
            await self.app(scope, receive, response.send)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise  # the client went away or the server is stopping: not ours to answer
        except Exception as error:
            # Past the limit, the cancel may surface as another exception (a driver's).
            if not deadlines.expired(task):
                await self._unexpected(error, scope, receive, response)
        finally:
            timed_out = deadlines.finish(task)
        if timed_out:
            await self._timed_out(scope, receive, response)

    def _record(self, scope: Scope, response: _Response, started_at: float) -> None:
        """Metrics and the access line, timed to the last body chunk (or now, if cut short)."""
        duration = (response.finished_at or perf_counter()) - started_at
        route = route_template(scope)
        self.metrics.observe(scope["method"], route, response.status, duration)
        self.access_log.record(scope, route, response.status, duration)

    async def _unexpected(
        self, error: Exception, scope: Scope, receive: Receive, response: _Response
    ) -> None:
        error_id = uuid.uuid4().hex
        error_log.exception(
            "unhandled_exception",
            error_id=error_id,
            method=scope["method"],
            path=scope["path"],
            route=route_template(scope),
            response_started=response.started,
        )
        record_error(error, error_id)
        if not response.started:  # else headers are out; the server closes the connection
            detail = "An unexpected error occurred. Quote the error_id when reporting it."
            extra = {"error_id": error_id}
            await problem(500, detail, scope=scope, extra=extra)(scope, receive, response.send)

    async def _timed_out(self, scope: Scope, receive: Receive, response: _Response) -> None:
        limits_log.warning(
            "request_timeout",
            method=scope["method"],
            route=route_template(scope),
            path=scope["path"],
            limit_s=self.deadlines.timeout,
            response_started=response.started,
        )
        if not response.started:
            detail = f"The request took longer than {self.deadlines.timeout:g} s."
            await problem(504, detail, scope=scope)(scope, receive, response.send)
