"""Reads for items: one statement each, each on an autocommit connection (`DbReader`).

Core `select()` rather than the ORM: a read that goes straight to the response model needs no
identity map, no unit of work and no change tracking (docs/adr/0005-read-path.md). Writes go
through `ItemService` and the ORM in a transaction.
"""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, select

from app.db.reads import DbReads
from app.items.models import Item
from app.items.schemas import ItemPage, ItemPublic

_COLUMNS = Item.__table__.c
_ITEM = select(
    _COLUMNS.id, _COLUMNS.name, _COLUMNS.description, _COLUMNS.created_at, _COLUMNS.updated_at
)
# Built once, with the values as bound parameters: a statement used again runs on the driver's
# path (app/db/reads.py), and one built per call would pay SQLAlchemy's compilation-cache key
# every time.
_BY_ID = _ITEM.where(_COLUMNS.id == bindparam("item_id"))
_PAGE_FIRST = _ITEM.order_by(_COLUMNS.id).limit(bindparam("limit", type_=Integer))
_PAGE_AFTER = (
    _ITEM.where(_COLUMNS.id > bindparam("after"))
    .order_by(_COLUMNS.id)
    .limit(bindparam("limit", type_=Integer))
)


class ItemQueries:
    def __init__(self, reads: DbReads) -> None:
        self._reads = reads

    async def get(self, item_id: int) -> ItemPublic | None:
        row = await self._reads.first(_BY_ID, {"item_id": item_id})
        return None if row is None else ItemPublic.model_validate(row)

    async def page(self, *, after: int | None, limit: int) -> ItemPage:
        # One row more than asked for: is there a next page?
        if after is None:
            rows = await self._reads.all(_PAGE_FIRST, {"limit": limit + 1})
        else:
            rows = await self._reads.all(_PAGE_AFTER, {"after": after, "limit": limit + 1})
        items = [ItemPublic.model_validate(row) for row in rows[:limit]]
        return ItemPage(items=items, next_after=items[-1].id if len(rows) > limit else None)
