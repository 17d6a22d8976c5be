"""Database faults under load: the service stays alive, answers fast and honestly, and heals.

Each test owns a PostgreSQL cluster and a real Gunicorn (one worker, so one breaker), drives a
steady stream of concurrent requests over loopback, injects the fault, and asserts on every
response it got.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.settings import ProbeSettings
from devtools.pgcluster import PgCluster
from tests import notes
from tests.conftest import running, throwaway_cluster
from tests.server.load import p99, steady_load
from tests.server.tcp_proxy import TcpProxy
from tests.support import (
    Server,
    db_env,
    gunicorn,
    wait_for,
    wait_metric,
)

# Timings and dropped requests under load: alone, after the parallel tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

ITEM = f"{notes.PREFIX}/1"
PROBES = ProbeSettings()  # the defaults, which these servers run with
OPEN_WAIT = 2.0
REQUEST_LIMIT = 3.0
FAULT_ENV = {
    "DB__APPLICATION_NAME": "fault-test",  # to find the service's backends on the server
    "BREAKER__OPEN_WAIT": str(OPEN_WAIT),
    "BREAKER__MINIMUM_CALLS": "5",
    "BREAKER__WINDOW_SIZE": "10",
    "HTTP__REQUEST_TIMEOUT": str(REQUEST_LIMIT),
    "DB__COMMAND_TIMEOUT": "1.0",
    "DB__STATEMENT_TIMEOUT_MS": "800",
    "DB__CONNECT_TIMEOUT": "1.0",
    "DB__POOL_TIMEOUT": "1.0",
    "DB__POOL_SIZE": "4",
    "SERVER__GRACEFUL_TIMEOUT": "5",
}


@pytest.fixture(scope="module")
def fault_pg() -> Iterator[PgCluster]:
    with throwaway_cluster(migrated=True) as cluster:
        cluster.psql("INSERT INTO test_notes (text) VALUES ('fault-test')", database="app")
        yield cluster


@pytest.fixture
def pg(fault_pg: PgCluster) -> PgCluster:
    return running(fault_pg)


@pytest.fixture
def server(pg: PgCluster, tmp_path: Path) -> Iterator[Server]:
    with gunicorn(
        db_env(pg) | FAULT_ENV, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP
    ) as running:
        wait_for(f"{running.base_url}/ready")
        for _ in range(10):  # a warm pool
            assert httpx.get(f"{running.base_url}{ITEM}").status_code == 200
        yield running


def worker_pid(server: Server) -> int:
    pid: int = httpx.get(f"{server.base_url}/_test/pid").json()["pid"]
    return pid


def test_database_stop_and_start_under_load(pg: PgCluster, server: Server) -> None:
    streams = {ITEM: (6, 0.0), "/health": (1, 0.05), "/ready": (1, 0.05)}
    worker_before = worker_pid(server)
    with steady_load(server.base_url, streams) as load:
        time.sleep(1.0)
        stopped_at = time.monotonic()
        pg.stop()
        time.sleep(OPEN_WAIT * 2)
        started_at = time.monotonic()
        pg.start()
        time.sleep(OPEN_WAIT + 3)

    health = load.of("/health")
    assert health
    assert all(hit.status == 200 for hit in health)

    ready_503 = [h for h in load.of("/ready", since=stopped_at) if h.status == 503]
    assert ready_503, "readiness never reported the outage"
    time_to_not_ready = ready_503[0].started + ready_503[0].elapsed - stopped_at
    # At worst a cached "ready" expires, then a ping fails or times out; margin for a loaded CI.
    assert time_to_not_ready < PROBES.ready_cache_ttl + PROBES.ready_timeout + 1.0

    items = load.of(ITEM)
    assert all(hit.status in (200, 503, 504) for hit in items), {h.status for h in items}
    assert max(hit.elapsed for hit in items) < REQUEST_LIMIT + 0.5

    during = load.of(ITEM, since=stopped_at, until=started_at)
    open_answers = [h for h in during if h.problem_type == "urn:problem:database-unavailable"]
    assert open_answers
    first_open = min(h.started for h in open_answers)
    while_open = load.of(ITEM, since=first_open + 0.1, until=started_at)
    assert while_open
    assert all(hit.status == 503 for hit in while_open)
    # Answered without waiting: a request that queued for the pool or tried to connect would
    # take its timeout (1 s each); that no connection is tried is proven with a proxy below.
    assert p99([hit.elapsed for hit in while_open]) < float(FAULT_ENV["DB__POOL_TIMEOUT"])

    recovered = [h for h in load.of(ITEM, since=started_at) if h.status == 200]
    assert recovered, "never recovered"
    time_to_recover = recovered[0].started + recovered[0].elapsed - started_at
    assert time_to_recover < OPEN_WAIT + 2
    assert worker_pid(server) == worker_before  # no worker was restarted
    assert server.process.poll() is None

    print(
        f"\nstop/start: not ready after {time_to_not_ready:.3f} s; "
        f"p99 while open {p99([h.elapsed for h in while_open]) * 1000:.1f} ms "
        f"({len(while_open)} requests); recovered {time_to_recover:.2f} s after start"
    )


def test_restart_with_a_warm_pool_fails_nothing_after_it(pg: PgCluster, tmp_path: Path) -> None:
    """Light load and the default breaker: the few requests that hit the restart window do not
    trip it, and pool_pre_ping replaces every stale pooled connection afterwards."""
    env = db_env(pg) | {"DB__POOL_SIZE": "4"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        with steady_load(server.base_url, {ITEM: (4, 0.0)}, max_seconds=10) as warm:
            time.sleep(0.5)  # every pooled connection has been used
        assert all(hit.status == 200 for hit in warm.hits)
        with steady_load(server.base_url, {ITEM: (1, 0.1)}) as load:
            time.sleep(1.0)
            restart_began = time.monotonic()
            pg.stop("fast")
            pg.start()
            restarted = time.monotonic()
            time.sleep(3.0)
    during = load.of(ITEM, since=restart_began, until=restarted)
    failed_during = [h for h in during if h.status != 200]
    after = load.of(ITEM, since=restarted)
    assert len(after) > 10
    assert [h.status for h in after if h.status != 200] == []
    assert all(h.status in (503, 504) for h in failed_during)
    print(
        f"\nrestart: {len(failed_during)} of {len(during)} failed during "
        f"({restarted - restart_began:.2f} s), 0 of {len(after)} after"
    )


def test_killed_backends_fail_at_most_the_in_flight_requests(pg: PgCluster, server: Server) -> None:
    clients = 4
    with steady_load(server.base_url, {ITEM: (clients, 0.0)}) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        killed = pg.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'fault-test' AND pid <> pg_backend_pid()",
            database="app",
        )
        time.sleep(2.0)
    assert int(killed.strip()) >= 1
    failed = [h for h in load.of(ITEM, since=killed_at - 0.5) if h.status != 200]
    assert len(failed) <= clients
    settled = load.of(ITEM, since=killed_at + 0.5)
    assert settled
    assert all(hit.status == 200 for hit in settled)
    print(f"\nkill backends: {killed.strip()} killed, {len(failed)} requests failed")


FAULT_APP = "tests.server.fault_app:app"


def test_query_over_the_command_timeout_is_504_and_gone_from_the_server(
    pg: PgCluster, tmp_path: Path
) -> None:
    env = db_env(pg) | FAULT_ENV | {"DB__POOL_SIZE": "1", "HTTP__SLOW_REQUEST_MS": "500"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        before = httpx.get(f"{server.base_url}/_test/backend-pid").json()["pid"]
        started = time.monotonic()
        slow = httpx.get(f"{server.base_url}/_test/db-sleep", params={"seconds": 5})
        took = time.monotonic() - started
        assert slow.status_code == 504
        assert slow.json()["type"] == "urn:problem:database-timeout"
        # statement_timeout (0.8 s) ended it, well before the request limit; margin 0.7 s.
        assert took < float(FAULT_ENV["DB__STATEMENT_TIMEOUT_MS"]) / 1000 + 0.7
        running = pg.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
            "AND state = 'active' AND pid <> pg_backend_pid()",
            database="app",
        )
        assert running.strip() == "0"
        after = httpx.get(f"{server.base_url}/_test/backend-pid").json()["pid"]
        assert after == before  # the same pooled connection, still usable
        deadline = time.monotonic() + 5
        while '"slow_request"' not in server.output() and "slow_request" not in server.output():
            assert time.monotonic() < deadline, "no slow_request line"
            time.sleep(0.05)
        assert "/_test/db-sleep" in server.output()
    print(f"\nslow query: 504 after {took:.2f} s, backend {before} reused")


def test_pool_exhaustion_answers_the_excess_503_within_the_pool_timeout(
    pg: PgCluster, tmp_path: Path
) -> None:
    env = db_env(pg) | {
        "DB__POOL_SIZE": "2",
        "DB__POOL_TIMEOUT": "0.5",
        "DB__COMMAND_TIMEOUT": "3",
        "DB__STATEMENT_TIMEOUT_MS": "2500",
        "HTTP__REQUEST_TIMEOUT": "5",
    }
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        streams = {"/_test/db-sleep?seconds=1.5": (6, 0.0), "/health": (1, 0.05)}
        with steady_load(server.base_url, streams, max_seconds=10) as load:
            time.sleep(1.2)
        sleeps = load.of("/_test/db-sleep?seconds=1.5")
        busy = [h for h in sleeps if h.status == 503]
        ok = [h for h in sleeps if h.status == 200]
        assert len(ok) + len(busy) == len(sleeps)  # nothing but served or refused
        assert len(ok) >= 2
        assert len(busy) >= 3  # 6 clients, 2 connections
        assert all(h.problem_type == "urn:problem:database-busy" for h in busy)
        # Refused within the pool timeout (plus scheduling slack on a loaded machine).
        assert max(h.elapsed for h in busy) < 0.5 + 0.5
        # Never more than the pool's 2 queries of 1.5 s at once: a capacity bound on the 200s.
        span = max(h.started + h.elapsed for h in ok) - min(h.started for h in ok)
        assert len(ok) <= 2 * (span / 1.5 + 1)
        health = load.of("/health")
        assert health
        assert all(h.status == 200 for h in health)
    print(
        f"\npool exhaustion: {len(ok)} served, {len(busy)} got 503 after at most "
        f"{max(h.elapsed for h in busy):.2f} s; /health {len(health)} x 200"
    )


def through(proxy: TcpProxy, pg: PgCluster) -> dict[str, str]:
    """The service's database settings, pointed at the proxy in front of `pg`."""
    env = db_env(pg)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace(f":{pg.port}/", f":{proxy.port}/")
    return env


def test_network_partition_ends_every_request_in_time_and_heals(
    pg: PgCluster, tmp_path: Path
) -> None:
    proxy = TcpProxy(pg.port)
    env = through(proxy, pg) | FAULT_ENV
    with (
        proxy.running(),
        gunicorn(env, tmp_path / "gunicorn.log", workers=1, app=FAULT_APP) as server,
    ):
        wait_for(f"{server.base_url}/ready")
        streams = {ITEM: (4, 0.0), "/health": (1, 0.05)}
        with steady_load(server.base_url, streams) as load:
            time.sleep(1.0)
            held_at = time.monotonic()
            proxy.hold()
            time.sleep(4.0)
            healed_at = time.monotonic()
            proxy.heal()
            time.sleep(OPEN_WAIT + 3)
        items = load.of(ITEM)
        assert max(h.elapsed for h in items) < REQUEST_LIMIT + 0.5
        # Answered while the network was down: none can have read a row. (A request still in
        # flight when it heals may finish with 200: seen, started 1 ms before the heal.)
        during = [
            h
            for h in load.of(ITEM, since=held_at + 0.05, until=healed_at)
            if h.started + h.elapsed < healed_at
        ]
        assert during
        assert {h.status for h in during} <= {503, 504}
        assert all(h.status in (200, 503, 504) for h in items)
        assert all(h.status == 200 for h in load.of("/health"))
        recovered = [h for h in load.of(ITEM, since=healed_at) if h.status == 200]
        assert recovered, "never recovered"
        time_to_recover = recovered[0].started + recovered[0].elapsed - healed_at
        assert time_to_recover < OPEN_WAIT + 2
        pool = wait_for(f"{server.base_url}/ready").json()["pool"]
        assert pool["checked_out"] == 0
    print(
        f"\npartition: {len(during)} requests during, slowest {max(h.elapsed for h in items):.2f}"
        f" s; recovered {time_to_recover:.2f} s after healing; pool checked out {pool}"
    )


def circuit_changes(server: Server) -> list[tuple[str, str]]:
    """(previous, new) state of each `circuit_state_changed` event the service logged so far."""
    return [
        (event["previous"], event["state"])
        for event in server.events()
        if event.get("event") == "circuit_state_changed"
    ]


def request_until(
    client: httpx.Client, condition: Callable[[httpx.Response], bool], *, timeout: float
) -> None:
    """GET the item until `condition` holds for the service (given the last answer)."""
    deadline = time.monotonic() + timeout
    while not condition(client.get(ITEM)):
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


def test_an_open_circuit_answers_at_once_without_touching_the_database(
    pg: PgCluster, tmp_path: Path
) -> None:
    """Once the circuit is open, requests and probes get 503 with Retry-After and not one
    connection attempt reaches the database; the metric and the log say so; it closes again."""
    open_wait = 4.0  # long enough to make the requests below while it is open
    proxy = TcpProxy(pg.port)
    env = through(proxy, pg) | FAULT_ENV | {"BREAKER__OPEN_WAIT": str(open_wait)}
    with (
        proxy.running(),
        gunicorn(env | {"LOG__FORMAT": "json"}, tmp_path / "g.log", app=FAULT_APP) as server,
        httpx.Client(base_url=server.base_url, timeout=REQUEST_LIMIT + 2) as client,
    ):
        wait_for(f"{server.base_url}/ready")
        assert client.get(ITEM).status_code == 200
        proxy.cut()
        # Failures (refused connections, 503 too) until the breaker has seen enough of them.
        request_until(client, lambda _: ("closed", "open") in circuit_changes(server), timeout=10)
        attempts = proxy.connections
        answers = [client.get(path) for path in [ITEM] * 20 + ["/ready"] * 3]
        assert proxy.connections == attempts, "an open circuit tried the database"
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert 1 <= int(answer.headers["retry-after"]) <= open_wait
        assert {a.json()["type"] for a in answers[:20]} == {"urn:problem:database-unavailable"}
        assert {a.json()["detail"] for a in answers[:20]} == {
            "The database is failing; not trying it for now."
        }
        wait_metric(server.base_url, r"^db_circuit_breaker_state 2\.0$")

        proxy.heal()
        # The first call after the open wait is a trial; enough good ones close the circuit.
        request_until(client, lambda answer: answer.status_code == 200, timeout=open_wait + 5)
        request_until(
            client, lambda _: ("half_open", "closed") in circuit_changes(server), timeout=5
        )
        assert circuit_changes(server) == [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed"),
        ]
        wait_metric(server.base_url, r"^db_circuit_breaker_state 0\.0$")


def test_ready_pings_once_for_all_concurrent_probes_and_within_its_bound(
    pg: PgCluster, tmp_path: Path
) -> None:
    """Eight probes at once while the network holds every byte: one ping (single flight), and
    every probe answers 503 within the ping bound, not after the driver's command timeout."""
    ping_bound = 0.3
    margin = 1.0  # scheduling on a loaded 2-core machine; the command timeout is 5 s away
    proxy = TcpProxy(pg.port)
    env = through(proxy, pg) | {
        "PROBES__READY_TIMEOUT": str(ping_bound),
        "PROBES__READY_CACHE_TTL": "0.5",
        "DB__COMMAND_TIMEOUT": "5",
        "DB__POOL_SIZE": "8",
    }
    with (
        proxy.running(),
        gunicorn(env, tmp_path / "gunicorn.log", app=FAULT_APP) as server,
        ThreadPoolExecutor(8) as pool,
    ):
        wait_for(f"{server.base_url}/ready")
        # Eight idle pooled connections, so that eight pings would not need a new one each.
        list(
            pool.map(lambda _: httpx.get(f"{server.base_url}/_test/db-sleep?seconds=0.2"), range(8))
        )
        proxy.hold()
        time.sleep(0.5 + 0.1)  # the cached "ready" expires (PROBES__READY_CACHE_TTL)
        start = threading.Barrier(8)

        def probe() -> tuple[int, float, str]:
            start.wait()
            began = time.monotonic()
            answer = httpx.get(f"{server.base_url}/ready", timeout=10)
            return answer.status_code, time.monotonic() - began, answer.json()["detail"]

        probes = list(pool.map(lambda _: probe(), range(8)))
        # A cancelled query also opens a connection to send the cancel request: not counted.
        stalled = proxy.stalled["send"]
        proxy.heal()
    assert [status for status, _, _ in probes] == [503] * 8
    assert {detail for _, _, detail in probes} == {"database check timed out"}
    assert max(took for _, took, _ in probes) < ping_bound + margin
    assert stalled == 1, f"{stalled} pings reached the database for 8 concurrent probes"
