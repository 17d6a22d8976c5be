"""`Idempotency-Key` on the example's POST, in-process on the real database: a retry gets the
first answer and writes nothing; the same key on another request is refused."""

from __future__ import annotations

import httpx
import pytest

from tests.support import needs_example

pytestmark = needs_example
ITEMS = "/api/v1/items"


async def count_items(client: httpx.AsyncClient) -> int:
    return len((await client.get(ITEMS)).json()["items"])


async def test_a_retry_gets_the_first_answer_and_writes_nothing(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": '"retry-1"'}
    first = await client.post(ITEMS, json={"name": "kettle"}, headers=headers)
    again = await client.post(ITEMS, json={"name": "kettle"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["content-type"] == "application/json"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_items(client) == 1


async def test_the_same_key_on_another_request_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "reused-1"}
    assert (await client.post(ITEMS, json={"name": "cup"}, headers=headers)).status_code == 201
    other = await client.post(ITEMS, json={"name": "mug"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:problem:idempotency-key-reused"
    assert await count_items(client) == 1


@pytest.mark.parametrize("header", ['""', "two words", '"' + "k" * 256 + '"'])
async def test_a_malformed_key_is_400_and_runs_nothing(
    client: httpx.AsyncClient, header: str
) -> None:
    refused = await client.post(ITEMS, json={"name": "pan"}, headers={"Idempotency-Key": header})
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:problem:invalid-idempotency-key"
    assert await count_items(client) == 0


async def test_without_a_key_every_post_runs(client: httpx.AsyncClient) -> None:
    assert (await client.post(ITEMS, json={"name": "pot"})).status_code == 201
    assert (await client.post(ITEMS, json={"name": "pot"})).status_code == 409  # name taken
