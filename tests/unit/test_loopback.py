"""The tests' stand-in servers: a stop waits for the requests in flight, so what one test's
request does or prints never lands in the next test's captured output."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from devtools.loopback import serve_in_thread


def test_a_request_whose_client_left_ends_quietly_before_the_stop_returns(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answered = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(0.3)  # the client is gone by now
            try:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"x" * 1_000_000)
            finally:
                answered.set()

        def log_message(self, *_: object) -> None:
            pass

    with serve_in_thread(Slow) as port, socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        time.sleep(0.05)  # the request is read before the client leaves
    assert answered.is_set()
    assert capsys.readouterr().err == ""
