"""PgBouncer mode (DB__PGBOUNCER) against a real PgBouncer (Debian 12's 1.18) in transaction
mode, in front of a real PostgreSQL, with the service under real Gunicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.pgbouncer import PgBouncer, pgbouncer
from devtools.pgcluster import PgCluster
from tests import notes, parts
from tests.conftest import running, throwaway_cluster
from tests.server.load import steady_load
from tests.support import gunicorn, wait_for

pytestmark = pytest.mark.slow
# The service plus test-only routes: these tests must not depend on the example domain.
FAULT_APP = "tests.server.fault_app:app"
NOTES = notes.PREFIX
# What these tests assert is correctness through PgBouncer, not speed: when this suite runs
# alongside another (the generated service's, tests/template), httpx's 5 s default is too short.
CLIENT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    # Migrated on PostgreSQL directly, as a release step would.
    with throwaway_cluster(migrated=True) as found:
        # Startup parameters do not pass PgBouncer 1.18: the server-side limit is set per role.
        found.psql("ALTER ROLE app SET statement_timeout = '4s'")
        yield found


@pytest.fixture
def bouncer(cluster: PgCluster) -> Iterator[PgBouncer]:
    parts.command("pgbouncer")
    with pgbouncer(running(cluster)) as bouncing:
        yield bouncing


def bouncer_env(bouncer: PgBouncer) -> dict[str, str]:
    return {
        "DATABASE_URL": bouncer.url(),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(bouncer.cluster.ca_file),
        "DB__PGBOUNCER": "true",
        "DB__POOL_SIZE": "8",
    }


def test_writes_and_concurrent_reads_through_pgbouncer(bouncer: PgBouncer, tmp_path: Path) -> None:
    env = bouncer_env(bouncer)
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as client:
            created = client.post(NOTES, json={"text": "via-bouncer"})
            assert created.status_code == 201, created.text
            note = created.json()
            path = f"{NOTES}/{note['id']}"
            assert client.get(path).json()["text"] == "via-bouncer"
            assert client.post(NOTES, json={"text": "via-bouncer"}).status_code == 409
            assert note in client.get(NOTES).json()

            # Many transactions at once over 4 server connections: every statement is prepared
            # under a fresh name, so none collides with or misses one on another connection.
            def reads(_: int) -> list[int]:
                with httpx.Client(base_url=server.base_url, timeout=CLIENT_TIMEOUT) as own:
                    return [own.get(path).status_code for _ in range(20)]

            with ThreadPoolExecutor(8) as pool:
                statuses = [status for batch in pool.map(reads, range(8)) for status in batch]
            assert statuses == [200] * 160
            assert client.get(f"{NOTES}/{note['id'] + 1000}").status_code == 404
        assert "pool_budget_unchecked" in server.output()
    assert "prepared statement" not in server.output()


@pytest.mark.serial  # counts failures under load: alone, after the parallel tests
def test_restart_behind_pgbouncer_fails_nothing_after_it(
    bouncer: PgBouncer, tmp_path: Path
) -> None:
    """The fault tests' restart case, with PgBouncer between the service and PostgreSQL."""
    env = bouncer_env(bouncer)
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        created = httpx.post(
            f"{server.base_url}{NOTES}", json={"text": "restart-bouncer"}, timeout=CLIENT_TIMEOUT
        )
        path = f"{NOTES}/{created.json()['id']}"
        with steady_load(server.base_url, {path: (4, 0.0)}, max_seconds=10) as warm:
            time.sleep(0.5)
        assert all(hit.status == 200 for hit in warm.hits)
        with steady_load(server.base_url, {path: (1, 0.1)}) as load:
            time.sleep(1.0)
            restart_began = time.monotonic()
            bouncer.cluster.stop("fast")
            bouncer.cluster.start()
            restarted = time.monotonic()
            time.sleep(3.0)
    during = load.of(path, since=restart_began, until=restarted)
    after = load.of(path, since=restarted)
    assert len(after) > 10
    assert [h.status for h in after if h.status != 200] == []
    assert all(h.status in (503, 504) for h in during if h.status != 200)
    print(
        f"\nrestart behind PgBouncer: {sum(h.status != 200 for h in during)} of {len(during)} "
        f"failed during, 0 of {len(after)} after"
    )
