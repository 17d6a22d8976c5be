"""Typed, status-coded errors and the one error format: RFC 9457 problem details.

Every error the service returns is `application/problem+json` with `type`, `title`, `status`,
`detail`; 5xx responses add an `error_id` that also appears in the log line holding the
traceback. Handlers are registered by `install_error_handlers(app)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

PROBLEM_JSON = "application/problem+json"
# Where the request id lives in `scope["state"]`: the 500 path runs outside the middleware that
# binds it to the logging context, so it must be readable from the scope (docs/facts.md).
REQUEST_ID_KEY = "request_id"


class FieldError(BaseModel):
    loc: list[str]
    msg: str
    type: str


class Problem(BaseModel):
    """The one error body (RFC 9457), as declared in the OpenAPI schema for every 4xx/5xx."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str | None
    error_id: str | None = None  # 5xx from unexpected errors: also in the log line
    errors: list[FieldError] | None = None  # 422: one entry per invalid field


class AppError(Exception):
    """Base for errors the service raises on purpose; subclasses pick the status."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class NotFound(AppError):
    status = 404
    slug = "not-found"


class Conflict(AppError):
    status = 409
    slug = "conflict"


class ServiceUnavailable(AppError):
    status = 503
    slug = "service-unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class GatewayTimeout(AppError):
    status = 504
    slug = "timeout"


def request_id_of(scope: Scope) -> str | None:
    """The id `HttpMiddleware` stored for this request (None outside it)."""
    state = scope.get("state")
    return state.get(REQUEST_ID_KEY) if isinstance(state, dict) else None


def problem(
    status: int,
    detail: str,
    *,
    scope: Scope,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        # RFC 9457 3.1: "about:blank" means "the status code says it all".
        "type": f"urn:problem:{slug}" if slug else "about:blank",
        "title": phrase,
        "status": status,
        "detail": detail,
        "request_id": request_id_of(scope),
    }
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
    return problem(exc.status, exc.detail, scope=request.scope, slug=exc.slug, headers=exc.headers)


def allowed_methods(request: Request) -> str:
    """Every method the routes of this path accept (RFC 9110 15.5.6). Starlette's 405 names
    only the first matching route's methods, and FastAPI makes one route per method. Routes of
    included routers count with their prefix (FastAPI's public `iter_route_contexts`)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for it only
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem(exc.status_code, str(exc.detail), scope=request.scope, headers=headers)


def _field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Field path and reason only: never the rejected input, which may be a password or token.
    return [
        {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in errors
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for it only
    return problem(
        422,
        "The request is not valid; see `errors` for each field.",
        scope=request.scope,
        slug="validation-error",
        extra={"errors": _field_errors(exc.errors())},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
