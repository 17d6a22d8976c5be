"""The server span of each request; added by `create_app()` only when tracing is on.

Not opentelemetry-instrumentation-asgi: it records the full URL with its query string (which
can carry tokens and personal data), matches every route a second time per request to name
the span, and adds spans for each send and receive. This one names the span after routing,
from the route template the access log uses, and records only the attributes below
(docs/adr/0007-traces.md).
"""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    format_span_id,
    format_trace_id,
)
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from app.errors import request_id_of
from app.middleware.route_templates import route_template
from app.tracing import STATE_KEY, Tracing

# The only request headers a span records. Never Authorization, Cookie or an API key.
TRACED_HEADERS = {b"user-agent": USER_AGENT_ORIGINAL}
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TracingMiddleware:
    def __init__(self, app: ASGIApp, *, untraced_paths: frozenset[str]) -> None:
        self.app = app
        self.untraced_paths = untraced_paths  # probes and /metrics: polled, never traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracing: Tracing | None = scope.get("state", {}).get(STATE_KEY)
        if scope["type"] != "http" or tracing is None or scope["path"] in self.untraced_paths:
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else "_OTHER"
        # start_span and attach rather than start_as_current_span: the same span and context
        # without two generator context managers per request. Exceptions are not recorded
        # here: the app answers each itself (a 500 with an error id, recorded on this span by
        # app/tracing.py); what reaches here is a cancellation, not an error.
        span = tracing.tracer.start_span(
            method, context=tracing.incoming(scope["headers"]), kind=SpanKind.SERVER
        )
        token = context.attach(trace.set_span_in_context(span))
        ids = bind_contextvars(**log_fields(span.get_span_context()))
        try:
            # An unsampled span (nine requests in ten at the default ratio) records nothing:
            # no attribute is built and the response goes out unobserved.
            if span.is_recording():
                await self._recorded(span, method, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            reset_contextvars(**ids)
            context.detach(token)
            span.end()

    async def _recorded(
        self, span: Span, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        span.set_attributes(request_attributes(scope, method))
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            finish(span, scope, method, status)


def log_fields(context: SpanContext) -> dict[str, str | bool]:
    """The span's ids on every log line written inside the request (structlog's context)."""
    return {
        "trace_id": format_trace_id(context.trace_id),
        "span_id": format_span_id(context.span_id),
        "trace_sampled": context.trace_flags.sampled,
    }


def request_attributes(scope: Scope, method: str) -> dict[str, AttributeValue]:
    """HTTP semantic conventions: the path without its query string, no header but the
    allow-listed ones, never a body."""
    attributes: dict[str, AttributeValue] = {
        HTTP_REQUEST_METHOD: method,
        URL_PATH: scope["path"],
        URL_SCHEME: scope["scheme"],
        NETWORK_PROTOCOL_VERSION: scope["http_version"],
    }
    client = scope.get("client")
    if client:
        attributes[CLIENT_ADDRESS] = client[0]
    for name, value in scope["headers"]:
        if name in TRACED_HEADERS:
            attributes[TRACED_HEADERS[name]] = value.decode("latin-1")
    return attributes


def finish(span: Span, scope: Scope, method: str, status: int) -> None:
    """Name, route and status, known once the app has answered."""
    route = route_template(scope)
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute(HTTP_ROUTE, route)
    request_id = request_id_of(scope)
    if request_id is not None:
        span.set_attribute("app.request_id", request_id)
    if status:
        span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    if status >= 500:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))
