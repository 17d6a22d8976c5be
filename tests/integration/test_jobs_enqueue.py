"""A job is enqueued in the request's own transaction: it exists if and only if the request's
writes commit. Against the real database, through the whole app in-process."""

from __future__ import annotations

import json

import httpx
import pytest

from devtools.pgcluster import PgCluster
from tests.support import HAS_EXAMPLE


def queued(cluster: PgCluster) -> list[dict[str, object]]:
    rows = cluster.psql(
        "SELECT coalesce(json_agg(json_build_object('entrypoint', entrypoint, 'status', status,"
        " 'payload', convert_from(payload, 'UTF8'), 'headers', headers) ORDER BY id), '[]')"
        " FROM pgqueuer",
        "app",
    )
    found: list[dict[str, object]] = json.loads(rows)
    return found


async def test_a_committed_request_leaves_its_job_queued_with_the_request_id(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    answer = await client.post("/_test/jobs", json={"key": "committed"})
    assert answer.status_code == 201
    [job] = queued(migrated)
    assert job["entrypoint"] == "test.record.v1"
    assert job["status"] == "queued"
    assert json.loads(str(job["payload"])) == {"key": "committed", "sleep_s": 0, "fail_runs": 0}
    assert job["headers"] == {
        "request_id": answer.headers["x-request-id"],
        "payload_version": "1",
    }


async def test_a_request_that_fails_after_enqueueing_leaves_no_job(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    answer = await client.post("/_test/jobs", json={"key": "raised", "then": "raise"})
    assert answer.status_code == 400
    assert queued(migrated) == []


async def test_a_request_whose_commit_fails_gets_the_error_and_leaves_no_job(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    answer = await client.post("/_test/jobs", json={"key": "commit", "then": "fail_commit"})
    assert answer.status_code >= 400
    assert "job_id" not in answer.text
    assert queued(migrated) == []
    assert migrated.psql("SELECT count(*) FROM test_deferred", "app").strip() == "0"


async def test_jobs_enqueued_are_counted_once_their_transaction_commits(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/_test/jobs", json={"key": "counted"})
    await client.post("/_test/jobs", json={"key": "not counted", "then": "raise"})
    metrics = (await client.get("/metrics")).text
    assert 'jobs_enqueued_total{job="test.record"} 1.0' in metrics


@pytest.mark.skipif(not HAS_EXAMPLE, reason="the example domain was left out")
async def test_creating_an_item_queues_its_publishing(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    created = (await client.post("/api/v1/items", json={"name": "queued"})).json()
    assert created["published_at"] is None
    [job] = queued(migrated)
    assert job["entrypoint"] == "items.publish.v1"
    assert json.loads(str(job["payload"])) == {"item_id": created["id"]}
