"""What the item endpoints do. Writes flush to surface constraint violations; they never
commit (the request's session does)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app.items.errors import ItemNameTaken, ItemNotFound
from app.items.jobs import PUBLISH, PublishItem  # jobs-only
from app.items.models import Item
from app.items.repository import ItemRepository
from app.items.schemas import ItemCreate, ItemPage, ItemPublic, ItemUpdate
from app.jobs.queue import JobQueue  # jobs-only

UNIQUE_VIOLATION = "23505"


def _is_unique_violation(exc: IntegrityError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION


class ItemService:
    def __init__(
        self,
        repository: ItemRepository,
        jobs: JobQueue,  # jobs-only
    ) -> None:
        self._items = repository
        self._jobs = jobs  # jobs-only

    async def get(self, item_id: int) -> ItemPublic:
        row = await self._items.find(item_id)
        if row is None:
            raise ItemNotFound(item_id)
        return ItemPublic.model_validate(row)

    async def page(self, *, after: int, limit: int) -> ItemPage:
        # One row more than asked for: is there a next page?
        rows = await self._items.page(after=after, limit=limit + 1)
        items = [ItemPublic.model_validate(row) for row in rows[:limit]]
        return ItemPage(items=items, next_after=items[-1].id if len(rows) > limit else None)

    async def create(self, data: ItemCreate) -> ItemPublic:
        item = Item(name=data.name, description=data.description)
        self._items.add(item)
        await self._flush()
        # In this request's transaction: the job exists if and only if the item does.
        await self._jobs.enqueue(PUBLISH, PublishItem(item_id=item.id))  # jobs-only
        return ItemPublic.model_validate(item)

    async def update(self, item_id: int, data: ItemUpdate) -> ItemPublic:
        item = await self._load(item_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("name", item.name) is None:
            changes.pop("name")  # name is required: an explicit null leaves it unchanged
        for field, value in changes.items():
            setattr(item, field, value)
        await self._flush()
        return ItemPublic.model_validate(item)

    async def delete(self, item_id: int) -> None:
        await self._items.delete(await self._load(item_id))
        await self._items.flush()

    async def _load(self, item_id: int) -> Item:
        item = await self._items.get(item_id)
        if item is None:
            raise ItemNotFound(item_id)
        return item

    async def _flush(self) -> None:
        try:
            await self._items.flush()
        except IntegrityError as exc:
            if _is_unique_violation(exc):
                raise ItemNameTaken from None
            raise
