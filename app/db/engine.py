"""The async engine: URL, pool, timeouts and TLS, all from `DatabaseSettings`.

`create_async_engine` opens no connection, so building the engine cannot fail because the
database is down; that is what lets the service start, report "not ready" and recover by itself
(a failed lifespan startup would stop the whole Gunicorn master, docs/facts.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from app.db.tls import build_ssl_context
from app.settings import DatabaseSettings


def connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Keyword arguments for `asyncpg.connect()`."""
    server_settings = {"application_name": settings.application_name}
    if settings.statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    args: dict[str, Any] = {
        "ssl": build_ssl_context(settings.sslmode, settings.sslrootcert),
        "timeout": settings.connect_timeout,
        "command_timeout": settings.command_timeout,
        "server_settings": server_settings,
    }
    if settings.pgbouncer:
        # Transaction mode hands each transaction any server connection: a statement prepared
        # under asyncpg's numbered names may already exist there, or not exist any more.
        args |= {
            "statement_cache_size": 0,  # asyncpg's own cache
            "prepared_statement_cache_size": 0,  # SQLAlchemy's
            "prepared_statement_name_func": _unique_statement_name,
        }
    return args


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def build_engine(url: URL, settings: DatabaseSettings, *, hide_parameters: bool) -> AsyncEngine:
    """Create the pool for one worker process. Call in the lifespan, never at import."""
    pool: dict[str, Any] = (
        # PgBouncer pools; a connection per checkout, so no stale one to pre-ping either.
        {"poolclass": NullPool}
        if settings.pgbouncer
        else {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            "pool_recycle": settings.pool_recycle,
            "pool_pre_ping": settings.pool_pre_ping,
        }
    )
    engine = create_async_engine(
        url,
        **pool,
        # Reads run without BEGIN/COMMIT; sessions that write ask for a transaction
        # (app/db/session.py). Behind PgBouncer every session keeps its transaction.
        isolation_level="READ COMMITTED" if settings.pgbouncer else "AUTOCOMMIT",
        # Bound parameters can hold personal data; keep them out of production error messages.
        hide_parameters=hide_parameters,
        echo=settings.echo,
        connect_args=connect_args(settings),
    )
    if not settings.pgbouncer:
        event.listen(engine.sync_engine.pool, "checkout", _discard_closed)
    return engine


def _discard_closed(
    _dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """The restart check at checkout, without a round trip.

    When PostgreSQL restarts or terminates a backend it sends a FATAL message and closes the
    socket; asyncpg reads that at once (it always reads the socket) and marks the connection
    closed. So a pooled connection left over from before a restart is known to be dead here,
    and raising DisconnectionError makes the pool discard it and check out another. It replaces
    `pool_pre_ping`, which costs three round trips per checkout with asyncpg (BEGIN, a ping,
    ROLLBACK); a connection that dies silently (a network partition) is left to the command
    timeout and the breaker, as it would be mid-query anyway. DB__POOL_PRE_PING turns the full
    ping back on for networks that drop idle connections without a word (some NATs).
    """
    driver: Any = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("connection closed by the server")


@dataclass(frozen=True, slots=True)
class PoolUsage:
    size: int
    checked_out: int
    overflow: int


def pool_usage(engine: AsyncEngine) -> PoolUsage:
    """The pool's counters, for /ready and /metrics (QueuePool API, not on the base Pool)."""
    pool: Any = engine.pool
    if isinstance(pool, NullPool):  # PgBouncer mode: connections are opened per checkout
        return PoolUsage(size=0, checked_out=0, overflow=0)
    return PoolUsage(size=pool.size(), checked_out=pool.checkedout(), overflow=pool.overflow())
