"""`Idempotency-Key`, in-process on the real database: a retry gets the first answer and runs
nothing; the same key on another request is refused; a key in use is a 409; whatever does not
commit leaves the key free. On a test-only route (tests/notes.py), so a service without the
example keeps these tests; the example's own POST is checked at the end."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.idempotency.store import claim
from app.settings import Settings
from devtools.oidc_provider import Provider, openid_provider
from devtools.pgcluster import PgCluster
from tests.docs import documented, typed
from tests.integration.test_auth import keys_fetched, oidc_settings, service
from tests.routes import service_with_test_routes
from tests.support import ROOT, asgi_client, clean_env, db_env, needs_example

KEYED = "/_test/notes/keyed"
ITEMS = "/api/v1/items"


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def notes(cluster: PgCluster) -> list[str]:
    return cluster.psql("SELECT text FROM test_notes ORDER BY id", "app").split()


async def test_a_retry_gets_the_stored_answer_and_runs_nothing(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    first = await client.post(KEYED, json={"text": "kettle"}, headers=key('"retry-1"'))
    again = await client.post(KEYED, json={"text": "kettle"}, headers=key('"retry-1"'))
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    for header in ("content-type", "location"):
        assert again.headers[header] == first.headers[header]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert notes(migrated) == ["kettle"]


async def test_a_quoted_key_and_the_same_bare_token_are_one_key(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    await client.post(KEYED, json={"text": "lid"}, headers=key('"same-1"'))
    again = await client.post(KEYED, json={"text": "lid"}, headers=key("same-1"))
    assert again.headers["idempotent-replayed"] == "true"
    assert notes(migrated) == ["lid"]


@pytest.mark.parametrize(
    ("path", "body"),
    [(KEYED, {"text": "mug"}), (f"{KEYED}?padding=1", {"text": "cup"})],
    ids=["another-body", "another-query"],
)
async def test_the_same_key_on_another_request_is_422_and_runs_nothing(
    client: httpx.AsyncClient, migrated: PgCluster, path: str, body: dict[str, str]
) -> None:
    assert (await client.post(KEYED, json={"text": "cup"}, headers=key("k-1"))).status_code == 201
    other = await client.post(path, json=body, headers=key("k-1"))
    assert other.status_code == 422
    assert other.json()["type"] == "urn:problem:idempotency-key-reused"
    assert notes(migrated) == ["cup"]


@pytest.mark.parametrize("header", ['""', "two words", '"' + "k" * 256 + '"'])
async def test_a_malformed_key_is_400_and_runs_nothing(
    client: httpx.AsyncClient, migrated: PgCluster, header: str
) -> None:
    refused = await client.post(KEYED, json={"text": "pan"}, headers=key(header))
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:problem:invalid-idempotency-key"
    assert notes(migrated) == []


async def test_a_route_that_requires_a_key_is_400_without_one(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    refused = await client.post(KEYED, json={"text": "pot"})
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:problem:invalid-idempotency-key"
    assert "Idempotency-Key" in refused.json()["detail"]
    assert notes(migrated) == []


async def test_a_key_in_use_is_409_with_retry_after_and_a_type_of_its_own(
    client: httpx.AsyncClient, migrated: PgCluster, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as other_request, other_request.begin():
        assert await claim(other_request, "anonymous", "busy-1") is None  # still running
        busy = await client.post(KEYED, json={"text": "jar"}, headers=key("busy-1"))
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["type"] == "urn:problem:idempotency-key-in-use"
    assert notes(migrated) == []
    done = await client.post(KEYED, json={"text": "jar"}, headers=key("busy-1"))
    assert done.status_code == 201  # the holder ended without an answer: the key is free


async def test_an_answer_that_did_not_commit_is_not_kept_and_frees_the_key(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    await client.post(KEYED, json={"text": "taken"}, headers=key("first"))
    conflict = await client.post(KEYED, json={"text": "taken"}, headers=key("rolled-back"))
    assert conflict.status_code == 409
    assert conflict.json()["type"] != "urn:problem:idempotency-key-in-use"
    retried = await client.post(KEYED, json={"text": "bowl"}, headers=key("rolled-back"))
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert notes(migrated) == ["taken", "bowl"]


async def test_an_answer_over_the_cap_fails_the_request_and_writes_nothing(
    migrated: PgCluster, settings: Settings
) -> None:
    capped = settings.model_copy(
        update={"idempotency": settings.idempotency.model_copy(update={"max_answer_bytes": 1024})}
    )
    async with asgi_client(service_with_test_routes(capped)) as client:
        big = await client.post(f"{KEYED}?padding=2000", json={"text": "vat"}, headers=key("b-1"))
        assert big.status_code == 500
        assert big.json()["error_id"]
        assert "MAX_ANSWER_BYTES" not in big.text  # the reason is logged, not sent
        assert notes(migrated) == []
        small = await client.post(f"{KEYED}?padding=900", json={"text": "vat"}, headers=key("b-2"))
        assert small.status_code == 201
        assert notes(migrated) == ["vat"]


async def test_the_openapi_document_declares_the_header_and_every_answer(
    client: httpx.AsyncClient,
) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"][KEYED]["post"]
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["schema"]["pattern"].startswith("^")
    for status in ("400", "409", "422"):
        assert "application/problem+json" in operation["responses"][status]["content"]
    assert "Retry-After" in operation["responses"]["409"]["headers"]
    plain = (await client.get("/openapi.json")).json()["paths"]["/_test/notes"]["post"]
    assert "409" not in plain["responses"]  # a route without the dependency is untouched
    assert not [p for p in plain.get("parameters", []) if p["in"] == "header"]


@pytest.fixture
def provider() -> Iterator[Provider]:
    with openid_provider() as found:
        yield found


async def test_keys_belong_to_the_caller_and_authentication_comes_first(
    migrated: PgCluster, provider: Provider, sessions: async_sessionmaker[AsyncSession]
) -> None:
    alice = provider.token(scope="notes:write", sub="alice")
    bob = provider.token(scope="notes:write", sub="bob")
    reader = provider.token(scope="notes:read", sub="alice")

    async def post(token: str | None, text: str) -> int:
        headers = key("shared") | ({"authorization": f"Bearer {token}"} if token else {})
        return (await client.post(KEYED, json={"text": text}, headers=headers)).status_code

    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, alice)
        async with sessions() as running, running.begin():
            assert await claim(running, "alice", "shared") is None  # alice's request runs
            assert await post(None, "a") == 401
            assert await post(reader, "a") == 403  # alice's token without the write scope
            assert await post(alice, "a") == 409
            assert await post(bob, "b") == 201  # the same key, another caller
    assert notes(migrated) == ["b"]


async def test_an_expired_key_is_pruned_by_the_documented_command_and_runs_anew(
    client: httpx.AsyncClient, migrated: PgCluster, settings: Settings
) -> None:
    await client.post(KEYED, json={"text": "old"}, headers=key("aged"))
    await client.post(KEYED, json={"text": "new"}, headers=key("fresh"))
    migrated.psql("UPDATE idempotency_keys SET expires_at = now() WHERE key = 'aged'", "app")
    env = clean_env(APP_ENV="test", PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    pruned = typed(
        documented("docs/idempotency.md", "python -m app.idempotency prune"),
        env=env | db_env(migrated),
    )
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"deleted": 1}
    kept = migrated.psql("SELECT key FROM idempotency_keys", "app").split()
    assert kept == ["fresh"]
    again = await client.post(KEYED, json={"text": "older"}, headers=key("aged"))
    assert again.status_code == 201  # a new request now, not a 422 or a replay
    assert notes(migrated) == ["old", "new", "older"]


@needs_example
async def test_the_example_post_replays_without_a_second_item_or_job(
    client: httpx.AsyncClient, migrated: PgCluster
) -> None:
    first = await client.post(ITEMS, json={"name": "kettle"}, headers=key('"item-1"'))
    renamed = await client.patch(first.headers["location"], json={"name": "teapot"})
    assert renamed.status_code == 200
    again = await client.post(ITEMS, json={"name": "kettle"}, headers=key('"item-1"'))
    assert (again.status_code, again.content) == (201, first.content)  # as first answered
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await client.get(ITEMS)).json()["items"]) == 1
    assert migrated.psql("SELECT count(*) FROM pgqueuer", "app").strip() == "1"  # jobs-only


@needs_example
async def test_the_example_post_runs_every_time_without_a_key(client: httpx.AsyncClient) -> None:
    assert (await client.post(ITEMS, json={"name": "pot"})).status_code == 201
    assert (await client.post(ITEMS, json={"name": "pot"})).status_code == 409  # name taken
