"""Traces in-process, against a real PostgreSQL and a real OTLP/HTTP receiver.

What a span records and what it never records; the same under real Gunicorn is in
tests/server/test_tracing.py. The app's provider is shut down when its lifespan ends, which
exports everything, so each test reads the receiver after leaving `traced()`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace

from app.db.database import database_of
from app.db.session import DbSession
from app.factory import add_routes
from app.middleware.tracing import TracingMiddleware
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests import notes
from tests.conftest import empty_tables
from tests.otlp import ReceivedSpan, Receiver, otlp_receiver
from tests.routes import service_with_test_routes
from tests.support import asgi_client, make_settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
NOT_SAMPLED = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-00"

probe = APIRouter(prefix="/_test")


@probe.get("/current-span")
async def current_span() -> dict[str, bool]:
    """What the handler sees: a real span when tracing is on, none when it is off."""
    return {"valid": trace.get_current_span().get_span_context().is_valid}


@probe.api_route("/session-engine", methods=["GET", "POST"])
async def session_engine(request: Request, session: DbSession) -> dict[str, bool]:
    """Whether the request's session is on an engine whose statements get spans."""
    plain = database_of(request).sessions
    return {"traced": session.bind not in (plain.read.kw["bind"], plain.write.kw["bind"])}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A receiver, and OpenTelemetry's variables pointing at it (the SDK reads them)."""
    with otlp_receiver() as found:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", found.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "traced-under-test")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        yield found


def traced_settings(cluster: PgCluster, **overrides: Any) -> Settings:
    return make_settings(cluster, **({"log": {"format": "json"}} | overrides))


def traced_app(settings: Settings) -> FastAPI:
    app = service_with_test_routes(settings)
    add_routes(app, probe)
    return app


@asynccontextmanager
async def traced(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(traced_app(settings)) as client:
        yield client


@pytest.fixture(autouse=True)
def _empty(migrated: PgCluster) -> None:
    empty_tables(migrated)


def children_of(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [child for child in spans if child.parent_span_id == span.span_id]


def server_spans(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [span for span in spans if span.is_server]


async def test_a_request_continues_the_callers_trace_with_its_statements_as_children(
    migrated: PgCluster, receiver: Receiver
) -> None:
    async with traced(traced_settings(migrated)) as client:
        created = await client.post(
            notes.PREFIX, json={"text": "secret-note-text"}, headers={"traceparent": SAMPLED}
        )
        assert created.status_code == 201
    spans = receiver.received()
    [server] = server_spans(spans)
    assert server.name == "POST /_test/notes"
    assert (server.trace_id, server.parent_span_id) == (TRACE_ID, CALLER_SPAN_ID)
    assert server.attributes["http.route"] == "/_test/notes"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 201
    assert server.attributes["app.request_id"] == created.headers["x-request-id"]
    assert not server.status_error
    statements = [span for span in children_of(server, spans) if "db.statement" in span.attributes]
    assert [span.attributes["db.statement"].split()[0] for span in statements] == ["INSERT"]
    assert all(span.is_client and span.trace_id == TRACE_ID for span in statements)
    assert "test_notes" in statements[0].attributes["db.statement"]
    # Statement text only: the bound value never reaches a span.
    assert "secret-note-text" not in json.dumps([span.attributes for span in spans])
    assert server.resource["service.name"] == "traced-under-test"
    assert server.resource["deployment.environment"] == "test"


async def test_a_statement_that_fails_ends_its_span_as_an_error(
    migrated: PgCluster, receiver: Receiver
) -> None:
    """The server cancels the statement (statement_timeout): its span still ends, marked as an
    error, and the next statement on the connection gets a span of its own."""
    settings = traced_settings(migrated, db={"statement_timeout_ms": 100})
    async with traced(settings) as client:
        slow = await client.get(
            "/_test/db-sleep", params={"seconds": 2}, headers={"traceparent": SAMPLED}
        )
        assert slow.status_code >= 500
        assert (await client.get(notes.PREFIX, headers={"traceparent": SAMPLED})).status_code == 200
    spans = receiver.wait_for(lambda found: len(server_spans(found)) == 2)
    statements = [span for span in spans if "db.statement" in span.attributes]
    [failed] = [span for span in statements if "pg_sleep" in span.attributes["db.statement"]]
    assert failed.status_error
    others = [span for span in statements if span is not failed]
    assert others
    assert not [span for span in others if span.status_error]


async def test_spans_hold_no_query_string_and_no_header_beyond_the_allow_list(
    migrated: PgCluster, receiver: Receiver
) -> None:
    secrets = {
        "authorization": "Bearer tok-in-header",
        "cookie": "session=cookie-value",
        "x-api-key": "key-in-header",
    }
    async with traced(traced_settings(migrated)) as client:
        response = await client.get(
            f"{notes.PREFIX}/7?access_token=tok-in-query",
            headers={"traceparent": SAMPLED, "user-agent": "tracing-test/1.0", **secrets},
        )
        assert response.status_code == 404
    [server] = server_spans(receiver.received())
    assert server.name == "GET /_test/notes/{note_id}"
    assert server.attributes["url.path"] == "/_test/notes/7"
    assert server.attributes["user_agent.original"] == "tracing-test/1.0"
    recorded = json.dumps([span.attributes for span in receiver.received()])
    for leaked in ("tok-in-query", "access_token", *secrets.values()):
        assert leaked not in recorded
    assert not server.status_error  # a 4xx is the caller's error, not the server's


async def test_a_500_is_an_error_span_with_its_exception_recorded_once_and_its_error_id(
    migrated: PgCluster, receiver: Receiver
) -> None:
    async with traced(traced_settings(migrated)) as client:
        response = await client.get("/_test/boom", headers={"traceparent": SAMPLED})
        assert response.status_code == 500
    [server] = server_spans(receiver.received())
    assert server.status_error
    assert server.attributes["error.type"] == "500"
    assert server.attributes["app.error_id"] == response.json()["error_id"]
    exceptions = [attributes for name, attributes in server.events if name == "exception"]
    assert len(exceptions) == 1
    assert exceptions[0]["exception.type"] == "RuntimeError"
    # The trace id is not in the body: the error id finds the log line, which carries it.
    assert TRACE_ID not in response.text


async def test_probes_and_metrics_are_never_traced(
    migrated: PgCluster, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    settings = traced_settings(migrated)
    async with traced(settings) as client:
        for path in ("/health", "/ready", "/metrics"):
            assert (await client.get(path, headers={"traceparent": SAMPLED})).status_code == 200
        assert (await client.get("/_test/pid")).status_code == 200
    assert [span.name for span in receiver.received()] == ["GET /_test/pid"]


async def test_log_lines_inside_a_request_carry_its_trace_and_span_ids(
    migrated: PgCluster, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    async with traced(traced_settings(migrated)) as client:
        capsys.readouterr()
        response = await client.get("/_test/boom", headers={"traceparent": SAMPLED})
        unsampled = await client.get("/_test/pid", headers={"traceparent": NOT_SAMPLED})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [server] = server_spans(receiver.received())
    request_id = response.headers["x-request-id"]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert {line["event"] for line in mine} == {"unhandled_exception", "request"}
    for line in mine:
        assert (line["trace_id"], line["span_id"]) == (TRACE_ID, server.span_id)
        assert line["trace_sampled"] is True
    # A caller that did not sample: no span exported, the ids still join the logs.
    [access] = [
        line for line in lines if line.get("request_id") == unsampled.headers["x-request-id"]
    ]
    assert access["trace_id"] == TRACE_ID
    assert access["trace_sampled"] is False


async def test_a_caller_that_did_not_sample_is_followed(
    migrated: PgCluster, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.0")
    settings = traced_settings(migrated)
    async with traced(settings) as client:
        for _ in range(5):
            response = await client.get(notes.PREFIX, headers={"traceparent": NOT_SAMPLED})
            assert response.status_code == 200
        assert (await client.get(notes.PREFIX)).status_code == 200  # a root: ratio 1.0
    assert [span.name for span in server_spans(receiver.received())] == ["GET /_test/notes"]


async def test_only_a_sampled_request_uses_the_engine_that_traces_statements(
    migrated: PgCluster, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unsampled request's statements run on an engine without listeners: SQLAlchemy
    dispatches no event for them (the cost of tracing that samples little)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1.0")
    settings = traced_settings(migrated)
    async with traced(settings) as client:
        for method in ("GET", "POST"):
            sampled, unsampled = [
                await client.request(
                    method, "/_test/session-engine", headers={"traceparent": parent}
                )
                for parent in (SAMPLED, NOT_SAMPLED)
            ]
            assert sampled.json() == {"traced": True}, method
            assert unsampled.json() == {"traced": False}, method


async def test_an_open_circuit_is_an_event_on_the_request_span(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on this loopback port: every call fails and the breaker opens.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    settings = make_settings(
        None,
        database_url="postgresql://app@127.0.0.1:9/app",
        db={"sslmode": "disable", "connect_timeout": 0.5},
        breaker={"minimum_calls": 2, "window_size": 2},
    )
    async with traced(settings) as client:
        statuses = [(await client.get(notes.PREFIX)).status_code for _ in range(3)]
        assert statuses == [503, 503, 503]
    servers = server_spans(receiver.received())
    events = [[name for name, _ in span.events] for span in servers]
    assert events == [[], [], ["db.circuit_open"]]
    assert all(span.status_error for span in servers)


async def test_a_wait_for_a_connection_is_an_event_on_the_request_span(
    migrated: PgCluster, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    settings = traced_settings(migrated, db={"pool_size": 1})
    async with traced(settings) as client:
        first = asyncio.create_task(client.get("/_test/db-sleep", params={"seconds": 0.3}))
        await asyncio.sleep(0.1)  # the first holds the only connection
        second = await client.get("/_test/db-sleep", params={"seconds": 0})
        assert (await first).status_code == second.status_code == 200
    waits = [
        attributes
        for span in server_spans(receiver.received())
        for name, attributes in span.events
        if name == "db.pool_wait"
    ]
    assert len(waits) == 1
    assert waits[0]["admitted"] is True
    assert 100 < waits[0]["waited_ms"] < 1000


async def test_with_tracing_off_nothing_traces_and_no_exporter_runs(
    migrated: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    app = traced_app(make_settings(migrated, log={"format": "json"}))
    added = [getattr(middleware.cls, "__name__", "") for middleware in app.user_middleware]
    assert TracingMiddleware.__name__ not in added
    async with asgi_client(app) as client:
        seen = await client.get("/_test/current-span", headers={"traceparent": SAMPLED})
        assert seen.json() == {"valid": False}
        assert (await client.get(notes.PREFIX)).status_code == 200
        threads = [thread.name for thread in threading.enumerate()]
        assert not [name for name in threads if name.startswith("OtelBatch")]
    # The service's JSON lines (a parallel run's process may print other things to stderr).
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [line for line in lines if line.get("event") == "request"], err
    assert not [line for line in lines if "trace_id" in line]


async def test_with_tracing_on_the_exporter_thread_runs_only_while_the_worker_does(
    migrated: PgCluster, receiver: Receiver
) -> None:
    async with traced(traced_settings(migrated)) as client:
        seen = await client.get("/_test/current-span")
        assert seen.json() == {"valid": True}
        assert [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]
    assert not [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]
