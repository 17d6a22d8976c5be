"""Database access for a request: a transaction for writes, single-statement reads for reads.

`DbSession` (writes, and reads that must see a consistent snapshot): one request is one
transaction. `DbReader` (single-statement reads): each statement on a connection in autocommit,
so no BEGIN and COMMIT round trips around the one SELECT (docs/adr/0005-read-path.md: 3 round
trips fewer per read). Both are guarded the same way.

The session dependency asks the breaker first (an open circuit answers 503 without touching the
pool), waits its turn at the connection gate, opens the transaction, and commits it when the
endpoint returns or rolls it back when anything raised; repositories and services only
`flush()`. It is declared with `scope="function"` so the commit happens before the response is
sent: a commit that fails must reach the client as an error, not after a 201 it already has.
Infrastructure failures become 503 (with Retry-After) or 504, never a bare 500.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine, Executable, Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.util import greenlet_spawn

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


_T = TypeVar("_T")
Params = Mapping[str, Any] | None


def _first(engine: Engine, statement: Executable, params: Params) -> Row[Any] | None:
    with engine.connect() as connection:
        return connection.execute(statement, params).first()


def _all(engine: Engine, statement: Executable, params: Params) -> Sequence[Row[Any]]:
    with engine.connect() as connection:
        return connection.execute(statement, params).all()


class DbReads:
    """Single-statement reads, each on a pooled connection in autocommit for that statement
    (in a transaction behind PgBouncer: app/lifespan.py says why).

    Each call checks a connection out, executes, fetches and checks it back in within one
    switch into SQLAlchemy's greenlet, where `async with engine.connect()` and `await
    conn.execute()` take three (measured in a loop against the real database: ~120 us less CPU
    per read, about 40 % of what SQLAlchemy added over raw asyncpg). `greenlet_spawn` is the
    bridge SQLAlchemy's own asyncio extension is built on. The connection is held only for the
    statement, not for the rest of the request.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._engine = database.reader.sync_engine

    async def first(self, statement: Executable, params: Params = None) -> Row[Any] | None:
        """The first row, or None."""
        return await self._run(_first, statement, params)

    async def all(self, statement: Executable, params: Params = None) -> Sequence[Row[Any]]:
        """Every row (the driver fetches them all anyway: bound the query with a LIMIT)."""
        return await self._run(_all, statement, params)

    async def _run(
        self,
        fetch: Callable[[Engine, Executable, Params], _T],
        statement: Executable,
        params: Params,
    ) -> _T:
        async with _guarded(self._database):
            return await greenlet_spawn(fetch, self._engine, statement, params)


async def _reads(request: Request) -> DbReads:
    return DbReads(resources(request).database)


DbSession = Annotated[AsyncSession, Depends(_transaction, scope="function")]
# Autocommit: each statement is its own transaction. For one-statement reads only; anything
# that writes, or reads twice and needs both reads to agree, takes DbSession. A plain `async
# def` dependency, not a generator: nothing to clean up after the endpoint, so no exit stack.
DbReader = Annotated[DbReads, Depends(_reads)]
