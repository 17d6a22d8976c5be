"""Per-request context, as one pure ASGI middleware: request id, security headers, access and
slow-request log lines.

One class for what all hang off the same two points (the response start and its last body
chunk), because each ASGI layer costs a few percent of a small request's throughput (measured:
`make bench`). It is the outermost of ours, so its headers and its access line cover every
answer, 4xx and 5xx from the inner layers included.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import REQUEST_ID_KEY

# An incoming id is kept only when it is a sane token: bounded, and nothing that could forge a
# log line or a header (no spaces, quotes, control characters).
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_REQUEST_ID_HEADER = b"x-request-id"

access_log = structlog.get_logger("app.access")


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


def _incoming_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == _REQUEST_ID_HEADER:
            return value.decode("ascii") if _VALID_REQUEST_ID.fullmatch(value) else None
    return None


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: list[tuple[bytes, bytes]],
        access: bool,
        slow_request_ms: int,
        probe_paths: frozenset[str],
        probe_sample_rate: float,
    ) -> None:
        self.app = app
        self.headers = headers
        self.access = access
        self.slow_request_ms = slow_request_ms
        self.probe_paths = probe_paths
        self.probe_sample_rate = probe_sample_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope["headers"]) or uuid.uuid4().hex
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id
        extra_headers = [(_REQUEST_ID_HEADER, request_id.encode("ascii")), *self.headers]
        started_at = time.perf_counter()
        status = 0
        finished_at = 0.0

        async def send_with_context(message: Message) -> None:
            nonlocal status, finished_at
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list: never mutate a Response object's own header list.
                message["headers"] = [*message.get("headers", ()), *extra_headers]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished_at = time.perf_counter()
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_context)
        finally:
            # Until the last body chunk went out; a response cut short counts until now.
            duration_ms = ((finished_at or time.perf_counter()) - started_at) * 1000
            self._log(scope, status, duration_ms)
            structlog.contextvars.reset_contextvars(**tokens)

    def _log(self, scope: Scope, status: int, duration_ms: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None)
        slow = duration_ms >= self.slow_request_ms
        if slow:
            access_log.warning(
                "slow_request",
                method=scope["method"],
                route=template,
                path=scope["path"],
                status=status,
                duration_ms=round(duration_ms, 2),
                threshold_ms=self.slow_request_ms,
            )
        if not self.access or (
            scope["path"] in self.probe_paths
            and 0 < status < 400
            and not slow
            and (self.probe_sample_rate == 0 or random.random() >= self.probe_sample_rate)  # noqa: S311 - sampling, not security
        ):
            return
        client = scope.get("client")
        access_log.info(
            "request",
            method=scope["method"],
            route=template,
            path=scope["path"],
            status=status,
            duration_ms=round(duration_ms, 2),
            client=client[0] if client else None,
        )
