"""`DbSession`: the one way a request reaches the database.

A request that changes things (POST, PUT, PATCH, DELETE) gets a session in one transaction,
committed when the endpoint returns and rolled back when anything raised; repositories and
services only `flush()`. A GET or HEAD gets a session whose statements run without BEGIN and
COMMIT (two round trips fewer for the usual one-statement read) and that refuses to write.
Both are guarded the same way (`app/db/guard.py`): breaker, connection gate, infrastructure
failures as 503/504.

The dependency has `scope="function"` so the commit happens before the response is sent: a
commit that fails must reach the client as an error, not after a 201 it already has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from app.db.database import SessionMakers, database_of
from app.db.guard import guarded

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    database = database_of(request)
    sessions = database.sessions_for_current_span()
    async with guarded(database):
        if request.method in READ_ONLY_METHODS:
            async with sessions.read() as session:
                yield session
        else:
            async with sessions.write() as session, session.begin():
                yield session


DbSession = Annotated[AsyncSession, Depends(_session, scope="function")]


class ReadOnlyRequest(RuntimeError):
    """A GET or HEAD tried to write: it has no transaction to make the write safe."""


def session_makers(engine: AsyncEngine) -> SessionMakers:
    return SessionMakers(write=write_sessions(engine), read=read_only_sessions(engine))


def write_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions in a READ COMMITTED transaction (PostgreSQL's default level), whatever the
    pool's connections idle in (autocommit, app/db/engine.py)."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="READ COMMITTED"), expire_on_commit=False
    )


def read_only_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that refuse to write, on the pool's own isolation level.

    In autocommit each statement runs on its own, without BEGIN and COMMIT. In PostgreSQL's
    default READ COMMITTED each statement of a transaction sees its own snapshot anyway, so
    reads lose nothing; a write would lose its atomicity, hence the refusal.
    """
    refusing = sessionmaker()
    event.listen(refusing, "before_flush", _refuse_flush)
    event.listen(refusing, "do_orm_execute", _refuse_dml)
    return async_sessionmaker(engine, sync_session_class=refusing, expire_on_commit=False)


def _refuse_flush(session: Session, *_: object) -> None:
    raise ReadOnlyRequest("A GET or HEAD request cannot write; use POST, PUT, PATCH or DELETE.")


def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        _refuse_flush(state.session)
