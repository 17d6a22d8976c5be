"""The async engine: URL, pool, timeouts and TLS, all from `DatabaseSettings`.

`create_async_engine` opens no connection, so building the engine cannot fail because the
database is down; that is what lets the service start, report "not ready" and recover by itself
(a failed lifespan startup would stop the whole Gunicorn master, FIELD_NOTES).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

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
    return create_async_engine(
        url,
        **pool,
        # Bound parameters can hold personal data; keep them out of production error messages.
        hide_parameters=hide_parameters,
        echo=settings.echo,
        connect_args=connect_args(settings),
    )


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
