"""One request is one transaction, committed before the response is sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from devtools.pgcluster import PgCluster

ITEMS = "/api/v1/items"


@pytest.fixture
def commit_time_failure(migrated: PgCluster) -> Iterator[str]:
    """A deferred constraint trigger: the INSERT and flush succeed, the COMMIT fails."""
    name = "fails-at-commit"
    migrated.psql(
        f"""
        CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused at commit'; END IF;
          RETURN NEW;
        END $$;
        CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT ON items
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_at_commit();
        """,
        database="app",
    )
    try:
        yield name
    finally:
        migrated.psql(
            "DROP TRIGGER test_fail_at_commit ON items; DROP FUNCTION test_fail_at_commit();",
            database="app",
        )


async def test_a_failed_commit_is_not_reported_as_created(
    client: httpx.AsyncClient, commit_time_failure: str
) -> None:
    response = await client.post(ITEMS, json={"name": commit_time_failure})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "refused at commit" not in response.text
    listing = (await client.get(ITEMS)).json()
    assert listing["items"] == []


async def test_a_domain_error_rolls_back_everything_the_request_wrote(
    client: httpx.AsyncClient,
) -> None:
    await client.post(ITEMS, json={"name": "kept"})
    other = (await client.post(ITEMS, json={"name": "other", "description": "before"})).json()
    # The description change is flushed before the name clash is detected: both must roll back.
    clash = await client.patch(
        f"{ITEMS}/{other['id']}", json={"description": "after", "name": "kept"}
    )
    assert clash.status_code == 409
    assert (await client.get(f"{ITEMS}/{other['id']}")).json()["description"] == "before"
