"""The job queue under the conditions that lose or repeat jobs elsewhere, with real processes:
PostgreSQL restarted while jobs are queued and running; many jobs enqueued by two web workers
and run by two worker processes; a schedule kept by two worker replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests import jobs
from tests.conftest import running, throwaway_cluster
from tests.server.test_jobs_worker import count, enqueue, eventually, wait_logged, worker
from tests.support import db_env, gunicorn, wait_for

pytestmark = pytest.mark.slow
FAULT_APP = "tests.server.fault_app:app"


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PgCluster]:
    """A cluster of this module's own: it is stopped and started."""
    with throwaway_cluster(migrated=True) as cluster:
        yield cluster


@pytest.fixture
def cluster(own_pg: PgCluster) -> PgCluster:
    running(own_pg)
    tables = ", ".join((*jobs.QUEUE_TABLES, *jobs.TABLES))
    own_pg.psql(f"TRUNCATE {tables} RESTART IDENTITY", "app")
    return own_pg


def keys_run_once(cluster: PgCluster, keys: list[str]) -> dict[str, int]:
    """The keys whose committed runs are not exactly one, with their counts."""
    rows = cluster.psql("SELECT key, count(*) FROM test_job_runs GROUP BY key", "app")
    counted = dict(line.split("|") for line in rows.split())
    return {key: int(counted.get(key, 0)) for key in keys if counted.get(key) != "1"}


def runs_by_key(cluster: PgCluster) -> dict[str, int]:
    rows = cluster.psql("SELECT key, count(*) FROM test_job_runs GROUP BY key", "app")
    return {key: int(runs) for key, runs in (line.split("|") for line in rows.split())}


def started_before(cluster: PgCluster, moment: str) -> set[str]:
    query = f"SELECT DISTINCT key FROM test_job_starts WHERE at < '{moment}'"  # noqa: S608 - a time from the server
    rows = cluster.psql(query, "app")
    return set(rows.split())


def test_a_database_restart_loses_no_job_and_the_workers_reconnect(
    cluster: PgCluster, tmp_path: Path
) -> None:
    """Every job completes. One may complete twice (at least once): a job that was running at
    the stop, whose success PostgreSQL never recorded, runs again; never one that had not
    started."""
    keys = [f"restart-{i}" for i in range(40)]
    with ExitStack() as stack:
        workers = [stack.enter_context(worker(cluster, tmp_path / f"w{n}.log")) for n in (1, 2)]
        pids = [w.process.pid for w in workers]
        enqueue(cluster, *(jobs.Record(key=key, sleep_s=0.2) for key in keys))
        eventually(lambda: count(cluster, "SELECT count(*) FROM test_job_starts") >= 5)
        stopped_at = cluster.psql("SELECT clock_timestamp()", "app").strip()
        cluster.stop("fast")
        time.sleep(3)
        cluster.start()
        try:
            eventually(lambda: set(runs_by_key(cluster)) == set(keys), timeout=60)
        except AssertionError:
            queue = cluster.psql("SELECT id, status, attempts, heartbeat FROM pgqueuer", "app")
            logs = "\n".join(w.output()[-4000:] for w in workers)
            missing = set(keys) - set(runs_by_key(cluster))
            raise AssertionError(f"never ran: {sorted(missing)}\n{queue}\n{logs}") from None
        for running in workers:
            wait_logged(running, "worker_connected", count=2)  # reconnected
            assert running.process.poll() is None
        assert [w.process.pid for w in workers] == pids
        eventually(lambda: count(cluster, "SELECT count(*) FROM pgqueuer") == 0)
    twice = {key for key, runs in runs_by_key(cluster).items() if runs > 1}
    assert twice <= started_before(cluster, stopped_at), twice
    assert max(runs_by_key(cluster).values()) <= 2


def test_jobs_enqueued_by_two_web_workers_run_once_each_on_two_worker_processes(
    cluster: PgCluster, tmp_path: Path
) -> None:
    keys = [f"load-{i}" for i in range(300)]
    with ExitStack() as stack:
        web = stack.enter_context(
            gunicorn(db_env(cluster), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP)
        )
        for n in (1, 2):
            stack.enter_context(worker(cluster, tmp_path / f"w{n}.log"))
        wait_for(f"{web.base_url}/ready")

        def post(key: str) -> int:
            return httpx.post(
                f"{web.base_url}/_test/jobs", json={"key": key}, timeout=10
            ).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert set(pool.map(post, keys)) == {201}
        eventually(lambda: keys_run_once(cluster, keys) == {}, timeout=60, what="every job ran")
        time.sleep(1)
        metrics = httpx.get(f"{web.base_url}/metrics").text
    assert keys_run_once(cluster, keys) == {}
    # Started once each too: no kill, so no second run of anything.
    assert count(cluster, "SELECT count(*) FROM test_job_starts") == len(keys)
    by_pid = cluster.psql("SELECT count(DISTINCT pid) FROM test_job_runs", "app").strip()
    assert by_pid == "2"  # both worker processes took jobs
    assert 'jobs_enqueued_total{job="test.record"} 300.0' in metrics


def test_a_schedule_runs_once_per_tick_across_two_replicas(
    cluster: PgCluster, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        for n in (1, 2):
            stack.enter_context(worker(cluster, tmp_path / f"w{n}.log", TEST_JOBS_TICK="1"))
        eventually(
            lambda: count(cluster, "SELECT count(*) FROM test_job_runs WHERE key = 'tick'") >= 4,
            timeout=30,
            what="four ticks",
        )
    rows = cluster.psql(
        "SELECT extract(epoch FROM at) FROM test_job_runs WHERE key = 'tick' ORDER BY at", "app"
    )
    times = [float(line) for line in rows.split()]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert min(gaps) > 1.0, times  # one run per 2-second tick, never one per replica
