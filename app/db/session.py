"""One request is one transaction, guarded by the database circuit breaker.

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
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.failures import failure_kind
from app.errors import GatewayTimeout, ServiceUnavailable
from app.resilience.circuit_breaker import CircuitOpen
from app.state import resources


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"


class DatabaseTimeout(GatewayTimeout):
    slug = "database-timeout"


async def _transaction(request: Request) -> AsyncIterator[AsyncSession]:
    database = resources(request).database
    try:
        permit = database.breaker.acquire()
    except CircuitOpen as exc:
        raise DatabaseUnavailable(
            "The database is failing; not trying it for now.",
            retry_after=max(1, math.ceil(exc.retry_after)),
        ) from None
    error: BaseException | None = None
    try:
        async with database.gate.slot(), database.sessionmaker() as session, session.begin():
            yield session
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


DbSession = Annotated[AsyncSession, Depends(_transaction, scope="function")]
