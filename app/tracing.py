"""OpenTelemetry traces, per worker: off unless an OTLP endpoint is configured.

Configured by OpenTelemetry's own `OTEL_*` variables, read by the SDK itself
(app/otel_variables.py checks them at startup; docs/tracing.md lists them).

The tracer provider and its batch processor (a thread) are built in each worker's lifespan,
after Gunicorn forks, never at import or in the master: `BatchSpanProcessor` is not fork-safe.
Nothing here sets OpenTelemetry's global provider; the server-span middleware and the statement
spans use this worker's tracer. What a trace holds, and what it never holds,
is in docs/tracing.md.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import get_global_textmap
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import PROCESS_PID, SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from app.otel_variables import DEFAULT_RATIO, comma_separated
from app.settings import SERVICE_SLUG

STATE_KEY = "tracing"
# Spans still unsent this long into a worker's shutdown are given up (and counted): the
# lifespan's shutdown must end inside Gunicorn's graceful budget (app/worker.py).
FLUSH_TIMEOUT_S = 1.0


@dataclass
class SpanCounts(SpanProcessor):
    """Sampled spans ended, exported and failed to export, for /metrics. Ended minus exported
    is what was lost: failed exports, and spans dropped while the bounded queue was full."""

    ended: int = 0
    exported: int = 0
    failed: int = 0

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.ended += 1


@dataclass
class CountingExporter(SpanExporter):
    """The OTLP exporter, counting what it delivered and what it could not."""

    exporter: SpanExporter
    counts: SpanCounts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.counts.exported += len(spans)
        else:
            self.counts.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()


@dataclass(frozen=True)
class Tracing:
    """One worker's tracing: what the middleware and the instrumentation use."""

    provider: TracerProvider
    tracer: trace.Tracer
    incoming: IncomingContext
    counts: SpanCounts = field(default_factory=SpanCounts)


def start_tracing(environ: Mapping[str, str]) -> Tracing:
    """The provider, its resource and sampler, and a batch exporter, as the `OTEL_*` variables
    in `environ` (the process environment) say: the SDK reads them itself
    (app/otel_variables.py checked them at startup)."""
    # The exporter, the batch processor and the span limits read their OTEL_* variables; the
    # resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the sampler, unless the
    # service's default applies.
    provider = TracerProvider(
        resource=Resource.create(resource_attributes(environ)),
        sampler=default_sampler(environ),
        shutdown_on_exit=False,  # the lifespan shuts it down, bounded (`stop_tracing`)
    )
    tracing = Tracing(provider, provider.get_tracer("app"), IncomingContext(get_global_textmap()))
    tracing.provider.add_span_processor(tracing.counts)
    exporter = CountingExporter(OTLPSpanExporter(), tracing.counts)
    tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
    return tracing


def resource_attributes(environ: Mapping[str, str]) -> dict[str, str | int]:
    """What the service adds to the SDK's resource: each worker is an instance of its own (the
    spans of two workers never look like one), and the service's slug is the name unless
    OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES give one."""
    attributes: dict[str, str | int] = {
        SERVICE_INSTANCE_ID: uuid.uuid4().hex,
        PROCESS_PID: os.getpid(),
    }
    named = environ.get("OTEL_SERVICE_NAME") or any(
        pair.partition("=")[0].strip() == SERVICE_NAME
        for pair in comma_separated(environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    )
    if not named:
        attributes[SERVICE_NAME] = SERVICE_SLUG
    return attributes


def default_sampler(environ: Mapping[str, str]) -> Sampler | None:
    """None lets the SDK build the sampler OTEL_TRACES_SAMPLER names. Unset, the service's
    default: a caller's decision is followed, and one new trace in ten is kept (the SDK's own
    default keeps every one)."""
    if environ.get("OTEL_TRACES_SAMPLER"):
        return None
    ratio = float(environ.get("OTEL_TRACES_SAMPLER_ARG") or DEFAULT_RATIO)
    return ParentBased(TraceIdRatioBased(ratio))


def traced_engine(tracing: Tracing, engine: AsyncEngine) -> AsyncEngine:
    """`engine` with a client span per statement, child of the current span where that span is
    sampled; `engine` itself is left without listeners.

    The two share one pool (`execution_options()` makes an engine whose events are its own).
    Requests whose span is not sampled (nine in ten at the default ratio) use `engine`: with no
    listener on it, SQLAlchemy dispatches no event for their statements
    (docs/adr/0007-traces.md).
    """
    traced = engine.execution_options()
    statements = StatementSpans(tracing.tracer, engine.url)
    sync_engine = traced.sync_engine
    event.listen(sync_engine, "before_cursor_execute", statements.started)
    event.listen(sync_engine, "after_cursor_execute", statements.ended)
    event.listen(sync_engine, "handle_error", statements.failed)
    return traced


_SPAN_KEY = "tracing.statement_span"


class StatementSpans:
    """The listeners behind `traced_engine`: a span opened before a statement and ended after
    it, kept in the connection's `info` meanwhile (one statement at a time per connection)."""

    def __init__(self, tracer: trace.Tracer, url: URL) -> None:
        self._tracer = tracer
        self._attributes: dict[str, str | int] = {"db.system": "postgresql"}
        for name, value in (("db.name", url.database), ("net.peer.name", url.host)):
            if value:
                self._attributes[name] = value
        if url.port:
            self._attributes["net.peer.port"] = url.port

    def started(self, conn: Connection, _: object, statement: str, *__: object) -> None:
        if not trace.get_current_span().is_recording():
            return  # not sampled (a job's span), or outside a span: no span
        self.ended(conn)  # one left by a statement cancelled before either event (none seen)
        name = statement.split(None, 1)[0] if statement else "SQL"
        attributes = self._attributes | {"db.statement": statement}
        conn.info[_SPAN_KEY] = self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        )

    def ended(self, conn: Connection, *_: object) -> None:
        span: trace.Span | None = conn.info.pop(_SPAN_KEY, None)
        if span is not None:
            span.end()

    def failed(self, context: ExceptionContext) -> None:
        connection = context.connection
        span: trace.Span | None = connection.info.pop(_SPAN_KEY, None) if connection else None
        if span is not None:
            error = context.original_exception
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()


async def stop_tracing(tracing: Tracing) -> None:
    """Export what is queued, for at most `FLUSH_TIMEOUT_S`. A daemon thread does it, so an
    unreachable collector can neither block the event loop nor keep the process alive."""
    flusher = threading.Thread(target=tracing.provider.shutdown, daemon=True)
    flusher.start()
    await asyncio.to_thread(flusher.join, FLUSH_TIMEOUT_S)


class IncomingContext:
    """The caller's trace context from a request's `traceparent` (and baggage) headers."""

    def __init__(self, propagator: TextMapPropagator) -> None:
        self._propagator = propagator
        self._names = frozenset(name.encode("latin-1") for name in propagator.fields)

    def __call__(self, headers: Sequence[tuple[bytes, bytes]]) -> Context:
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in self._names
        }
        return self._propagator.extract(carrier) if carrier else Context()


def span_event(name: str, **attributes: str | int | float) -> None:
    """An event on the current span (a breaker rejection, a wait for a connection); nothing
    when there is no span, as with tracing off."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def record_error(error: BaseException, error_id: str) -> None:
    """The unexpected exception behind a 500, recorded once, with the id its log line has."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(error)
        span.set_attribute("app.error_id", error_id)
