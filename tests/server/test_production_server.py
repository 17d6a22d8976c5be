"""The production command in production mode, driven over loopback."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests import notes
from tests.routes import BOOM
from tests.support import Server, db_env, gunicorn, wait_for

# The service plus test-only routes: these tests must not depend on the example domain.
FAULT_APP = "tests.server.fault_app:app"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(migrated: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = db_env(migrated) | {
        "APP_ENV": "production",
        "HTTP__ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HTTP__MAX_BODY_BYTES": "2048",
        "AUTH__MODE": "none",
    }
    log = tmp_path_factory.mktemp("prod") / "gunicorn.log"
    with gunicorn(env, log, workers=2, app=FAULT_APP) as running:
        wait_for(f"{running.base_url}/ready")
        yield running


def json_lines(server: Server) -> list[dict[str, Any]]:
    lines = []
    for raw in server.output().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            pytest.fail(f"not a JSON line: {raw!r}")
    return lines


def test_startup_access_and_error_lines_are_all_json(server: Server) -> None:
    items = httpx.get(f"{server.base_url}{notes.PREFIX}", headers={"x-request-id": "trace-me-1"})
    assert items.status_code == 200
    boom = httpx.get(f"{server.base_url}/_test/boom")
    assert boom.status_code == 500
    body = boom.json()
    assert BOOM not in boom.text

    # The access line is written just after the response goes out: give it a moment.
    deadline = time.monotonic() + 5
    while True:
        lines = json_lines(server)  # fails on the first line that is not JSON
        access = [line for line in lines if line.get("event") == "request"]
        if any(line["path"] == "/_test/boom" for line in access):
            break
        assert time.monotonic() < deadline, "no access line for the 500"
        time.sleep(0.05)
    # Gunicorn's and Uvicorn's own lines went through the same JSON pipeline.
    loggers = {line.get("logger") for line in lines}
    assert {"gunicorn.error", "uvicorn.error", "app.lifespan"} <= loggers, loggers
    assert any(line["request_id"] == "trace-me-1" and line["status"] == 200 for line in access)
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    assert len(errors) == 1, errors  # neither uvicorn nor gunicorn logs it again
    assert errors[0]["error_id"] == body["error_id"]
    assert BOOM in errors[0]["exception"]
    assert any(line["status"] == 500 and line["path"] == "/_test/boom" for line in access)


def test_access_line_takes_the_client_from_a_trusted_proxy(server: Server) -> None:
    """SERVER__FORWARDED_ALLOW_IPS trusts loopback by default, so X-Forwarded-For counts."""
    headers = {"x-forwarded-for": "203.0.113.7", "x-request-id": "via-proxy-1"}
    assert httpx.get(f"{server.base_url}{notes.PREFIX}", headers=headers).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in json_lines(server) if line.get("request_id") == "via-proxy-1"]
        access = [line for line in lines if line.get("event") == "request"]
        if access:
            break
        assert time.monotonic() < deadline, "no access line"
        time.sleep(0.05)
    assert access[0]["client"] == "203.0.113.7"


def test_server_header_is_not_sent(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/health")
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_chunked_body_over_the_limit_is_413_over_the_wire(server: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    async with httpx.AsyncClient(base_url=server.base_url) as client:
        response = await client.post(notes.PREFIX, content=chunks())
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_wrong_host_is_refused_but_probes_answer(server: Server) -> None:
    wrong = {"host": "attacker.example"}
    assert httpx.get(f"{server.base_url}{notes.PREFIX}", headers=wrong).status_code == 400
    assert httpx.get(f"{server.base_url}/health", headers={"host": "10.0.0.7"}).status_code == 200
    assert httpx.get(f"{server.base_url}/ready", headers={"host": "10.0.0.7"}).status_code == 200


def test_docs_are_off_in_production(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/docs").status_code == 404
    assert httpx.get(f"{server.base_url}/openapi.json").status_code == 404


def test_each_worker_freezes_its_startup_heap_and_raises_the_gc_threshold(
    server: Server,
) -> None:
    """Two workers, each logging what `tune_gc` did before it served (SERVER__GC_THRESHOLD
    defaults to 5000; the startup heap of FastAPI + SQLAlchemy is well over 50,000 objects)."""
    deadline = time.monotonic() + 20  # /ready answered from one worker; the other may be booting
    while (
        len(tuned := [line for line in json_lines(server) if line.get("event") == "worker_gc"]) < 2
    ):
        assert time.monotonic() < deadline, tuned
        time.sleep(0.1)
    assert len(tuned) == 2, tuned
    assert len({line["pid"] for line in tuned}) == 2
    for line in tuned:
        assert line["threshold"][0] == 5000
        assert line["frozen"] > 50_000
