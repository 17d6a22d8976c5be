"""One worker's database resources, and how a request reaches them.

The lifespan builds a `Database` per worker and puts it in the lifespan state under
`STATE_KEY`; Starlette copies that into every request's `request.state`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.gate import ConnectionGate
from app.errors import ServiceUnavailable
from app.resilience.circuit_breaker import CircuitBreaker

STATE_KEY = "database"


@dataclass(frozen=True, slots=True)
class SessionMakers:
    # For requests that change things: one request, one transaction.
    write: async_sessionmaker[AsyncSession]
    # For GET and HEAD: the same pool, each statement on its own (app/db/session.py).
    read: async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Database:
    engine: AsyncEngine
    gate: ConnectionGate
    breaker: CircuitBreaker
    sessions: SessionMakers
    # The same, on the same pool, with a span per statement; None while tracing is off.
    traced_sessions: SessionMakers | None = None

    def sessions_for_current_span(self) -> SessionMakers:
        """The traced sessions only below a sampled span: an unsampled request's statements
        dispatch no event at all (docs/adr/0007-traces.md)."""
        if self.traced_sessions is not None and trace.get_current_span().is_recording():
            return self.traced_sessions
        return self.sessions


def not_configured() -> ServiceUnavailable:
    return ServiceUnavailable("The database is not configured (DATABASE_URL is unset).")


def database_of(request: Request) -> Database:
    """This worker's database, or a 503 when the deployment has none configured."""
    found: Database | None = getattr(request.state, STATE_KEY, None)
    if found is None:
        raise not_configured()
    return found
