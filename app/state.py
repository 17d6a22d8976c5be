"""Typed access to what the lifespan built for this worker process."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.gate import ConnectionGate
from app.db.readiness import ReadinessCheck
from app.errors import ServiceUnavailable
from app.resilience.circuit_breaker import CircuitBreaker
from app.settings import Settings

_KEY = "resources"


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    gate: ConnectionGate
    breaker: CircuitBreaker
    # The same pool, its connections in autocommit while checked out (app/db/session.py);
    # the engine itself behind PgBouncer (app/lifespan.py says why).
    reader: AsyncEngine


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    database_or_none: Database | None
    readiness: ReadinessCheck

    @property
    def database(self) -> Database:
        """The database, or a 503 when this deployment has none configured."""
        if self.database_or_none is None:
            raise ServiceUnavailable("The database is not configured (DATABASE_URL is unset).")
        return self.database_or_none


def resources(request: Request) -> Resources:
    found: Resources = getattr(request.state, _KEY)
    return found


def lifespan_state(found: Resources) -> dict[str, Resources]:
    """What the lifespan yields; Starlette copies it into every request's `request.state`."""
    return {_KEY: found}
