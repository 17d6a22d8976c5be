"""Probes through real Gunicorn while the test stops and starts its own PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.settings import DatabaseSettings, ProbeSettings
from devtools.pgcluster import PgCluster
from tests import notes
from tests.conftest import running, throwaway_cluster
from tests.support import db_env, gunicorn, wait_for

# The service plus test-only routes: these tests must not depend on the example domain.
FAULT_APP = "tests.server.fault_app:app"

pytestmark = pytest.mark.slow
READY_CACHE_TTL = ProbeSettings().ready_cache_ttl  # the default, which these servers run with


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgCluster]:
    """A cluster of this module's own, so stopping it does not disturb other tests."""
    with throwaway_cluster(migrated=True) as cluster:
        yield cluster


def ready_status(base_url: str) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"{base_url}/ready", timeout=2.0)
    return response.status_code, response.json()


def test_health_stays_up_and_ready_follows_the_database(own_pg: PgCluster, tmp_path: Path) -> None:
    running(own_pg)
    with gunicorn(db_env(own_pg), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready", status=200)

        own_pg.stop()
        # Each worker caches its own answer for PROBES__READY_CACHE_TTL; once that has passed,
        # every worker's next check sees the stopped database. (Asking until a few answers agree
        # is not enough: seen, six 503s in a row from one worker, then the other's cached 200.)
        time.sleep(READY_CACHE_TTL + 0.2)
        wait_for(f"{server.base_url}/ready", status=503, timeout=5, consecutive=6)
        status, body = ready_status(server.base_url)
        assert status == 503
        assert body["type"] == "urn:problem:not-ready"
        assert "database" in str(body["detail"])
        for _ in range(20):
            health = httpx.get(f"{server.base_url}/health", timeout=2.0)
            assert health.status_code == 200
        item = httpx.get(f"{server.base_url}{notes.PREFIX}/1", timeout=10.0)
        assert item.status_code >= 500
        # A refused connection is answered at once, not after the connect timeout.
        assert item.elapsed.total_seconds() < DatabaseSettings().connect_timeout
        assert "Traceback" not in item.text

        own_pg.start()
        wait_for(f"{server.base_url}/ready", status=200, timeout=10)
        time.sleep(READY_CACHE_TTL + 0.2)  # as above: no worker still holds an old 503
        wait_for(f"{server.base_url}/ready", status=200, timeout=10, consecutive=6)
        created = httpx.post(f"{server.base_url}{notes.PREFIX}", json={"text": "after-restart"})
        assert created.status_code == 201
        assert server.process.poll() is None


def test_service_started_while_database_is_down_boots_and_becomes_ready(
    own_pg: PgCluster, tmp_path: Path
) -> None:
    own_pg.stop()
    with gunicorn(db_env(own_pg), tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/health", status=200)
        status, body = ready_status(server.base_url)
        assert status == 503, body
        assert server.process.poll() is None  # the master did not give up

        own_pg.start()
        wait_for(f"{server.base_url}/ready", status=200, timeout=10)
        assert httpx.get(f"{server.base_url}{notes.PREFIX}").status_code == 200
