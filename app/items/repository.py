"""Item queries and persistence on the request's session. Repositories never commit: the
request's session does (app/db/session.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Integer, Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item

# Reads are Core statements on the table: rows that go straight into the response need no
# identity map or change tracking. Built once with bound parameters, so SQLAlchemy finds the
# compiled statement in its cache without building a cache key per call.
_ITEMS = Item.__table__.c
_ITEM = select(
    _ITEMS.id,
    _ITEMS.name,
    _ITEMS.description,
    _ITEMS.created_at,
    _ITEMS.updated_at,
    _ITEMS.published_at,  # jobs-only
)
_BY_ID = _ITEM.where(_ITEMS.id == bindparam("item_id"))
_PAGE_AFTER = (
    _ITEM.where(_ITEMS.id > bindparam("after"))
    .order_by(_ITEMS.id)
    .limit(bindparam("limit", type_=Integer))
)
ItemRow = Row[
    int,
    str,
    str | None,
    datetime,
    datetime,
    datetime | None,  # jobs-only
]


class ItemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find(self, item_id: int) -> ItemRow | None:
        result = await self._session.execute(_BY_ID, {"item_id": item_id})
        return result.one_or_none()

    async def page(self, *, after: int, limit: int) -> Sequence[ItemRow]:
        result = await self._session.execute(_PAGE_AFTER, {"after": after, "limit": limit})
        return result.all()

    async def get(self, item_id: int) -> Item | None:
        return await self._session.get(Item, item_id)

    def add(self, item: Item) -> None:
        self._session.add(item)

    async def delete(self, item: Item) -> None:
        await self._session.delete(item)

    async def flush(self) -> None:
        await self._session.flush()
