"""Slow clients under the real server: a request head must arrive within
SERVER__HEADER_TIMEOUT_SECONDS (app/worker.py), counted from accept and from the first byte of
each later request; a slow body is the body limit's and the request time limit's business, and
a kept-alive client idle between requests is the keep-alive setting's."""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests import notes
from tests.server.test_metrics import FAULT_APP
from tests.support import Server, db_env, gunicorn, wait_metric

# Timings and a thousand connections: alone, after the parallel tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

DEADLINE_S = 2.0
TRICKLERS = 1000
HEAD = f"POST {notes.PREFIX} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


def env(migrated: PgCluster, **extra: str) -> dict[str, str]:
    return db_env(migrated) | {"SERVER__HEADER_TIMEOUT_SECONDS": str(DEADLINE_S)} | extra


@pytest.fixture
def many_files() -> None:
    """Room for a thousand connections in this process and in the server it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * TRICKLERS
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"the open-files limit is {hard}; these tests need {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


async def trickle(port: int, head: bytes, every: float) -> float:
    """Send `head` a byte every `every` seconds; seconds from connecting until the server closed
    (the server's accept, where its deadline starts, falls in between)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1024), every) == b"":
                    break  # closed, without a byte of answer
            except TimeoutError:
                continue
            raise AssertionError("the server answered a request whose head never ended")
        else:
            raise AssertionError("the whole head was sent: the connection was never cut")
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def health_while(port: int, busy: asyncio.Future[list[float]]) -> list[int]:
    """`/health` from another client, once every 0.1 s until `busy` is done."""
    answers = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while not busy.done():
            answers.append((await client.get("/health")).status_code)
            await asyncio.sleep(0.1)
    return answers


def test_a_thousand_trickled_heads_are_cut_at_the_deadline_while_health_answers(
    migrated: PgCluster, tmp_path: Path, many_files: None
) -> None:
    head = (HEAD + "\r\n").encode()  # 100 bytes at 2 a second: would take 50 s

    async def attack(server: Server) -> tuple[list[float], list[int]]:
        cut = asyncio.gather(*(trickle(server.port, head, 0.5) for _ in range(TRICKLERS)))
        health = await health_while(server.port, cut)
        return await cut, health

    with gunicorn(env(migrated), tmp_path / "g.log", workers=2, app=FAULT_APP) as server:
        held, health = asyncio.run(attack(server))
        counted = wait_metric(server.base_url, r"^http_header_timeouts_total (\d+)")
    assert len(held) == TRICKLERS
    assert max(held) <= DEADLINE_S + 1, sorted(held)[-5:]
    assert min(held) >= DEADLINE_S - 0.01  # never before: the deadline starts after connect
    assert health
    assert set(health) == {200}
    found = re.search(r"^http_header_timeouts_total (\S+)$", counted, re.M)
    assert found is not None
    assert float(found.group(1)) >= TRICKLERS


def test_a_head_in_time_then_a_slow_body_is_the_request_time_limits(
    migrated: PgCluster, tmp_path: Path
) -> None:
    """Past the header deadline the connection stays; the request time limit answers 504."""
    body = b'{"text": "a slow body"}'
    limit_s = 6.0  # above DB__COMMAND_TIMEOUT (5 s), as the settings require
    with gunicorn(
        env(migrated, HTTP__REQUEST_TIMEOUT=str(limit_s)), tmp_path / "g.log", app=FAULT_APP
    ) as server:
        started, answer = slow_body(server.port, body, f"Content-Length: {len(body)}\r\n")
    assert answer.startswith(b"HTTP/1.1 504"), answer
    assert limit_s - 0.2 <= started <= limit_s + 1.5


def test_a_slow_body_over_the_body_limit_is_413_past_the_header_deadline(
    migrated: PgCluster, tmp_path: Path
) -> None:
    body = b'{"text": "' + b"x" * 40 + b'"}'
    with gunicorn(env(migrated, HTTP__MAX_BODY_BYTES="16"), tmp_path / "g.log", app=FAULT_APP) as (
        server
    ):
        started, answer = slow_body(server.port, body, "Transfer-Encoding: chunked\r\n", 0.2)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert started > DEADLINE_S  # the 17th byte arrived after the head's deadline


def slow_body(port: int, body: bytes, framing: str, every: float = 0.5) -> tuple[float, bytes]:
    """A complete head at once, then the body a byte at a time until an answer arrives;
    seconds from connect to the answer, and the answer."""
    chunked = "chunked" in framing
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        started = time.monotonic()
        sock.sendall((HEAD + framing + "\r\n").encode())
        sock.settimeout(every)
        for byte in body:
            sock.sendall(b"1\r\n" + bytes([byte]) + b"\r\n" if chunked else bytes([byte]))
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            return time.monotonic() - started, answer
        sock.settimeout(30)
        return time.monotonic() - started, sock.recv(65536)


def test_a_kept_alive_client_idle_past_the_deadline_is_not_cut(
    migrated: PgCluster, tmp_path: Path
) -> None:
    """Idle time between requests is keep-alive's (75 s); a later request's head gets the
    deadline from its own first byte."""
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with (
        gunicorn(env(migrated), tmp_path / "g.log", app=FAULT_APP) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(request)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(DEADLINE_S + 1.5)  # idle between requests, past the head deadline
        sock.sendall(request)
        assert one_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(DEADLINE_S / 2)
        sock.settimeout(0.25)
        first_byte = time.monotonic()
        for byte in request:  # the third request's head, a byte every 0.25 s
            sock.sendall(bytes([byte]))
            try:
                assert sock.recv(65536) == b"", "answered a head that never ended"
                break
            except TimeoutError:
                continue
        cut_after = time.monotonic() - first_byte
    assert DEADLINE_S - 0.1 <= cut_after <= DEADLINE_S + 1


def one_response(sock: socket.socket) -> bytes:
    """A whole response with a Content-Length, however the bytes arrive."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body
