"""Last line of defence for unexpected exceptions, as a pure ASGI middleware.

Starlette's own 500 handler lives in `ServerErrorMiddleware`, outside every user middleware, and
re-raises after answering, so the server logs the traceback a second time. This middleware sits
inside the others instead: it answers 500 in the problem format with a fresh `error_id`, writes
exactly one error log line with that id and the traceback, and does not re-raise.
"""

from __future__ import annotations

import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem

log = structlog.get_logger("app.errors")


class UnhandledErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            error_id = uuid.uuid4().hex
            route = scope.get("route")
            log.exception(
                "unhandled_exception",
                error_id=error_id,
                method=scope["method"],
                path=scope["path"],
                route=getattr(route, "path", None),
                response_started=started,
            )
            if started:
                # Headers are out; the server closes the connection on an incomplete body.
                return
            response = problem(
                500,
                "An unexpected error occurred. Quote the error_id when reporting it.",
                scope=scope,
                slug="internal-error",
                extra={"error_id": error_id},
            )
            await response(scope, receive, send)
