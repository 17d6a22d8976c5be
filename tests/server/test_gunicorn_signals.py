"""Gunicorn's process management, proven with real signals against a real master."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests import notes
from tests.conftest import throwaway_cluster
from tests.server.load import Load, steady_load
from tests.support import (
    Server,
    db_env,
    gunicorn,
    port_is_free,
    requests_counted,
    wait_booted,
    wait_for,
    wait_metric,
)

# Timings and dropped requests under load: alone, after the parallel tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]
FAULT_APP = "tests.server.fault_app:app"


def workers(server: Server) -> set[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True, check=False
    )
    return {int(pid) for pid in found.stdout.split()}


def wait_workers(server: Server, count: int, *, timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while len(found := workers(server)) != count:
        assert time.monotonic() < deadline, f"{len(found)} workers, expected {count}"
        time.sleep(0.05)
    return found


def wait_replaced(
    server: Server, previous: set[int], count: int, *, timeout: float = 15
) -> set[int]:
    """Wait until `count` workers run and none of them is one of `previous`."""
    deadline = time.monotonic() + timeout
    while len(found := workers(server)) != count or found & previous:
        assert time.monotonic() < deadline, f"workers {found} still include some of {previous}"
        time.sleep(0.05)
    return found


def wait_logged(server: Server, event: str, *, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while event not in server.output():
        assert time.monotonic() < deadline, f"{event} was not logged"
        time.sleep(0.02)


# Requests answered by each generation of workers before the next signal.
SERVED_BY_EACH = 40

# Both ways clients arrive: over kept-alive connections and with a new connection per request
# (a stopping worker used to drop each kind differently, app/worker.py).
MIXED = {"/health": (3, 0.0), notes.PREFIX: (1, 0.0)}


def failures(load: Load) -> str:
    failed = [hit for hit in load.hits if hit.status != 200]
    fresh = sum(hit.fresh for hit in failed)
    how = sorted({f"{hit.status} {hit.error or ''} after {hit.elapsed:.1f} s" for hit in failed})
    return f"{len(failed)} of {len(load.hits)} failed ({fresh} on new connections): {how}"


def test_hup_under_load_replaces_every_worker_and_drops_nothing(
    migrated: PgCluster, tmp_path: Path
) -> None:
    with gunicorn(db_env(migrated), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        generations = [wait_workers(server, 2)]
        with steady_load(server.base_url, MIXED, fresh_streams=MIXED) as load:
            load.wait_for_more(SERVED_BY_EACH)
            for generation in range(2, 5):
                server.process.send_signal(signal.SIGHUP)
                generations.append(wait_replaced(server, generations[-1], 2))
                wait_booted(server, 2 * generation)
                load.wait_for_more(SERVED_BY_EACH)
        # Four generations of two workers each, every one a new process.
        assert len(set().union(*generations)) == 8, generations
        assert sum(hit.fresh for hit in load.hits) > 50
        assert sum(not hit.fresh for hit in load.hits) > 50
        assert all(hit.status == 200 for hit in load.hits), failures(load)
    slowest = max(hit.elapsed for hit in load.hits)
    print(f"\nSIGHUP x3 under load: {failures(load)}, slowest {slowest:.2f} s")


def test_max_requests_recycles_workers_under_load_and_drops_nothing(
    migrated: PgCluster, tmp_path: Path
) -> None:
    env = db_env(migrated) | {"SERVER__MAX_REQUESTS": "150", "SERVER__MAX_REQUESTS_JITTER": "50"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        first = wait_workers(server, 2)
        seen = set(first)
        with steady_load(server.base_url, MIXED, fresh_streams=MIXED, max_seconds=40) as load:
            deadline = time.monotonic() + 30
            while len(seen - first) < 4:  # at least two recycles of each worker's slot
                assert time.monotonic() < deadline, f"only {len(seen - first)} recycles"
                seen |= workers(server)
                time.sleep(0.05)
            load.wait_for_more(SERVED_BY_EACH)
        assert server.process.poll() is None
        assert all(hit.status == 200 for hit in load.hits), failures(load)
        # Every request was counted once, across recycled workers (multiprocess metrics):
        # a recycled worker writes its counts on the way out, a live one within a second.
        served = len(load.of(notes.PREFIX))
        deadline = time.monotonic() + 5
        while (counted := metrics_count(server)) != served and time.monotonic() < deadline:
            time.sleep(0.2)
        assert counted == served
    print(f"\nmax_requests: {len(seen - first)} recycles under load, {failures(load)}")


def metrics_count(server: Server) -> float:
    return requests_counted(httpx.get(f"{server.base_url}/metrics").text, notes.PREFIX)


def test_term_lets_in_flight_requests_finish_then_exits_cleanly(
    migrated: PgCluster, tmp_path: Path
) -> None:
    env = db_env(migrated) | {"SERVER__GRACEFUL_TIMEOUT": "10"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        # Both workers started: on a loaded machine one can still be booting when the first
        # answers, and a worker TERMed before its startup never runs its lifespan shutdown.
        wait_booted(server, 2)
        with ThreadPoolExecutor(4) as pool:
            pending = [
                pool.submit(httpx.get, f"{server.base_url}/_test/sleep?seconds=4", timeout=10)
                for _ in range(4)
            ]
            # All four are in the workers (each worker writes the gauge once a second; the
            # /metrics request that reads it is the fifth): seen within 3 s, a loaded machine's
            # margin, while they still have a second to run ...
            wait_metric(server.base_url, r"^http_requests_in_flight 5\.0$", timeout=3.0)
            server.process.send_signal(signal.SIGTERM)
            # ... when the listener closes, well before they finish.
            deadline = time.monotonic() + 1.0
            while not port_is_free(server.port):
                assert time.monotonic() < deadline, "still accepting a second after TERM"
                time.sleep(0.02)
            statuses = [future.result().status_code for future in pending]
        assert statuses == [200] * 4
        assert server.process.wait(timeout=15) == 0
        assert server.output().count("database_disposed") == 2  # each worker's lifespan shutdown


def test_a_killed_worker_is_replaced_and_the_service_continues(
    migrated: PgCluster, tmp_path: Path
) -> None:
    with gunicorn(db_env(migrated), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        before = wait_workers(server, 2)
        clients = 4
        with steady_load(server.base_url, {notes.PREFIX: (clients, 0.0)}) as load:
            load.wait_for_more(SERVED_BY_EACH)
            victim = min(before)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            # The master respawns on SIGCHLD, at the latest after its 1 s sleep; the rest is
            # margin for a loaded machine (seen: 0.1-0.3 s).
            deadline = killed_at + 1 + 4
            while not ((now := workers(server)) - before and len(now) == 2):
                assert time.monotonic() < deadline, "no replacement within 5 s"
                time.sleep(0.02)
            replaced_after = time.monotonic() - killed_at
            wait_booted(server, 3)
            settled_from = time.monotonic()
            load.wait_for_more(SERVED_BY_EACH)
        failed = [hit for hit in load.hits if hit.status != 200]
        assert len(failed) <= clients  # at most what the killed worker had in flight
        settled = [hit for hit in load.hits if hit.started > settled_from]
        assert settled
        assert all(hit.status == 200 for hit in settled)
    print(f"\nSIGKILL: replaced in {replaced_after:.2f} s, {len(failed)} failed")


def test_ttin_and_ttou_change_the_worker_count(migrated: PgCluster, tmp_path: Path) -> None:
    with gunicorn(db_env(migrated), tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/health")
        wait_workers(server, 2)
        server.process.send_signal(signal.SIGTTIN)
        wait_workers(server, 3)
        server.process.send_signal(signal.SIGTTOU)
        wait_workers(server, 2)
        assert httpx.get(f"{server.base_url}/health").status_code == 200


def test_a_blocked_event_loop_gets_its_worker_replaced_while_others_serve(
    migrated: PgCluster, tmp_path: Path
) -> None:
    env = db_env(migrated) | {"SERVER__TIMEOUT": "3"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        before = wait_workers(server, 2)
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(
                httpx.get, f"{server.base_url}/_test/block?seconds=30", timeout=20
            )
            wait_logged(server, "event_loop_blocked")
            started = time.monotonic()
            with steady_load(server.base_url, {"/health": (2, 0.05)}, max_seconds=20) as load:
                # Killed between timeout/2 and timeout after the block (3 s), plus margin.
                while not workers(server) - before:
                    assert time.monotonic() - started < 3 + 3, "blocked worker not replaced"
                    time.sleep(0.05)
                replaced_after = time.monotonic() - started
                load.wait_for_more(10)
            with pytest.raises(httpx.HTTPError):
                blocked.result()  # its worker was killed under it
        health = [hit.status for hit in load.hits]
        assert health
        assert health.count(200) == len(health)
    print(f"\nblocked loop: worker replaced {replaced_after:.2f} s after the block")


def test_reboots_during_a_database_outage_keep_the_service_up(tmp_path: Path) -> None:
    """Worker reboots (SIGHUP, then `max_requests` recycles) while the database is down must not
    stop the master (a failing lifespan startup would): /health stays 200 and /ready comes back
    with the database."""
    with throwaway_cluster(migrated=True) as cluster:
        env = db_env(cluster) | {"SERVER__MAX_REQUESTS": "40", "SERVER__MAX_REQUESTS_JITTER": "0"}
        with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
            wait_for(f"{server.base_url}/ready")
            generation = wait_workers(server, 2)
            boots = 2
            wait_booted(server, boots)
            cluster.stop()
            server.process.send_signal(signal.SIGHUP)
            generation = wait_replaced(server, generation, 2)
            boots += 2
            wait_booted(server, boots)  # a failed lifespan startup would stop the master
            assert server.process.poll() is None
            # Until both workers have recycled (max_requests 40): one client's requests are not
            # spread evenly over the workers (whichever accepts its connection serves it), so
            # no fixed count is sure to bring both to 40. With jitter 0 requests may wait for a
            # new worker's boot: slow on a busy machine (seen: > 5 s), not what is tested here.
            statuses: set[int] = set()
            deadline = time.monotonic() + 30
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                while (found := workers(server)) & generation or len(found) != 2:
                    assert time.monotonic() < deadline, f"workers {found} after {generation}"
                    statuses |= {client.get("/health").status_code for _ in range(20)}
            assert statuses == {200}
            wait_booted(server, boots + 2)
            assert server.process.poll() is None
            assert httpx.get(f"{server.base_url}/health").status_code == 200
            assert httpx.get(f"{server.base_url}/ready").status_code == 503
            cluster.start()
            wait_for(f"{server.base_url}/ready", timeout=10)
