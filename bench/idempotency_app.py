"""What bench/idempotency.py measures besides the example: a one-row write that takes an
`Idempotency-Key` (optional, so the same route serves the requests without one)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, status
from sqlalchemy import text

from app.auth.policy import PUBLIC
from app.db.session import DbSession
from app.factory import add_routes, create_app
from app.idempotency.dependency import Idempotent, IdempotentRoute
from devtools.pgcluster import APP_USER

TABLES = (
    "CREATE TABLE bench_keyed_writes (id bigserial PRIMARY KEY,"
    " at timestamptz NOT NULL DEFAULT now());"
    f"ALTER TABLE bench_keyed_writes OWNER TO {APP_USER};"
)

router = APIRouter(prefix="/bench", route_class=IdempotentRoute)


@router.post("/keyed-writes", status_code=status.HTTP_201_CREATED, openapi_extra=PUBLIC)
async def write(session: DbSession, _: Idempotent) -> dict[str, int]:
    written = await session.scalar(
        text("INSERT INTO bench_keyed_writes DEFAULT VALUES RETURNING id")
    )
    return {"id": int(written or 0)}


def create_bench_app() -> FastAPI:
    """The service with the benchmark's route, for Gunicorn's factory form
    (`bench.idempotency_app:create_bench_app()`)."""
    app = create_app()
    add_routes(app, router)
    return app
