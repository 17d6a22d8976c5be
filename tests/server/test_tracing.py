"""Traces from the real server: Gunicorn with Uvicorn workers, a real PostgreSQL, and a real
OTLP/HTTP receiver (`tests/otlp.py`) standing in for the collector."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.tracing import FLUSH_TIMEOUT_S
from devtools.pgcluster import PgCluster
from tests import notes
from tests.otlp import otlp_receiver
from tests.server.test_metrics import FAULT_APP
from tests.support import Server, db_env, gunicorn, wait_for

pytestmark = pytest.mark.slow

SERVICE = "traced-under-gunicorn"
# gunicorn_conf.py's drain of idle connections (SERVER__DRAIN_IDLE_SECONDS) before the lifespan
# shutdown, which flushes the spans within FLUSH_TIMEOUT_S; then the master exits.
DRAIN_S = 1.0


def traceparent(n: int) -> tuple[str, str]:
    trace_id = f"{n + 1:032x}"
    return trace_id, f"00-{trace_id}-{n + 1:016x}-01"


def stop(server: Server) -> float:
    """TERM the master; seconds until it exited."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    return time.monotonic() - started


def test_spans_of_both_workers_reach_the_collector_and_a_term_flushes_them(
    migrated: PgCluster, tmp_path: Path
) -> None:
    with otlp_receiver() as receiver:
        env = db_env(migrated) | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": SERVICE,
            # Nothing leaves before the shutdown: what arrives was flushed by the TERM.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "LOG__FORMAT": "json",
        }
        with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
            wait_for(f"{server.base_url}/ready")
            traces: dict[str, str] = {}  # trace id -> request id
            pids = set()
            for n in range(40):  # a new connection each: the kernel spreads them over both
                trace_id, header = traceparent(n)
                path = notes.PREFIX if n % 2 else "/_test/pid"
                response = httpx.get(f"{server.base_url}{path}", headers={"traceparent": header})
                assert response.status_code == 200
                traces[trace_id] = response.headers["x-request-id"]
                if path == "/_test/pid":
                    pids.add(response.json()["pid"])
            for path in ("/health", "/ready", "/metrics"):
                response = httpx.get(f"{server.base_url}{path}", headers={"traceparent": header})
                assert response.status_code == 200
            assert len(pids) == 2, "both workers should have served"
            assert receiver.received() == []  # all still queued in the workers
            assert stop(server) < DRAIN_S + FLUSH_TIMEOUT_S + 3
            events = server.events()

    spans = receiver.received()
    servers = {span.trace_id: span for span in spans if span.is_server}
    assert set(servers) == set(traces)  # every request, and nothing for the probes
    for trace_id, server_span in servers.items():
        assert server_span.resource["service.name"] == SERVICE
        children = [span for span in spans if span.parent_span_id == server_span.span_id]
        statements = [span for span in children if "db.statement" in span.attributes]
        if server_span.name == "GET /_test/notes":
            assert [span.attributes["db.statement"].split()[0] for span in statements] == ["SELECT"]
            assert all(span.trace_id == trace_id for span in statements)
        else:
            assert server_span.name == "GET /_test/pid"
            assert statements == []
    assert {span.resource["process.pid"] for span in servers.values()} == pids
    assert len({span.resource["service.instance.id"] for span in servers.values()}) == 2
    # The access line of each request carries its trace id and its server span's id.
    for trace_id, request_id in traces.items():
        [line] = [
            e for e in events if e.get("event") == "request" and e.get("request_id") == request_id
        ]
        assert (line["trace_id"], line["span_id"]) == (trace_id, servers[trace_id].span_id)


@pytest.fixture
def unanswering_collector() -> Iterator[str]:
    """A loopback port that accepts connections and never answers, the worst a collector
    can do (a refused connection fails at once)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def spans_counted(base_url: str) -> dict[str, float]:
    text = httpx.get(f"{base_url}/metrics").text
    return {
        outcome: float(value)
        for outcome, value in re.findall(
            r'^tracing_spans_total\{outcome="(\w+)"\} (\S+)$', text, re.M
        )
    }


def wait_spans_ended(base_url: str, at_least: int, *, timeout: float = 5) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while (counted := spans_counted(base_url)).get("ended", 0) < at_least:
        assert time.monotonic() < deadline, f"spans counted: {counted}"
        time.sleep(0.1)
    return counted


def test_an_unreachable_collector_neither_slows_nor_fails_a_request(
    migrated: PgCluster, tmp_path: Path, unanswering_collector: str
) -> None:
    export_timeout = 5
    env = db_env(migrated) | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": unanswering_collector,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_TIMEOUT": str(export_timeout),
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "LOG__FORMAT": "json",
    }
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        slowest = 0.0
        with httpx.Client(base_url=server.base_url) as client:
            for _ in range(300):
                started = time.monotonic()
                assert client.get(notes.PREFIX).status_code == 200
                slowest = max(slowest, time.monotonic() - started)
        # An export waits up to its timeout; a request that waited for one would show it.
        assert slowest < 1.0
        # A server span and a statement per request, at least; the worker publishes its
        # counts once a second.
        counted = wait_spans_ended(server.base_url, 600)
        assert counted["exported"] == 0
        # The queue holds 64: the rest were dropped, which ended minus exported shows.
        assert counted["ended"] - counted["exported"] > 64
        # The shutdown gives the stuck export FLUSH_TIMEOUT_S, then the worker exits cleanly.
        assert stop(server) < DRAIN_S + FLUSH_TIMEOUT_S + 3
        assert "database_disposed" in {event.get("event") for event in server.events()}
