"""The baselines for `make bench`: bare FastAPI with raw asyncpg, and with the usual ORM path.

Same endpoints, same query, same driver and TLS as the service (`lab/stack_app.py`), served by
the same Gunicorn config, so the ratios measure what the template's stack costs.
`/orm/rows/{id}` is what most templates do for a read: an ORM session per request in a
transaction, `pool_pre_ping` on.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.api.health import Health
from app.db.tls import build_ssl_context
from app.settings import SslMode
from lab.rows import ROWS, SQL, RowPublic


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __table__ = ROWS


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    ssl = build_ssl_context(SslMode(os.environ["DB__SSLMODE"]), Path(os.environ["DB__SSLROOTCERT"]))
    pool = await asyncpg.create_pool(url, ssl=ssl, min_size=5, max_size=10)
    engine = create_async_engine(
        os.environ["DATABASE_URL"], pool_size=10, pool_pre_ping=True, connect_args={"ssl": ssl}
    )
    try:
        yield {"pool": pool, "sessions": async_sessionmaker(engine, expire_on_commit=False)}
    finally:
        await pool.close()
        await engine.dispose()


app = FastAPI(lifespan=lifespan, openapi_url=None)


@app.get("/health", response_model=Health)
async def health() -> Health:
    return Health()  # the service's own endpoint body, without the service around it


@app.get("/bench/rows/{row_id}")
async def get_row(row_id: int, request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.state.pool
    row = await pool.fetchrow(SQL, row_id)
    if row is None:
        raise HTTPException(404)
    return dict(row)


@app.get("/orm/rows/{row_id}")
async def get_row_orm(row_id: int, request: Request) -> RowPublic:
    sessions: async_sessionmaker[AsyncSession] = request.state.sessions
    async with sessions() as session, session.begin():
        row = await session.get(Row, row_id)
    if row is None:
        raise HTTPException(404)
    return RowPublic.model_validate(row)
