from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.auth.dependency import requires
from app.db.base import BIGINT_MAX
from app.db.session import DbSession
from app.errors import PROBLEM_JSON
from app.idempotency.dependency import Idempotent, IdempotentRoute
from app.items.repository import ItemRepository
from app.items.schemas import (
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    ItemCreate,
    ItemPage,
    ItemPublic,
    ItemUpdate,
)
from app.items.service import ItemService
from app.jobs.queue import Jobs  # jobs-only


# `async def` on purpose: FastAPI runs a plain `def` dependency in a thread pool, a thread hop
# per request (measured: docs/adr/0005-read-path.md).
async def _service(
    session: DbSession,
    jobs: Jobs,  # jobs-only
) -> ItemService:
    return ItemService(
        ItemRepository(session),
        jobs,  # jobs-only
    )


Items = Annotated[ItemService, Depends(_service)]
# Ids are BIGINT: a larger number is a 422, not a driver overflow error.
ItemId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]

Responses = dict[int | str, dict[str, Any]]
_problem: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
router = APIRouter(
    # The full path, not a prefix added at include time: access logs and metrics read the route
    # template from the route object, which knows only its own router's prefix.
    prefix="/api/v1/items",
    tags=["items"],
    route_class=IdempotentRoute,
    responses={422: _problem | {"description": "Invalid input"}},
)
# With AUTH__MODE=oidc a token with these scopes (app/auth/dependency.py); none needed otherwise.
READ = [requires("items:read")]
WRITE = [requires("items:write")]
_missing: Responses = {404: _problem | {"description": "No such item"}}
_taken: Responses = {409: _problem | {"description": "Name already taken"}}


# `_: Idempotent`: a retry with the same Idempotency-Key gets this answer again instead of a
# second item (app/idempotency/dependency.py); last, so authentication is checked first.
@router.post("", status_code=status.HTTP_201_CREATED, responses=_taken, dependencies=WRITE)
async def create_item(
    data: ItemCreate, items: Items, response: Response, _: Idempotent
) -> ItemPublic:
    created = await items.create(data)
    response.headers["Location"] = f"{router.prefix}/{created.id}"
    return created


@router.get("", dependencies=READ)
async def list_items(
    items: Items,
    after: Annotated[
        int, Query(ge=0, le=BIGINT_MAX, description="Last id of the previous page (0: the first)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
) -> ItemPage:
    return await items.page(after=after, limit=limit)


@router.get("/{item_id}", responses=_missing, dependencies=READ)
async def get_item(item_id: ItemId, items: Items) -> ItemPublic:
    return await items.get(item_id)


@router.patch("/{item_id}", responses=_missing | _taken, dependencies=WRITE)
async def update_item(item_id: ItemId, data: ItemUpdate, items: Items) -> ItemPublic:
    return await items.update(item_id, data)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_missing,
    dependencies=WRITE,
)
async def delete_item(item_id: ItemId, items: Items) -> Response:
    await items.delete(item_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
