"""The connection budget check at worker startup, against the real server's max_connections."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests.support import db_env, gunicorn, wait_for

pytestmark = pytest.mark.slow


def budget_line(output: str) -> dict[str, object]:
    for raw in output.splitlines():
        if "pool_budget_" in raw:
            line: dict[str, object] = json.loads(raw)
            return line
    raise AssertionError("no pool_budget line")


def test_a_budget_within_limits_is_logged_as_ok(migrated: PgCluster, tmp_path: Path) -> None:
    env = db_env(migrated) | {"LOG__FORMAT": "json", "DB__POOL_SIZE": "5"}
    env |= {"JOBS__REPLICAS": "2", "JOBS__CONCURRENCY": "3"}  # jobs-only
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
        wait_for(f"{server.base_url}/ready")
        line = budget_line(server.output())
    assert line["event"] == "pool_budget_ok"
    needed = 10  # 1 replica x 2 workers x 5
    # jobs-only
    # 2 job workers x (3 jobs at once + the queue's connection)
    needed += 2 * (3 + 1)
    # /jobs-only
    assert line["needed"] == needed
    assert line["available"] == 97  # 100 - 3 reserved


def test_an_exceeded_budget_warns_by_default(migrated: PgCluster, tmp_path: Path) -> None:
    env = db_env(migrated) | {"LOG__FORMAT": "json", "SERVER__REPLICAS": "20"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1) as server:
        wait_for(f"{server.base_url}/ready")  # still serves
        line = budget_line(server.output())
    assert line["event"] == "pool_budget_exceeded"
    assert line["level"] == "warning"
    needed = 200  # 20 replicas x 1 worker x 10
    needed += 1 * (8 + 1)  # jobs-only
    assert line["needed"] == needed


def test_an_exceeded_budget_stops_the_service_when_set_to_refuse(
    migrated: PgCluster, tmp_path: Path
) -> None:
    env = db_env(migrated) | {
        "LOG__FORMAT": "json",
        "SERVER__REPLICAS": "20",
        "DB__POOL_BUDGET": "refuse",
    }
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, booted=False) as server:
        deadline = time.monotonic() + 20
        answered = []
        while server.process.poll() is None:  # asking all along: nothing may be served
            assert time.monotonic() < deadline, "the master kept running"
            try:
                answered.append(httpx.get(f"{server.base_url}/health", timeout=0.2).status_code)
            except httpx.TransportError:
                time.sleep(0.05)
        assert server.process.returncode != 0
        assert "pool_budget_exceeded" in server.output()
        assert answered == []
