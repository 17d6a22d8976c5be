"""The HTTP stack in production mode: error format, ids, logs, limits, hardening.

The app under test is the real one from `create_app(settings)` plus a few routes that misbehave
on purpose; its JSON log lines are read from stderr, where the production config writes them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Header, HTTPException
from fastapi.responses import StreamingResponse
from sqlalchemy import text

from app.db.session import DbSession
from app.errors import NotFound, ServiceUnavailable
from app.factory import add_routes, create_app
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests import notes
from tests.support import asgi_client, make_settings, requests_counted

INTERNAL_DETAIL = "boom: SELECT password FROM users WHERE token='tok-123'"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "request_id"}
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
}
SLOW_MS = 150
BACKGROUND_S = 1.0
LIMIT_S = 0.6
MAX_BODY = 1024

faults = APIRouter(prefix="/_test")
side_effects: list[str] = []


@faults.get("/boom")
async def boom() -> None:
    raise RuntimeError(INTERNAL_DETAIL)


@faults.get("/log")
async def log_inside() -> dict[str, str]:
    import structlog  # noqa: PLC0415 - local to the test route

    structlog.get_logger("app.test").info("inside_handler")
    return {"ok": "yes"}


@faults.get("/sleep")
async def sleep(ms: int) -> dict[str, int]:
    await asyncio.sleep(ms / 1000)
    return {"slept": ms}


@faults.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(3):
            await asyncio.sleep(0.08)
            yield f"chunk {n}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@faults.get("/background")
async def background(tasks: BackgroundTasks) -> dict[str, bool]:
    tasks.add_task(asyncio.sleep, BACKGROUND_S)  # runs after the response is sent
    return {"queued": True}


@faults.post("/write-then-hang")
async def write_then_hang(session: DbSession) -> dict[str, bool]:
    await session.execute(text("INSERT INTO test_notes (text) VALUES ('written-before-timeout')"))
    await session.flush()
    await asyncio.sleep(LIMIT_S * 3)
    side_effects.append("finished")
    return {"finished": True}


@faults.get("/cancel-surfaces-as-error")
async def cancel_surfaces_as_error() -> None:
    try:
        await asyncio.sleep(LIMIT_S * 3)
    except asyncio.CancelledError:
        raise RuntimeError("the driver noticed the cancel") from None  # as asyncpg may


@faults.post("/ignores-its-body")
async def ignores_its_body() -> dict[str, bool]:
    return {"read": False}


@faults.get("/stream-then-fail")
async def stream_then_fail() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first chunk\n"
        raise RuntimeError("failed mid-stream")

    return StreamingResponse(chunks(), media_type="text/plain")


@faults.get("/slow-to-cancel")
async def slow_to_cancel() -> None:
    try:
        await asyncio.sleep(LIMIT_S * 3)
    except asyncio.CancelledError:
        await asyncio.sleep(0.3)  # cleaning up after the cancel takes a while
        raise


@faults.get("/busy")
async def busy() -> None:
    raise ServiceUnavailable("Try again shortly.", retry_after=7)


@faults.get("/gone")
async def gone() -> None:
    raise NotFound("No such thing.")


@faults.post("/echo")
async def echo(body: dict[str, Any]) -> dict[str, int]:
    return {"keys": len(body)}


def production_settings(cluster: PgCluster, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "production",
        "log": {"format": "json"},
        "http": {
            "allowed_hosts": ["testserver", "api.example.com"],
            "slow_request_ms": SLOW_MS,
            "request_timeout": LIMIT_S,
            "max_body_bytes": MAX_BODY,
            "hsts_max_age": 31536000,
        },
        "db": {"command_timeout": 0.5, "statement_timeout_ms": 400},
        "auth": {"mode": "none"},
    }
    values.update(overrides)
    return make_settings(cluster, **values)


Stack = tuple[httpx.AsyncClient, Callable[[], list[dict[str, Any]]]]


@pytest.fixture
async def stack(
    settings: Settings, capsys: pytest.CaptureFixture[str], migrated: PgCluster
) -> AsyncIterator[Stack]:
    """A production-mode app and a function returning the JSON log lines written so far."""
    app: FastAPI = create_app(production_settings(migrated))
    app.include_router(faults)
    add_routes(app, notes.router)
    side_effects.clear()
    lines: list[dict[str, Any]] = []

    def logs() -> list[dict[str, Any]]:
        for line in capsys.readouterr().err.splitlines():
            try:
                lines.append(json.loads(line))  # every line must be JSON
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
        return lines

    async with asgi_client(app) as client:
        yield client, logs


def access_lines(lines: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "request" and line["path"] == path]


async def test_unhandled_error_is_500_with_error_id_and_one_log_line(stack: Stack) -> None:
    client, logs = stack
    response = await client.get("/_test/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "An unexpected error occurred. Quote the error_id when reporting it.",
        "request_id": response.headers["x-request-id"],
        "error_id": body["error_id"],
    }
    assert re.fullmatch("[0-9a-f]{32}", body["error_id"])
    assert "boom" not in response.text
    assert "SELECT" not in response.text
    assert "Traceback" not in response.text

    errors = [line for line in logs() if line["level"] == "error"]
    assert len(errors) == 1
    (error,) = errors
    assert error["error_id"] == body["error_id"]
    assert error["request_id"] == body["request_id"]
    assert error["event"] == "unhandled_exception"
    assert (error["method"], error["path"], error["route"]) == ("GET", "/_test/boom", "/_test/boom")
    assert error["response_started"] is False
    assert "Traceback" in error["exception"]
    assert INTERNAL_DETAIL in error["exception"]


async def test_incoming_request_id_is_echoed_and_logged(stack: Stack) -> None:
    client, logs = stack
    response = await client.get("/_test/log", headers={"x-request-id": "abc-123.req"})
    assert response.headers["x-request-id"] == "abc-123.req"
    lines = logs()
    inside = [line for line in lines if line["event"] == "inside_handler"]
    assert [line["request_id"] for line in inside] == ["abc-123.req"]
    (access,) = access_lines(lines, "/_test/log")
    assert access["request_id"] == "abc-123.req"
    assert access["route"] == "/_test/log"
    assert access["method"] == "GET"
    assert access["status"] == 200
    assert access["duration_ms"] >= 0
    assert access["client"] == "127.0.0.1"


@pytest.mark.parametrize("bad", ["x" * 129, "has space", 'quote"d', "semi;colon", ""])
async def test_unsafe_request_id_is_replaced(stack: Stack, bad: str) -> None:
    client, _logs = stack
    response = await client.get("/health", headers={"x-request-id": bad})
    replaced = response.headers["x-request-id"]
    assert replaced != bad
    assert re.fullmatch(r"[0-9a-f]{32}", replaced), replaced


async def test_each_request_gets_its_own_id(stack: Stack) -> None:
    client, _ = stack
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


async def test_slow_request_is_logged_above_threshold_only(stack: Stack) -> None:
    client, logs = stack
    await client.get("/_test/sleep", params={"ms": SLOW_MS + 100})
    await client.get("/_test/sleep", params={"ms": 1})
    slow = [line for line in logs() if line["event"] == "slow_request"]
    assert len(slow) == 1
    assert slow[0]["level"] == "warning"
    assert slow[0]["route"] == "/_test/sleep"
    assert slow[0]["duration_ms"] >= SLOW_MS + 100
    assert slow[0]["request_id"]


async def test_streaming_response_is_timed_to_its_last_chunk(stack: Stack) -> None:
    client, logs = stack
    response = await client.get("/_test/stream")
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    (access,) = access_lines(logs(), "/_test/stream")
    assert access["duration_ms"] >= 240


async def test_background_work_after_the_response_is_not_counted(stack: Stack) -> None:
    client, logs = stack
    await client.get("/_test/background")
    lines = logs()
    (access,) = access_lines(lines, "/_test/background")
    assert access["duration_ms"] < BACKGROUND_S * 1000  # counted, it would take at least that
    assert not [line for line in lines if line["event"] == "slow_request"]


async def test_request_over_the_time_limit_is_504_and_cancelled(
    stack: Stack, migrated: PgCluster
) -> None:
    client, logs = stack
    response = await client.post("/_test/write-then-hang")
    assert response.status_code == 504
    assert response.headers["content-type"] == "application/problem+json"
    assert set(response.json()) == PROBLEM_FIELDS
    await asyncio.sleep(LIMIT_S * 3)  # long enough for an uncancelled handler to finish
    assert side_effects == []
    count = migrated.psql(
        "SELECT count(*) FROM test_notes WHERE text = 'written-before-timeout'", database="app"
    )
    assert count.strip() == "0"
    warnings = [line for line in logs() if line["level"] == "warning" and "method" in line]
    assert [line["event"] for line in warnings] == ["request_timeout", "slow_request"]
    timeout = warnings[0]
    assert (timeout["method"], timeout["path"], timeout["route"]) == (
        "POST",
        "/_test/write-then-hang",
        "/_test/write-then-hang",
    )
    assert (timeout["limit_s"], timeout["response_started"]) == (LIMIT_S, False)


async def test_oversized_body_with_content_length_is_413(stack: Stack) -> None:
    client, _ = stack
    response = await client.post("/_test/echo", content=b"{" + b" " * MAX_BODY + b"}")
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    small = await client.post("/_test/echo", json={"a": 1})
    assert small.status_code == 200


async def test_oversized_chunked_body_without_content_length_is_413(stack: Stack) -> None:
    client, _ = stack

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"a": "'
        for _ in range(8):
            yield b"x" * 256
        yield b'"}'

    response = await client.post("/_test/echo", content=chunked())
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["status"] == 413


async def test_wrong_host_is_400_but_probes_still_answer(stack: Stack) -> None:
    client, _ = stack
    wrong = await client.get(notes.PREFIX, headers={"host": "evil.example"})
    assert wrong.status_code == 400
    assert wrong.headers["content-type"] == "application/problem+json"
    assert (await client.get(notes.PREFIX, headers={"host": "api.example.com"})).status_code == 200
    assert (await client.get("/health", headers={"host": "10.1.2.3:9000"})).status_code == 200
    assert (await client.get("/ready", headers={"host": "10.1.2.3:9000"})).status_code == 200


async def test_security_headers_on_success_and_errors(stack: Stack) -> None:
    client, _ = stack
    for path, status in (("/health", 200), ("/nowhere", 404), ("/_test/boom", 500)):
        response = await client.get(path)
        assert response.status_code == status
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (path, name)
        assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_routing_errors_use_the_problem_format(stack: Stack) -> None:
    client, _ = stack
    missing = await client.get("/nowhere")
    assert missing.headers["content-type"] == "application/problem+json"
    assert set(missing.json()) == PROBLEM_FIELDS
    wrong_method = await client.put("/health")
    assert wrong_method.status_code == 405
    assert set(wrong_method.json()) == PROBLEM_FIELDS


async def test_docs_and_schema_are_off_in_production(stack: Stack) -> None:
    client, _ = stack
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert (await client.get(path)).status_code == 404


async def test_probe_requests_are_not_access_logged_by_default(stack: Stack) -> None:
    client, logs = stack
    await client.get("/health")
    await client.get(notes.PREFIX)
    lines = logs()
    assert access_lines(lines, "/health") == []
    (listing,) = access_lines(lines, notes.PREFIX)
    assert listing["route"] == notes.PREFIX


async def test_access_line_names_the_route_template(stack: Stack) -> None:
    client, logs = stack
    await client.get(f"{notes.PREFIX}/4242")
    (line,) = access_lines(logs(), f"{notes.PREFIX}/4242")
    assert line["route"] == f"{notes.PREFIX}/{{note_id}}"
    assert line["status"] == 404


async def test_cors_is_off_unless_origins_are_configured(stack: Stack, migrated: PgCluster) -> None:
    client, _ = stack
    preflight = {"origin": "https://app.example.com", "access-control-request-method": "GET"}
    response = await client.options(notes.PREFIX, headers=preflight)
    assert "access-control-allow-origin" not in response.headers

    settings = production_settings(
        migrated,
        http={"allowed_hosts": ["testserver"], "cors_origins": "https://app.example.com"},
    )
    cors_app = create_app(settings)
    add_routes(cors_app, notes.router)
    async with asgi_client(cors_app) as cors_client:
        allowed = await cors_client.options(notes.PREFIX, headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = preflight | {"origin": "https://evil.example"}
        refused = await cors_client.options(notes.PREFIX, headers=other)
        assert "access-control-allow-origin" not in refused.headers


def by_reference(label: str) -> APIRouter:
    """A domain-like router with a `/{ref}` route, as every domain has one."""
    router = APIRouter()

    @router.get("/{ref}")
    async def one(ref: str) -> dict[str, str]:
        return {label: ref}

    return router


async def require_caller(x_caller: Annotated[str | None, Header()] = None) -> None:
    if x_caller is None:
        raise HTTPException(403, "No caller.")


async def test_routers_included_with_a_prefix_keep_it_in_logs_405s_and_dependencies(
    migrated: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(production_settings(migrated))
    app.include_router(by_reference("order"), prefix="/_test/orders")
    protected = [Depends(require_caller)]
    app.include_router(by_reference("user"), prefix="/_test/users", dependencies=protected)
    shared = by_reference("twice")
    for prefix in ("/_test/a", "/_test/b"):
        app.include_router(shared, prefix=prefix)
    direct = APIRouter(prefix="/_test/direct")
    direct.include_router(by_reference("direct"))
    add_routes(app, direct)  # the other way: the same label for the same template
    async with asgi_client(app) as client:
        assert (await client.get("/_test/direct/d-1")).json() == {"direct": "d-1"}
        assert (await client.get("/_test/orders/o-1")).json() == {"order": "o-1"}
        assert (await client.get("/_test/users/u-1")).status_code == 403
        caller = {"x-caller": "billing"}
        assert (await client.get("/_test/users/u-1", headers=caller)).json() == {"user": "u-1"}
        for prefix in ("/_test/a", "/_test/b"):
            assert (await client.get(f"{prefix}/r")).status_code == 200
        wrong = await client.put("/_test/orders/o-1")
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET"
    access = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if '"request"' in line
    ]
    routes = {line["path"]: line["route"] for line in access if line.get("event") == "request"}
    assert routes == {
        "/_test/orders/o-1": "/_test/orders/{ref}",
        "/_test/users/u-1": "/_test/users/{ref}",
        "/_test/a/r": "/_test/a/{ref}",
        "/_test/b/r": "/_test/b/{ref}",
        "/_test/direct/d-1": "/_test/direct/{ref}",
    }


def blank(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


async def chunks_over_the_limit() -> AsyncIterator[bytes]:
    for _ in range(MAX_BODY // 256 + 2):
        yield b"x" * 256


# What a client receives for each kind of refusal: the whole body (its request_id checked apart),
# so a changed word, status or field is a failing test, not a silent change of the contract.
REFUSALS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("GET", "/nowhere", {}, blank(404, "Not Found", "Not Found")),
    (
        "GET",
        "/_test/gone",
        {},
        {
            "type": "urn:problem:not-found",
            "title": "Not Found",
            "status": 404,
            "detail": "No such thing.",
        },
    ),
    (
        "GET",
        "/_test/busy",
        {},
        {
            "type": "urn:problem:service-unavailable",
            "title": "Service Unavailable",
            "status": 503,
            "detail": "Try again shortly.",
        },
    ),
    ("PUT", notes.PREFIX, {}, blank(405, "Method Not Allowed", "Method Not Allowed")),
    (
        "GET",
        notes.PREFIX,
        {"headers": {"host": "evil.example"}},
        blank(400, "Bad Request", "Invalid Host header."),
    ),
    (
        "POST",
        "/_test/echo",
        {"content": b"{" + b" " * MAX_BODY + b"}"},
        blank(413, "Request Entity Too Large", f"The request body exceeds {MAX_BODY} bytes."),
    ),
    (
        "POST",
        "/_test/ignores-its-body",
        {"content": b"x" * (MAX_BODY + 1)},
        blank(413, "Request Entity Too Large", f"The request body exceeds {MAX_BODY} bytes."),
    ),
    (
        "POST",
        "/_test/echo",
        {"content": chunks_over_the_limit},
        blank(413, "Request Entity Too Large", f"The request body exceeds {MAX_BODY} bytes."),
    ),
    (
        "POST",
        notes.PREFIX,
        {"json": {"text": 7, "extra": [1]}},
        {
            "type": "urn:problem:validation-error",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "The request is not valid; see `errors` for each field.",
            "errors": [
                {
                    "loc": ["body", "text"],
                    "msg": "Input should be a valid string",
                    "type": "string_type",
                }
            ],
        },
    ),
    (
        "POST",
        "/_test/write-then-hang",
        {},
        blank(504, "Gateway Timeout", f"The request took longer than {LIMIT_S:g} s."),
    ),
]


@pytest.mark.parametrize(("method", "path", "options", "expected"), REFUSALS)
async def test_each_refusal_is_the_documented_problem_body(
    stack: Stack, method: str, path: str, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    client, _ = stack
    if callable(options.get("content")):
        options = options | {"content": options["content"]()}
    response = await client.request(method, path, **options)
    assert response.status_code == expected["status"]
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body.pop("request_id") == response.headers["x-request-id"]
    assert body == expected
    if expected["status"] == 503:
        assert response.headers["retry-after"] == "7"
    if expected["status"] == 405:
        assert response.headers["allow"] == "GET, POST"  # every method of the path, not one


async def test_a_body_of_exactly_the_limit_is_accepted(stack: Stack) -> None:
    client, _ = stack
    exact = b'{"a": "' + b"x" * (MAX_BODY - 9) + b'"}'
    assert len(exact) == MAX_BODY

    async def chunked() -> AsyncIterator[bytes]:
        yield exact

    json = {"content-type": "application/json"}
    announced = await client.post("/_test/echo", content=exact, headers=json)
    streamed = await client.post("/_test/echo", content=chunked(), headers=json)
    assert (announced.status_code, streamed.status_code) == (200, 200)


def in_flight(metrics_text: str) -> float:
    (line,) = [x for x in metrics_text.splitlines() if x.startswith("http_requests_in_flight ")]
    return float(line.split()[1])


async def test_requests_in_flight_count_up_and_back_down(stack: Stack) -> None:
    """The gauge counts each request once while it runs (the /metrics request itself too),
    and is back to nothing once they have all finished, refused and failed ones included."""
    client, _ = stack
    assert in_flight((await client.get("/metrics")).text) == 1
    slow = asyncio.create_task(client.get("/_test/sleep", params={"ms": 2000}))  # ends as a 504
    async with asyncio.timeout(1.5):  # while the slow one runs, it and this one are counted
        while in_flight((await client.get("/metrics")).text) != 2:  # noqa: ASYNC110 - polls the service
            await asyncio.sleep(0.01)
    await slow
    # Counted by method, route and status once its last chunk is out (the client may see the
    # response a moment before the middleware records it).
    async with asyncio.timeout(1):
        while requests_counted((await client.get("/metrics")).text, "/_test/sleep", 504) != 1:  # noqa: ASYNC110 - polls the service
            await asyncio.sleep(0.01)
    await client.get("/_test/boom")
    await client.get("/nowhere", headers={"host": "evil.example"})
    assert in_flight((await client.get("/metrics")).text) == 1


async def raw_call(
    app: FastAPI, method: str, path: str, headers: dict[str, str], body: list[bytes]
) -> list[dict[str, Any]]:
    """One request as a raw ASGI call (for what no compliant HTTP client sends); the messages
    the app sent back."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": number < len(body) - 1}
        for number, chunk in enumerate(body)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    async with LifespanManager(app) as manager:
        await manager.app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def app_with_faults(cluster: PgCluster) -> FastAPI:
    app = create_app(production_settings(cluster))
    app.include_router(faults)
    return app


async def test_bytes_beyond_the_announced_length_are_counted_too(migrated: PgCluster) -> None:
    """Content-Length is not trusted alone: were a server to deliver more than a request
    announced, the bytes `receive()` really delivers still meet the limit."""
    headers = {"host": "testserver", "content-type": "application/json", "content-length": "10"}
    body = [b'{"a": "', b"x" * MAX_BODY, b'"}']
    sent = await raw_call(app_with_faults(migrated), "POST", "/_test/echo", headers, body)
    assert sent[0]["status"] == 413


async def test_a_content_length_that_is_not_a_number_is_400(migrated: PgCluster) -> None:
    headers = {"host": "testserver", "content-length": "ten"}
    sent = await raw_call(app_with_faults(migrated), "POST", "/_test/echo", headers, [b"{}"])
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["detail"] == "Invalid Content-Length."


async def test_a_response_started_without_headers_still_gets_ours(migrated: PgCluster) -> None:
    """ASGI lets an app leave out `headers` (a mounted plain ASGI app may)."""

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    app = app_with_faults(migrated)
    app.mount("/_test/bare", bare)
    sent = await raw_call(app, "GET", "/_test/bare", {"host": "testserver"}, [b""])
    names = {name for name, _ in sent[0]["headers"]}
    assert {b"x-request-id", b"cache-control", b"x-content-type-options"} <= names


async def test_a_response_cut_short_is_timed_to_when_it_ended(
    migrated: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = await raw_call(
        app_with_faults(migrated), "GET", "/_test/stream-then-fail", {"host": "testserver"}, [b""]
    )
    assert sent[-1].get("more_body")  # the last chunk never went out
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (access,) = access_lines(lines, "/_test/stream-then-fail")
    assert 0 <= access["duration_ms"] < 5000


async def test_a_request_ending_while_another_is_being_cancelled_is_not_a_timeout(
    stack: Stack,
) -> None:
    client, logs = stack
    slow = asyncio.create_task(client.get("/_test/slow-to-cancel"))
    await asyncio.sleep(LIMIT_S + 0.15)  # its limit passed (tick 0.1 s); it is cleaning up
    assert (await client.get("/_test/sleep", params={"ms": 1})).status_code == 200
    assert (await slow).status_code == 504
    timeouts = [line["path"] for line in logs() if line["event"] == "request_timeout"]
    assert timeouts == ["/_test/slow-to-cancel"]


async def test_a_request_within_its_limits_logs_no_warning(stack: Stack) -> None:
    client, logs = stack
    assert (await client.post("/_test/echo", json={"a": 1})).status_code == 200
    assert (await client.get("/_test/sleep", params={"ms": 1})).status_code == 200
    # The requests' lines: the startup's (AUTH__MODE=none in production warns) are not theirs.
    answered = [line for line in logs() if "request_id" in line]
    assert [line for line in answered if line["level"] != "info"] == []


async def test_a_time_limit_cancel_that_surfaces_as_another_error_is_still_a_504(
    stack: Stack,
) -> None:
    client, logs = stack
    response = await client.get("/_test/cancel-surfaces-as-error")
    assert response.status_code == 504
    events = [line["event"] for line in logs() if line["level"] != "info" and "request_id" in line]
    assert events == ["request_timeout", "slow_request"]  # not an unhandled_exception


async def test_without_a_database_the_data_routes_answer_503_and_say_why() -> None:
    app = create_app(make_settings(None))
    add_routes(app, notes.router)
    async with asgi_client(app) as client:
        response = await client.get(notes.PREFIX)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "The database is not configured (DATABASE_URL is unset)."
