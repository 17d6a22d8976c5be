"""One request is one transaction.

The session dependency opens the transaction, and commits it when the endpoint returns or rolls
it back when anything raised; repositories and services only `flush()`. It is declared with
`scope="function"` so the commit happens before the response is sent: a commit that fails must
reach the client as an error, not after a 201 it already has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.state import resources


async def _transaction(request: Request) -> AsyncIterator[AsyncSession]:
    database = resources(request).database
    async with database.gate.slot(), database.sessionmaker() as session, session.begin():
        yield session


DbSession = Annotated[AsyncSession, Depends(_transaction, scope="function")]
