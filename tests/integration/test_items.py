"""Items CRUD end to end: HTTP in, the real PostgreSQL underneath."""

from __future__ import annotations

import httpx

from app.db.engine import build_engine  # jobs-only
from app.db.session import write_sessions  # jobs-only
from app.items.jobs import PUBLISH, PublishItem  # jobs-only
from app.items.schemas import PAGE_SIZE_MAX
from app.jobs.definitions import JobContext  # jobs-only
from app.settings import Settings  # jobs-only
from devtools.pgcluster import PgCluster  # jobs-only

ITEMS = "/api/v1/items"
PROBLEM = "application/problem+json"


async def test_create_then_get_returns_the_stored_item(client: httpx.AsyncClient) -> None:
    created = await client.post(ITEMS, json={"name": "lamp", "description": "brass"})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "lamp"
    assert body["description"] == "brass"
    assert body["created_at"]

    fetched = await client.get(f"{ITEMS}/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_duplicate_name_is_409_and_first_item_survives(client: httpx.AsyncClient) -> None:
    first = await client.post(ITEMS, json={"name": "chair"})
    duplicate = await client.post(ITEMS, json={"name": "chair", "description": "other"})
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == PROBLEM
    assert duplicate.json()["status"] == 409
    listing = (await client.get(ITEMS)).json()
    assert [item["id"] for item in listing["items"]] == [first.json()["id"]]


async def test_missing_item_is_404_problem(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get(f"{ITEMS}/424242"),
        await client.patch(f"{ITEMS}/424242", json={"name": "x"}),
        await client.delete(f"{ITEMS}/424242"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["title"] == "Not Found"


async def test_invalid_input_is_422_with_field_paths(client: httpx.AsyncClient) -> None:
    cases = [
        (client.post(ITEMS, json={}), ["body", "name"]),
        (client.post(ITEMS, json={"name": ""}), ["body", "name"]),
        (client.post(ITEMS, json={"name": "x" * 201}), ["body", "name"]),
        (client.post(ITEMS, json={"name": "ok", "extra": 1}), ["body", "extra"]),
        (client.post(ITEMS, json={"name": "nul\u0000byte"}), ["body", "name"]),
        (client.post(ITEMS, json={"name": "ok", "description": "\u0000"}), ["body", "description"]),
        (client.get(f"{ITEMS}/not-a-number"), ["path", "item_id"]),
        (client.get(f"{ITEMS}/{2**63}"), ["path", "item_id"]),
    ]
    for pending, loc in cases:
        response = await pending
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert loc in [error["loc"] for error in response.json()["errors"]]


async def test_rejected_input_is_not_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post(ITEMS, json={"name": "ok", "password": "hunter2-do-not-echo"})
    assert response.status_code == 422
    assert "hunter2-do-not-echo" not in response.text


async def test_update_changes_only_given_fields(client: httpx.AsyncClient) -> None:
    item = (await client.post(ITEMS, json={"name": "desk", "description": "oak"})).json()
    renamed = await client.patch(f"{ITEMS}/{item['id']}", json={"name": "table"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "table"
    assert renamed.json()["description"] == "oak"
    cleared = await client.patch(f"{ITEMS}/{item['id']}", json={"description": None})
    assert cleared.json()["description"] is None
    assert (await client.get(f"{ITEMS}/{item['id']}")).json()["name"] == "table"


async def test_update_to_a_taken_name_is_409_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await client.post(ITEMS, json={"name": "one"})
    two = (await client.post(ITEMS, json={"name": "two"})).json()
    clash = await client.patch(f"{ITEMS}/{two['id']}", json={"name": "one"})
    assert clash.status_code == 409
    assert (await client.get(f"{ITEMS}/{two['id']}")).json()["name"] == "two"


async def test_delete_removes_the_item(client: httpx.AsyncClient) -> None:
    item = (await client.post(ITEMS, json={"name": "vase"})).json()
    deleted = await client.delete(f"{ITEMS}/{item['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"{ITEMS}/{item['id']}")).status_code == 404


async def test_keyset_pagination_walks_every_item_once(client: httpx.AsyncClient) -> None:
    names = {f"item-{n:02d}" for n in range(7)}
    for name in sorted(names):
        assert (await client.post(ITEMS, json={"name": name})).status_code == 201
    seen: list[str] = []
    after: int | None = None
    pages = 0
    while True:
        params: dict[str, int] = {"limit": 3} | ({"after": after} if after is not None else {})
        page = (await client.get(ITEMS, params=params)).json()
        pages += 1
        assert len(page["items"]) <= 3
        seen += [item["name"] for item in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(names)
    assert len(seen) == len(names)


async def test_page_size_is_bounded(client: httpx.AsyncClient) -> None:
    assert (await client.get(ITEMS, params={"limit": PAGE_SIZE_MAX})).status_code == 200
    for limit in (0, PAGE_SIZE_MAX + 1, -1):
        response = await client.get(ITEMS, params={"limit": limit})
        assert response.status_code == 422
        assert ["query", "limit"] in [error["loc"] for error in response.json()["errors"]]


async def test_a_wrong_method_is_405_naming_every_method_of_the_resource(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9110 15.5.6: `Allow` lists all the methods the resource supports, although FastAPI
    makes one route per method and Starlette's 405 names only the first route's."""
    for path, methods in (
        ("/api/v1/items", {"GET", "POST"}),
        ("/api/v1/items/1", {"GET", "PATCH", "DELETE"}),
    ):
        for wrong in ("OPTIONS", "PUT"):
            response = await client.request(wrong, path)
            assert response.status_code == 405, (wrong, path)
            assert set(response.headers["allow"].split(", ")) == methods, (wrong, path)
            assert response.headers["content-type"] == "application/problem+json"


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


# jobs-only
async def test_publishing_an_item_twice_changes_nothing_the_second_time(
    settings: Settings, migrated: PgCluster
) -> None:
    """The example's job is idempotent: a second run (after a kill, a lost commit answer)
    leaves the item as the first left it."""
    migrated.psql("INSERT INTO items (name) VALUES ('twice')", "app")
    url = settings.database_url_object()
    assert url is not None
    engine = build_engine(url, settings.db, hide_parameters=False)
    try:
        for attempt in (1, 2):
            async with write_sessions(engine)() as session, session.begin():
                context = JobContext(session=session, job_id=1, attempt=attempt)
                await PUBLISH.run(PublishItem(item_id=1), context)
            if attempt == 1:
                first = migrated.psql("SELECT published_at, updated_at FROM items", "app")
                assert first.split("|")[0]  # published
    finally:
        await engine.dispose()
    assert migrated.psql("SELECT published_at, updated_at FROM items", "app") == first


# /jobs-only
