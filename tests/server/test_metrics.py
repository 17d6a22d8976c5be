"""/metrics: Prometheus text, summed across workers, surviving worker replacement."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests import notes
from tests.server.test_gunicorn_signals import wait_workers
from tests.support import db_env, gunicorn, requests_counted, wait_for, wait_metric

# The service plus test-only routes: these tests must not depend on the example domain.
FAULT_APP = "tests.server.fault_app:app"

pytestmark = pytest.mark.slow


def test_counts_are_summed_across_workers_and_survive_a_reload(
    migrated: PgCluster, tmp_path: Path
) -> None:
    with gunicorn(db_env(migrated), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        before = wait_workers(server, 2)
        n = 60
        for _ in range(n):  # a new connection each: the kernel spreads them over both workers
            response = httpx.get(f"{server.base_url}{notes.PREFIX}")
            assert response.status_code == 200
        counted = rf'^http_requests_total{{method="GET",route="{notes.PREFIX}",status="200"}} '
        text = wait_metric(server.base_url, rf"{counted}{n}\.0$")
        assert requests_counted(text, notes.PREFIX) == n
        assert re.search(
            rf'^http_request_duration_seconds_count\{{method="GET",route="{notes.PREFIX}"\}} 60\.0',
            text,
            re.M,
        )
        assert re.search(r"^db_pool_connections\{kind=\"size\"\} [1-9]", text, re.M)
        assert re.search(r"^db_circuit_breaker_state 0\.0$", text, re.M)

        server.process.send_signal(signal.SIGHUP)  # every worker replaced
        deadline = time.monotonic() + 15
        while wait_workers(server, 2) & before:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        wait_for(f"{server.base_url}/ready")
        text = httpx.get(f"{server.base_url}/metrics").text
        assert requests_counted(text, notes.PREFIX) == n  # did not drop with the old workers
        assert re.search(r"^gunicorn_worker_exits_total [2-9]", text, re.M)


@pytest.mark.parametrize(("networks", "status"), [("10.0.0.0/8", 404), ("127.0.0.0/8", 200)])
def test_metrics_can_be_limited_to_a_network(
    migrated: PgCluster, tmp_path: Path, networks: str, status: int
) -> None:
    """Refused outside the networks (404: nothing to see), served inside them."""
    env = db_env(migrated) | {"HTTP__METRICS_ALLOWED_NETWORKS": networks}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        assert httpx.get(f"{server.base_url}/metrics").status_code == status
