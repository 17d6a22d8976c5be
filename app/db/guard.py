"""What stands around every use of the database by a request: breaker, gate, error mapping.

The breaker is asked first (an open circuit answers 503 without touching the pool), then the
request waits its turn at the connection gate; whatever the request does with the database
runs inside, and on the way out the outcome goes to the breaker and infrastructure failures
become 503 (with Retry-After) or 504, never a bare 500.

A class rather than an `@asynccontextmanager` generator: this runs on every database call, and
the generator machinery (plus a second one for the gate) showed up in the profile of a read.
"""

from __future__ import annotations

import math
from types import TracebackType

from app.db.database import Database
from app.db.failures import failure_kind
from app.errors import GatewayTimeout, ServiceUnavailable
from app.resilience.circuit_breaker import CircuitOpen, Permit
from app.tracing import span_event


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"


class DatabaseTimeout(GatewayTimeout):
    slug = "database-timeout"


class guarded:  # used like a function: `async with guarded(database):`
    __slots__ = ("_database", "_permit")

    def __init__(self, database: Database) -> None:
        self._database = database

    async def __aenter__(self) -> None:
        database = self._database
        try:
            self._permit: Permit = database.breaker.acquire()
        except CircuitOpen as exc:
            span_event("db.circuit_open", retry_after_s=round(exc.retry_after, 3))
            raise DatabaseUnavailable(
                "The database is failing; not trying it for now.",
                retry_after=max(1, math.ceil(exc.retry_after)),
            ) from None
        try:
            await database.gate.acquire()
        except BaseException as exc:
            database.breaker.record(self._permit, exc)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        database = self._database
        database.gate.release()
        database.breaker.record(self._permit, exc)
        if exc is None:
            return
        kind = failure_kind(exc)
        if kind == "timeout":
            raise DatabaseTimeout("The database did not answer in time.") from exc
        if kind == "unavailable":
            raise DatabaseUnavailable("The database is unavailable.", retry_after=2) from exc
