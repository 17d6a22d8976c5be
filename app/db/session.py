"""Database access for a request: a transaction for writes, a plain connection for reads.

`DbSession` (writes, and reads that must see a consistent snapshot): one request is one
transaction. `DbReader` (single-statement reads): a connection in autocommit, so no BEGIN and
COMMIT round trips around the one SELECT (docs/adr/0005-read-path.md: 3 round trips fewer per
read). Both are guarded the same way.

The session dependency asks the breaker first (an open circuit answers 503 without touching the
pool), waits its turn at the connection gate, opens the transaction, and commits it when the
endpoint returns or rolls it back when anything raised; repositories and services only
`flush()`. It is declared with `scope="function"` so the commit happens before the response is
sent: a commit that fails must reach the client as an error, not after a 201 it already has.
Infrastructure failures become 503 (with Retry-After) or 504, never a bare 500.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db.failures import failure_kind
from app.errors import GatewayTimeout, ServiceUnavailable
from app.resilience.circuit_breaker import CircuitOpen
from app.state import Database, resources


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"


class DatabaseTimeout(GatewayTimeout):
    slug = "database-timeout"


@asynccontextmanager
async def _guarded(database: Database) -> AsyncIterator[None]:
    """Breaker, gate and error mapping around whatever the request does with the database."""
    try:
        permit = database.breaker.acquire()
    except CircuitOpen as exc:
        raise DatabaseUnavailable(
            "The database is failing; not trying it for now.",
            retry_after=max(1, math.ceil(exc.retry_after)),
        ) from None
    error: BaseException | None = None
    try:
        async with database.gate.slot():
            yield
    except BaseException as exc:
        error = exc
        kind = failure_kind(exc)
        if kind == "timeout":
            raise DatabaseTimeout("The database did not answer in time.") from exc
        if kind == "unavailable":
            raise DatabaseUnavailable("The database is unavailable.", retry_after=2) from exc
        raise
    finally:
        database.breaker.record(permit, error)


async def _transaction(request: Request) -> AsyncIterator[AsyncSession]:
    database = resources(request).database
    async with _guarded(database), database.sessionmaker() as session, session.begin():
        yield session


async def _reader(request: Request) -> AsyncIterator[AsyncConnection]:
    database = resources(request).database
    async with _guarded(database), database.reader.connect() as connection:
        yield connection


DbSession = Annotated[AsyncSession, Depends(_transaction, scope="function")]
# Autocommit: each statement is its own transaction. For one-statement reads only; anything
# that writes, or reads twice and needs both reads to agree, takes DbSession.
DbReader = Annotated[AsyncConnection, Depends(_reader, scope="function")]
