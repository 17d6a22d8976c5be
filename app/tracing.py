"""OpenTelemetry traces, per worker: off unless an OTLP endpoint is configured.

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
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import PROCESS_PID, SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from typing_extensions import override

from app.settings import Settings

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


def start_tracing(settings: Settings, endpoint: str) -> Tracing:
    """The provider, its sampler and resource, and a batch exporter to `endpoint`."""
    resource = Resource.create(
        {
            **settings.otel_resource_attributes,
            SERVICE_NAME: settings.otel_service_name,
            # Each worker is its own instance: spans of two workers never look like one.
            SERVICE_INSTANCE_ID: uuid.uuid4().hex,
            PROCESS_PID: os.getpid(),
        }
    )
    # The lifespan shuts it down, bounded (`stop_tracing`); no unbounded flush at exit.
    provider = TracerProvider(
        resource=resource, sampler=build_sampler(settings), shutdown_on_exit=False
    )
    propagator = build_propagator(settings.otel_propagators)
    tracing = Tracing(provider, provider.get_tracer("app"), IncomingContext(propagator))
    tracing.provider.add_span_processor(tracing.counts)
    exporter = CountingExporter(OTLPSpanExporter(endpoint=endpoint), tracing.counts)
    tracing.provider.add_span_processor(BatchSpanProcessor(exporter))
    return tracing


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


def build_sampler(settings: Settings) -> Sampler:
    """OTEL_TRACES_SAMPLER and its ratio, never starting a trace at a lone database call."""
    ratio = TraceIdRatioBased(settings.otel_traces_sampler_arg)
    root = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
    }
    name = settings.otel_traces_sampler
    if name.startswith("parentbased_"):
        return NoClientRoots(ParentBased(root[name.removeprefix("parentbased_")]))
    return NoClientRoots(root[name])


class NoClientRoots(Sampler):
    """`sampler`'s decision, except that a client span without a parent is dropped: a
    statement outside any request (the readiness ping, the startup budget check) is not a
    trace of its own, and probes are never traced."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    @override  # the SDK's Sampler interface: its positional parameters are not ours to choose
    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoClientRoots{{{self.sampler.get_description()}}}"


def build_propagator(names: Sequence[str]) -> TextMapPropagator:
    """OTEL_PROPAGATORS: W3C trace context and baggage; "none" propagates nothing."""
    if "none" in names:
        return CompositePropagator([])
    known: dict[str, TextMapPropagator] = {
        "tracecontext": TraceContextTextMapPropagator(),
        "baggage": W3CBaggagePropagator(),
    }
    return CompositePropagator([known[name] for name in dict.fromkeys(names)])


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
