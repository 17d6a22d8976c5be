"""Typed access to what the lifespan built for this worker process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.gate import ConnectionGate
from app.db.readiness import ReadinessCheck
from app.errors import ServiceUnavailable
from app.resilience.circuit_breaker import CircuitBreaker
from app.settings import Settings

if TYPE_CHECKING:  # app.db.reads builds on Database; imported for the annotation only
    from app.db.reads import DbReads

_KEY = "resources"


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    gate: ConnectionGate
    breaker: CircuitBreaker
    # The same pool, its connections in autocommit while checked out (app/db/reads.py);
    # the engine itself behind PgBouncer (app/lifespan.py says why).
    reader: AsyncEngine


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    database_or_none: Database | None
    readiness: ReadinessCheck
    reads_or_none: DbReads | None  # built on database_or_none, one per worker

    @property
    def database(self) -> Database:
        """The database, or a 503 when this deployment has none configured."""
        if self.database_or_none is None:
            raise _no_database()
        return self.database_or_none

    @property
    def reads(self) -> DbReads:
        """Single-statement reads on the database, or a 503 as for `database`."""
        if self.reads_or_none is None:
            raise _no_database()
        return self.reads_or_none


def _no_database() -> ServiceUnavailable:
    return ServiceUnavailable("The database is not configured (DATABASE_URL is unset).")


def resources(request: Request) -> Resources:
    found: Resources = getattr(request.state, _KEY)
    return found


def lifespan_state(found: Resources) -> dict[str, Resources]:
    """What the lifespan yields; Starlette copies it into every request's `request.state`."""
    return {_KEY: found}
