"""Request guards, as one pure ASGI middleware: Host allow-list, body size, time limit.

Why not Starlette's `TrustedHostMiddleware`: it cannot exempt the probe paths (the kubelet sends
the pod IP as Host, FIELD_NOTES) and answers in plain text instead of the problem format.
"""

from __future__ import annotations

import asyncio

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem

log = structlog.get_logger("app.limits")


class BodyTooLarge(HTTPException):
    """Raised from `receive()`; FastAPI re-raises HTTPExceptions from body parsing as they are."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    if host in allowed:
        return True
    return any(pattern.startswith("*.") and host.endswith(pattern[1:]) for pattern in allowed)


def _host_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1")
            if host.startswith("["):  # IPv6 literal: [::1]:8000
                return host[: host.find("]") + 1]
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


class RequestLimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: frozenset[str],
        exempt_paths: frozenset[str],
        max_body_bytes: int,
        timeout: float,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts  # empty: any Host (development and tests)
        self.exempt_paths = exempt_paths
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        if (
            self.allowed_hosts
            and scope["path"] not in self.exempt_paths
            and not host_allowed(_host_of(headers), self.allowed_hosts)
        ):
            await problem(400, "Invalid Host header.", scope=scope)(scope, receive, send)
            return
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    await problem(400, "Invalid Content-Length.", scope=scope)(scope, receive, send)
                    return
                if int(value) > self.max_body_bytes:
                    too_large = BodyTooLarge(self.max_body_bytes)
                    response = problem(413, str(too_large.detail), scope=scope)
                    await response(scope, receive, send)
                    return
                break

        received = 0
        max_body = self.max_body_bytes

        async def receive_limited() -> Message:
            # Count what really arrives: a chunked body has no Content-Length, and a client may
            # send more than it announced.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise BodyTooLarge(max_body)
            return message

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.app(scope, receive_limited, send_tracking)
        except TimeoutError:
            if not deadline.expired():
                raise  # someone else's timeout (a driver's, say): not the request limit
            route = scope.get("route")
            log.warning(
                "request_timeout",
                method=scope["method"],
                route=getattr(route, "path", None),
                path=scope["path"],
                limit_s=self.timeout,
                response_started=started,
            )
            if not started:
                response = problem(
                    504, f"The request took longer than {self.timeout:g} s.", scope=scope
                )
                await response(scope, receive, send)
        except BodyTooLarge as exc:
            if not started:
                await problem(413, str(exc.detail), scope=scope)(scope, receive, send)
