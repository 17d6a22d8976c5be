"""Alembic environment: the same settings, URL and TLS context as the service itself.

Run with `alembic upgrade head` (the URL comes from `DATABASE_URL` and the `DB__*` settings), or
programmatically with `config.attributes["settings"]` set to a `Settings` object.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

import app.domains
import app.idempotency.models  # noqa: F401 - the stored answers' table
from app.db.base import Base
from app.db.engine import connect_args
from app.settings import Settings, load_settings

config = context.config
target_metadata = Base.metadata


# jobs-only
def _compared(name: str | None, type_: str, parents: object) -> bool:
    """The job queue's tables are pgqueuer's, created by their own migration: autogenerate must
    neither drop them nor compare them with a model."""
    return not (type_ == "table" and name is not None and name.startswith("pgqueuer"))


# /jobs-only


def _settings() -> Settings:
    given = config.attributes.get("settings")
    return given if isinstance(given, Settings) else load_settings()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=_compared,  # jobs-only
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(settings: Settings) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 - only online

    url = settings.database_url_object()
    if url is None:
        raise SystemExit("DATABASE_URL is not set; nothing to migrate.")
    # DDL on a big table may legitimately outlast the request-sized timeouts.
    args = connect_args(settings.db.model_copy(update={"statement_timeout_ms": 0}))
    args["command_timeout"] = None
    engine = create_async_engine(url, poolclass=NullPool, connect_args=args)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    url = _settings().database_url_object()
    context.configure(
        url=url.render_as_string(hide_password=False) if url else "postgresql+asyncpg://",
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online(_settings()))
