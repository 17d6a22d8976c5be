"""The job worker as a real process against the real database: every job runs, TERM drains,
kill -9 loses nothing, failures retry and then hold, and the worker serves its probes and
metrics. Jobs are enqueued as a script would (`JobQueue` on a session of its own)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.jobs.queue import JobQueue
from devtools.pgcluster import PgCluster
from devtools.ports import free_port
from tests import jobs
from tests.docs import documented, typed
from tests.otlp import otlp_receiver
from tests.support import (
    ROOT,
    Server,
    clean_env,
    db_env,
    gunicorn,
    make_settings,
    spawn,
    stop,
    until,
    wait_for,
)

FAULT_APP = "tests.server.fault_app:app"

pytestmark = pytest.mark.slow

FAST = {
    "JOBS__HEARTBEAT_TIMEOUT_SECONDS": "2",
    "JOBS__RETRY_INITIAL_SECONDS": "0.2",
    "JOBS__RETRY_MAX_SECONDS": "0.4",
    "JOBS__GRACE_SECONDS": "5",
    "JOBS__RECONNECT_SECONDS": "0.5",
}


@contextmanager
def worker(
    cluster: PgCluster, log_path: Path, module: str = "tests.jobs_worker", **env: str
) -> Iterator[Server]:
    port = free_port()
    full_env = clean_env(
        APP_ENV="test",
        HOST="127.0.0.1",
        LOG__FORMAT="json",
        JOBS__PORT=str(port),
        # Set for the web tier in the same environment (the Kubernetes ConfigMap does): Uvicorn
        # reads it too, and must not try to fork workers of the job worker.
        WEB_CONCURRENCY="2",
    )
    full_env |= db_env(cluster) | FAST | env
    process = spawn(["-m", module], full_env, log_path)
    server = Server(process, port, log_path)
    try:
        wait_for(f"{server.base_url}/health")
        wait_logged(server, "worker_connected")
        yield server
    finally:
        stop(process, grace=15)


def wait_logged(server: Server, event: str, count: int = 1, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while sum(e.get("event") == event for e in server.events()) < count:
        assert server.process.poll() is None, server.output()[-3000:]
        assert time.monotonic() < deadline, f"no {event} in {timeout} s:\n{server.output()[-3000:]}"
        time.sleep(0.1)


def enqueue(cluster: PgCluster, *payloads: jobs.Record) -> list[int]:
    async def run() -> list[int]:
        settings = make_settings(cluster)
        url = settings.database_url_object()
        assert url is not None
        engine = build_engine(url, settings.db, hide_parameters=False)
        try:
            async with write_sessions(engine)() as session, session.begin():
                queue = JobQueue(session)
                return [await queue.enqueue(jobs.RECORD, payload) for payload in payloads]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def count(cluster: PgCluster, sql: str) -> int:
    return int(cluster.psql(sql, "app").strip())


def runs(cluster: PgCluster, key: str) -> int:
    return count(cluster, f"SELECT count(*) FROM test_job_runs WHERE key = '{key}'")  # noqa: S608 - the tests own keys


def starts(cluster: PgCluster, key: str) -> int:
    return count(cluster, f"SELECT count(*) FROM test_job_starts WHERE key = '{key}'")  # noqa: S608 - the tests own keys


def eventually(check: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    # A check is mostly a psql process: polled faster, the waiting cost the parallel test run
    # more CPU than the jobs waited for.
    until(check, what, timeout=timeout, every=0.25)


@pytest.fixture
def cluster(settings: object, migrated: PgCluster) -> PgCluster:
    return migrated  # `settings` emptied the tables


def test_every_job_runs_once_and_the_metrics_say_so(cluster: PgCluster, tmp_path: Path) -> None:
    keys = [f"once-{i}" for i in range(20)]
    with worker(cluster, tmp_path / "worker.log") as server:
        enqueue(cluster, *(jobs.Record(key=key) for key in keys))
        eventually(
            lambda: count(cluster, "SELECT count(*) FROM test_job_runs") >= 20, what="20 runs"
        )
        time.sleep(0.5)  # a duplicate run would show up now
        assert [runs(cluster, key) for key in keys] == [1] * 20
        metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'jobs_succeeded_total{job="test.record"} 20.0' in metrics
    assert 'jobs_in_queue{job="test.record",state="queued"} 0.0' in metrics
    lines = [e for e in server.events() if e.get("event") == "job_succeeded"]
    assert {line["job"] for line in lines} == {"test.record"}
    assert all(line["attempt"] == 1 and line["job_id"] > 0 for line in lines)


def test_term_lets_a_running_job_finish_and_exits_0(cluster: PgCluster, tmp_path: Path) -> None:
    with worker(cluster, tmp_path / "worker.log") as server:
        enqueue(cluster, jobs.Record(key="finishes", sleep_s=1.5))
        eventually(lambda: starts(cluster, "finishes") == 1, what="the job started")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
    assert runs(cluster, "finishes") == 1


@pytest.mark.serial  # bounds the stop in seconds: alone, after the parallel tests
def test_term_past_the_grace_puts_the_job_back_for_another_worker(
    cluster: PgCluster, tmp_path: Path
) -> None:
    with worker(cluster, tmp_path / "first.log", JOBS__GRACE_SECONDS="1") as first:
        enqueue(cluster, jobs.Record(key="released", sleep_s=30))
        eventually(lambda: starts(cluster, "released") == 1, what="the job started")
        began = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(timeout=10) == 0
        assert time.monotonic() - began < 4
    assert count(cluster, "SELECT count(*) FROM pgqueuer WHERE status = 'queued'") == 1
    # The second worker need not wait the 30 s either.
    cluster.psql(
        "UPDATE pgqueuer SET payload = convert_to('{\"key\":\"released\"}', 'UTF8')", "app"
    )
    with worker(cluster, tmp_path / "second.log"):
        eventually(lambda: runs(cluster, "released") == 1, what="the second worker ran it")


def test_a_job_whose_worker_is_killed_runs_again_after_the_heartbeat_timeout(
    cluster: PgCluster, tmp_path: Path
) -> None:
    with worker(cluster, tmp_path / "killed.log") as killed:
        enqueue(cluster, jobs.Record(key="killed", sleep_s=2))
        eventually(lambda: starts(cluster, "killed") == 1, what="the job started")
        killed.process.kill()
        killed.process.wait()
    with worker(cluster, tmp_path / "second.log"):
        began = time.monotonic()
        eventually(lambda: runs(cluster, "killed") == 1, timeout=15, what="run again")
        # Heartbeat timeout (2 s) plus the job itself (2 s), give or take a poll.
        assert time.monotonic() - began < 8
    assert starts(cluster, "killed") == 2


def test_a_failing_job_is_retried_with_backoff_then_held_as_failed(
    cluster: PgCluster, tmp_path: Path
) -> None:
    with worker(cluster, tmp_path / "worker.log", JOBS__MAX_ATTEMPTS="3") as server:
        enqueue(
            cluster, jobs.Record(key="recovers", fail_runs=2), jobs.Record(key="fails", fail_runs=9)
        )
        eventually(lambda: runs(cluster, "recovers") == 1, what="third run succeeded")
        eventually(
            lambda: count(cluster, "SELECT count(*) FROM pgqueuer WHERE status = 'failed'") == 1,
            what="held as failed",
        )
        metrics = httpx.get(f"{server.base_url}/metrics").text
    assert starts(cluster, "fails") == 3
    assert 'jobs_failed_total{job="test.record"} 1.0' in metrics
    assert 'jobs_retried_total{job="test.record"} 4.0' in metrics
    assert 'jobs_in_queue{job="test.record",state="failed"} 1.0' in metrics
    failed = [e for e in server.events() if e.get("event") == "job_failed"]
    assert [(e["attempt"], e["reason"]) for e in failed] == [(3, "RuntimeError")]


def test_failed_jobs_are_listed_and_queued_again_by_the_documented_commands(
    cluster: PgCluster, tmp_path: Path
) -> None:
    with worker(cluster, tmp_path / "worker.log", JOBS__MAX_ATTEMPTS="1"):
        [job_id] = enqueue(cluster, jobs.Record(key="again", fail_runs=1))
        eventually(
            lambda: count(cluster, "SELECT count(*) FROM pgqueuer WHERE status = 'failed'") == 1,
            what="held as failed",
        )
        # As in the container, or with the project's .venv/bin on PATH.
        path = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
        env = clean_env(APP_ENV="test", PATH=path) | db_env(cluster)
        listed = typed(documented("docs/jobs.md", "python -m app.jobs failed"), env=env)
        assert listed.returncode == 0, listed.stderr
        [line] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert (line["id"], line["job"], line["attempts"]) == (job_id, "test.record.v1", 0)
        # The cause fixed (here: the payload no longer asks to fail), someone retries it.
        cluster.psql(
            "UPDATE pgqueuer SET payload = convert_to('{\"key\":\"again\"}', 'UTF8')", "app"
        )
        shown = documented("docs/jobs.md", "python -m app.jobs retry")
        retried = typed(f"python -m app.jobs retry {job_id}", env=env, shown=shown)
        assert retried.returncode == 0, retried.stderr
        eventually(lambda: runs(cluster, "again") == 1, what="the retried job ran")


def test_the_requests_trace_and_request_id_continue_into_its_job(
    cluster: PgCluster, tmp_path: Path
) -> None:
    trace_id = f"{7:032x}"
    with otlp_receiver() as receiver:
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        web_env = db_env(cluster) | otel | {"LOG__FORMAT": "json"}
        with (
            gunicorn(web_env, tmp_path / "gunicorn.log", app=FAULT_APP) as web,
            worker(cluster, tmp_path / "worker.log", **otel) as running,
        ):
            posted = httpx.post(
                f"{web.base_url}/_test/jobs",
                json={"key": "traced"},
                headers={"traceparent": f"00-{trace_id}-{7:016x}-01"},
            )
            assert posted.status_code == 201
            eventually(lambda: runs(cluster, "traced") == 1, what="the job ran")
            spans = receiver.wait_for(
                lambda spans: any(s.name == "process test.record.v1" for s in spans)
            )
            wait_logged(running, "job_succeeded")
    [send] = [s for s in spans if s.name == "send test.record.v1"]
    [process] = [s for s in spans if s.name == "process test.record.v1"]
    assert send.trace_id == process.trace_id == trace_id
    assert process.parent_span_id == send.span_id
    statements = [s for s in spans if s.parent_span_id == process.span_id and s.is_client]
    assert statements, "the job's own statements are in its trace"
    [line] = [e for e in running.events() if e.get("event") == "job_succeeded"]
    assert line["trace_id"] == trace_id
    assert line["request_id"] == posted.headers["x-request-id"]


def test_a_run_past_its_timeout_is_stopped_and_counts_as_failed(
    cluster: PgCluster, tmp_path: Path
) -> None:
    env = {"JOBS__TIMEOUT_SECONDS": "0.5", "JOBS__MAX_ATTEMPTS": "2"}
    with worker(cluster, tmp_path / "worker.log", **env) as server:
        enqueue(cluster, jobs.Record(key="slow", sleep_s=30))
        wait_logged(server, "job_failed")
    retried = [e for e in server.events() if e.get("event") == "job_retry"]
    failed = [e for e in server.events() if e.get("event") == "job_failed"]
    assert [(e["attempt"], e["reason"]) for e in retried] == [(1, "timed out")]
    assert [(e["attempt"], e["reason"]) for e in failed] == [(2, "timed out")]
    assert runs(cluster, "slow") == 0


def test_waiting_jobs_show_in_the_queue_gauges(cluster: PgCluster, tmp_path: Path) -> None:
    with worker(
        cluster, tmp_path / "worker.log", JOBS__CONCURRENCY="2", JOBS__GRACE_SECONDS="0"
    ) as server:
        enqueue(cluster, *(jobs.Record(key=f"busy-{n}", sleep_s=30) for n in range(2)))
        eventually(lambda: count(cluster, "SELECT count(*) FROM test_job_starts") == 2)
        enqueue(cluster, jobs.Record(key="waiting"))
        time.sleep(1.5)
        metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'jobs_in_queue{job="test.record",state="picked"} 2.0' in metrics
    assert 'jobs_in_queue{job="test.record",state="queued"} 1.0' in metrics
    [age] = re.findall(r'^jobs_oldest_ready_age_seconds\{job="test.record"\} (\S+)$', metrics, re.M)
    assert 1.0 <= float(age) < 10
    assert "jobs_queue_scrape_ok 1.0" in metrics


def test_a_worker_leaves_a_payload_version_it_does_not_know_in_the_queue(
    cluster: PgCluster, tmp_path: Path
) -> None:
    """A newer deploy's job, as an older worker sees it during a rolling deploy."""
    cluster.psql(
        "INSERT INTO pgqueuer (priority, entrypoint, status, payload)"
        " VALUES (0, 'test.record.v2', 'queued', convert_to('{\"key\": \"v2\"}', 'UTF8'))",
        "app",
    )
    with worker(cluster, tmp_path / "worker.log"):
        enqueue(cluster, jobs.Record(key="v1"))
        eventually(lambda: runs(cluster, "v1") == 1, what="the known version ran")
        time.sleep(1.5)  # a poll or two later
    assert runs(cluster, "v2") == 0
    left = cluster.psql("SELECT entrypoint, status FROM pgqueuer", "app").split()
    assert left == ["test.record.v2|queued"]
