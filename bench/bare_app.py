"""The baseline for `make bench`: bare FastAPI and raw asyncpg, no middleware, no ORM.

Same endpoints, same query, same driver and TLS as the service, served by the same Gunicorn
config, so the ratio measures what the template's stack costs.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request

from app.api.health import Health
from app.db.tls import build_ssl_context
from app.settings import SslMode


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    ssl = build_ssl_context(SslMode(os.environ["DB__SSLMODE"]), Path(os.environ["DB__SSLROOTCERT"]))
    pool = await asyncpg.create_pool(url, ssl=ssl, min_size=5, max_size=10)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None)


@app.get("/health", response_model=Health)
async def health() -> Health:
    return Health()  # the service's own endpoint body, without the service around it


@app.get("/api/v1/items/{item_id}")
async def get_item(item_id: int, request: Request) -> dict[str, Any]:
    pool: asyncpg.Pool = request.state.pool
    row = await pool.fetchrow(
        "SELECT id, name, description, created_at, updated_at FROM items WHERE id = $1", item_id
    )
    if row is None:
        raise HTTPException(404)
    return dict(row)
