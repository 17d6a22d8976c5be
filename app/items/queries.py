"""Reads for items: one statement each, each on an autocommit connection (`DbReader`).

Core `select()` rather than the ORM: a read that goes straight to the response model needs no
identity map, no unit of work and no change tracking (docs/adr/0005-read-path.md). Writes go
through `ItemService` and the ORM in a transaction.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from app.db.session import DbReads
from app.items.models import Item
from app.items.schemas import ItemPage, ItemPublic

_COLUMNS = Item.__table__.c
_ITEM = select(
    _COLUMNS.id, _COLUMNS.name, _COLUMNS.description, _COLUMNS.created_at, _COLUMNS.updated_at
)
# Built once: SQLAlchemy memoizes a statement object's cache key, so executing the same object
# skips the key computation a freshly built `where()` costs on every call.
_BY_ID = _ITEM.where(_COLUMNS.id == bindparam("item_id"))


class ItemQueries:
    def __init__(self, reads: DbReads) -> None:
        self._reads = reads

    async def get(self, item_id: int) -> ItemPublic | None:
        row = await self._reads.first(_BY_ID, {"item_id": item_id})
        return None if row is None else ItemPublic.model_validate(row._mapping)

    async def page(self, *, after: int | None, limit: int) -> ItemPage:
        query = _ITEM.order_by(_COLUMNS.id).limit(limit + 1)  # one extra: is there more?
        if after is not None:
            query = query.where(_COLUMNS.id > after)
        rows = await self._reads.all(query)
        items = [ItemPublic.model_validate(row._mapping) for row in rows[:limit]]
        return ItemPage(items=items, next_after=items[-1].id if len(rows) > limit else None)
