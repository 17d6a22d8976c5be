"""A local OTLP/HTTP receiver for `make bench`'s tracing rows: takes every export, keeps count.

It answers as a collector does (200, an empty `ExportTraceServiceResponse`) without decoding,
so the cost measured is the service's, not the receiver's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from devtools.loopback import serve_in_thread


@dataclass
class Sink:
    port: int = 0
    exports: int = 0
    received_bytes: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def otlp_sink() -> Iterator[Sink]:
    sink = Sink()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            self.rfile.read(size)
            with lock:
                sink.exports += 1
                sink.received_bytes += size
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    with serve_in_thread(Handler) as sink.port:
        yield sink
