"""Database access for a request: a transaction for writes, single-statement reads for reads.

`DbSession` (writes, and reads that must see a consistent snapshot): one request is one
transaction. `DbReader` (single-statement reads, `app/db/reads.py`): each statement on its own
outside a transaction, so no BEGIN and COMMIT round trips around the one SELECT
(docs/adr/0005-read-path.md). Both are guarded the same way (`app/db/guard.py`): breaker,
connection gate, infrastructure failures as 503/504.

The session dependency opens the transaction inside the guard and commits it when the endpoint
returns or rolls it back when anything raised; repositories and services only `flush()`. It is
declared with `scope="function"` so the commit happens before the response is sent: a commit
that fails must reach the client as an error, not after a 201 it already has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.database import database_of
from app.db.guard import guarded
from app.db.reads import DbReads, reads_of


async def _transaction(request: Request) -> AsyncIterator[AsyncSession]:
    database = database_of(request)
    async with guarded(database), database.sessionmaker() as session, session.begin():
        yield session


async def _reads(request: Request) -> DbReads:
    return reads_of(request)


DbSession = Annotated[AsyncSession, Depends(_transaction, scope="function")]
# Each statement on its own. For one-statement reads only; anything that writes, or reads twice
# and needs both reads to agree, takes DbSession. A plain `async def` dependency, not a
# generator: nothing to clean up after the endpoint, so no exit stack.
DbReader = Annotated[DbReads, Depends(_reads)]
