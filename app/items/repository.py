"""Queries for items. Repositories never commit: the request's transaction does."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.items.models import Item


class ItemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, item_id: int) -> Item | None:
        return await self._session.get(Item, item_id)

    def add(self, item: Item) -> None:
        self._session.add(item)

    async def delete(self, item: Item) -> None:
        await self._session.delete(item)

    async def flush(self, item: Item | None = None) -> None:
        await self._session.flush()
        if item is not None:
            # Server-side defaults (timestamps) are not loaded by the flush itself.
            await self._session.refresh(item)
