"""A real OTLP/HTTP receiver on loopback: decodes what exporters POST to /v1/traces.

The same protocol a collector speaks (protobuf bodies, `opentelemetry-proto`'s messages),
answered in a thread of the test process, so the spans a service exported can be asserted on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from devtools.loopback import serve_in_thread


def _values(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """Attributes as Python values (AnyValue's one set field)."""
    found = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        found[pair.key] = getattr(pair.value, kind) if kind else None
    return found


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_error: bool
    events: list[tuple[str, dict[str, Any]]]

    @property
    def is_server(self) -> bool:
        return self.kind == SpanMessage.SPAN_KIND_SERVER

    @property
    def is_client(self) -> bool:
        return self.kind == SpanMessage.SPAN_KIND_CLIENT


def _decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        ReceivedSpan(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            kind=span.kind,
            attributes=_values(span.attributes),
            resource=_values(resource_spans.resource.attributes),
            status_error=span.status.code == Status.STATUS_CODE_ERROR,
            events=[(event.name, _values(event.attributes)) for event in span.events],
        )
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


@dataclass
class Receiver:
    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """The base URL (OTEL_EXPORTER_OTLP_ENDPOINT); exporters append /v1/traces."""
        return f"http://127.0.0.1:{self.port}"

    def received(self) -> list[ReceivedSpan]:
        with self.lock:
            return list(self.spans)

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], *, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Poll until `found(spans)` holds; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.received()
            if found(spans):
                return spans
            time.sleep(0.05)
        names = sorted({span.name for span in self.received()})
        raise AssertionError(f"spans not received within {timeout} s; got {names}")


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    receiver = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = 404
            if self.path == "/v1/traces":
                spans = _decode(body)
                with receiver.lock:
                    receiver.spans.extend(spans)
                    receiver.requests += 1
                status = 200
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any) -> None:
            pass

    with serve_in_thread(Handler) as receiver.port:
        yield receiver
