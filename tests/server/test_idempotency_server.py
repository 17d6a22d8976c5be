"""`Idempotency-Key` under the conditions that make it matter, on real Gunicorn (two workers)
and PostgreSQL: duplicates in parallel, a key whose request is still running, a worker killed
mid-request, a COMMIT that fails, a replay after the resource changed."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests.conftest import empty_tables, running
from tests.server.test_database_faults import FAULT_APP
from tests.server.test_gunicorn_signals import wait_workers
from tests.support import Server, db_env, gunicorn, needs_example, until, wait_for

pytestmark = pytest.mark.slow

KEYED = "/_test/notes/keyed"
# The test's lock on the notes table: a request that inserts a note waits for it, holding its
# key all along.
NOTES_LOCKED = "LOCK TABLE test_notes IN EXCLUSIVE MODE"


@pytest.fixture(scope="module")
def server(migrated: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("idempotency") / "gunicorn.log"
    with gunicorn(db_env(running(migrated)), log, workers=2, app=FAULT_APP) as started:
        wait_for(f"{started.base_url}/ready")
        yield started


@pytest.fixture
def db(migrated: PgCluster) -> PgCluster:
    empty_tables(running(migrated))
    return migrated


def notes(cluster: PgCluster) -> list[str]:
    return cluster.psql("SELECT text FROM test_notes ORDER BY id", "app").split()


def post(server: Server, text: str, key: str, timeout: float = 20) -> httpx.Response:
    headers = {"Idempotency-Key": key}
    return httpx.post(
        f"{server.base_url}{KEYED}", json={"text": text}, headers=headers, timeout=timeout
    )


def key_held(cluster: PgCluster) -> bool:
    """A request holds an idempotency key (the advisory lock of its claim)."""
    found = cluster.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", "app")
    return int(found) > 0


def test_identical_requests_in_parallel_write_once(server: Server, db: PgCluster) -> None:
    rounds, copies = 10, 8
    answers: list[list[httpx.Response]] = []
    with ThreadPoolExecutor(copies) as pool:
        for n in range(rounds):
            start = threading.Barrier(copies)

            def send(n: int = n, start: threading.Barrier = start) -> httpx.Response:
                start.wait()
                return post(server, f"round-{n}", f"parallel-{n}")

            answers.append(list(pool.map(lambda _: send(), range(copies))))
    assert notes(db) == [f"round-{n}" for n in range(rounds)]  # each once
    for round_answers in answers:
        statuses = sorted(answer.status_code for answer in round_answers)
        assert set(statuses) <= {201, 409}, statuses
        created = [answer for answer in round_answers if answer.status_code == 201]
        assert len({answer.content for answer in created}) == 1  # the first, or its replay
        assert sum("idempotent-replayed" not in answer.headers for answer in created) == 1
        for busy in (answer for answer in round_answers if answer.status_code == 409):
            assert busy.json()["type"] == "urn:problem:idempotency-key-in-use"


def test_a_retry_while_the_first_runs_is_409_then_gets_its_answer(
    server: Server, db: PgCluster
) -> None:
    with ThreadPoolExecutor(1) as pool:
        with db.holding(NOTES_LOCKED, "app"):
            first: Future[httpx.Response] = pool.submit(post, server, "slow", "in-flight")
            until(lambda: key_held(db), "the first request claims its key")
            busy = post(server, "slow", "in-flight")
            assert busy.status_code == 409
            assert busy.headers["retry-after"] == "1"
            assert busy.json()["type"] == "urn:problem:idempotency-key-in-use"
        assert first.result().status_code == 201
    replayed = post(server, "slow", "in-flight")
    assert (replayed.status_code, replayed.content) == (201, first.result().content)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert notes(db) == ["slow"]


def test_a_worker_killed_mid_request_leaves_the_key_free_and_the_retry_writes_once(
    server: Server, db: PgCluster
) -> None:
    with ThreadPoolExecutor(1) as pool:
        with db.holding(NOTES_LOCKED, "app"):
            lost = pool.submit(post, server, "killed", "kill-1")
            until(lambda: key_held(db), "the request claims its key")
            for worker in wait_workers(server, 2):  # the one serving it among them
                os.kill(worker, signal.SIGKILL)
            with pytest.raises(httpx.TransportError):
                lost.result()
        # The killed worker's backend ends its transaction when it finds the client gone.
        until(lambda: not key_held(db), "the key is free again")
    wait_for(f"{server.base_url}/ready")
    retried = post(server, "killed", "kill-1")
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert notes(db) == ["killed"]


@pytest.fixture
def failing_commit(db: PgCluster) -> Iterator[Callable[[], None]]:
    """Every COMMIT that wrote a note fails (a deferred constraint trigger), until the test
    calls what this yields."""
    db.psql(
        """
        CREATE TABLE test_commit_fails (reason text);
        INSERT INTO test_commit_fails VALUES ('disk full');
        CREATE FUNCTION test_commit_fails() RETURNS trigger LANGUAGE plpgsql
          SECURITY DEFINER AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM test_commit_fails) THEN RAISE EXCEPTION 'refused at commit';
          END IF;
          RETURN NEW;
        END $$;
        CREATE CONSTRAINT TRIGGER test_commit_fails AFTER INSERT ON test_notes
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_commit_fails();
        """,
        "app",
    )

    def heal() -> None:
        db.psql("DELETE FROM test_commit_fails", "app")

    try:
        yield heal
    finally:
        db.psql(
            "DROP TRIGGER test_commit_fails ON test_notes; DROP FUNCTION test_commit_fails();"
            " DROP TABLE test_commit_fails",
            "app",
        )


def test_a_failed_commit_reaches_the_client_and_the_retry_writes_once(
    server: Server, db: PgCluster, failing_commit: Callable[[], None]
) -> None:
    failed = post(server, "ledger", "commit-1")
    assert failed.status_code == 500
    assert "refused at commit" not in failed.text
    assert failed.json()["error_id"] in server.output()  # with the cause, in the log
    assert "refused at commit" in server.output()
    assert notes(db) == []
    assert db.psql("SELECT count(*) FROM idempotency_keys", "app").strip() == "0"
    failing_commit()  # the database is well again
    retried = post(server, "ledger", "commit-1")
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    again = post(server, "ledger", "commit-1")
    assert (again.content, again.headers["idempotent-replayed"]) == (retried.content, "true")
    assert notes(db) == ["ledger"]


@needs_example
def test_a_replay_after_the_item_changed_is_the_stored_answer(
    server: Server, db: PgCluster
) -> None:
    items, key = f"{server.base_url}/api/v1/items", {"Idempotency-Key": '"item-7"'}
    created = httpx.post(items, json={"name": "kettle"}, headers=key)
    assert created.status_code == 201
    location = f"{server.base_url}{created.headers['location']}"
    assert httpx.patch(location, json={"name": "teapot"}).status_code == 200
    replayed = httpx.post(items, json={"name": "kettle"}, headers=key)
    assert (replayed.status_code, replayed.json()["name"]) == (201, "kettle")
    assert replayed.content == created.content
    assert httpx.get(location).json()["name"] == "teapot"
