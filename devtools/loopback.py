"""An HTTP server on a free loopback port, served from a thread: the stand-ins the tests and
the benchmark run (an OTLP receiver, an OpenID provider)."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    # Closing waits for the request threads, so nothing a request does (or prints) outlives the
    # block: a test reading its own stderr never sees the end of the previous test's request.
    daemon_threads = False
    block_on_close = True

    def get_request(self) -> tuple[socket.socket, Any]:
        request, address = super().get_request()
        request.settimeout(5.0)  # a client that sends nothing cannot hold the close up
        return request, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-answer (a service stopping while it fetched) is expected here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


@contextmanager
def serve_in_thread(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[int]:
    """Serve `handler` on 127.0.0.1 while the block runs, over TLS with `tls`; yields the
    port."""
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # `shutdown()` waits for the loop to look again: at the default 0.5 s that was half a
    # second at the end of every test using a stand-in.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
