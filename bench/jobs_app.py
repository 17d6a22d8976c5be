"""What bench/jobs.py measures: a one-row write with and without a job enqueued in its
transaction, and two jobs (one that does nothing, one that notes when it started)."""

from __future__ import annotations

import time
import uuid  # example-only
from typing import Any

from fastapi import APIRouter, FastAPI, status
from pydantic import BaseModel
from sqlalchemy import text

from app.auth.policy import PUBLIC
from app.db.session import DbSession
from app.factory import add_routes, create_app
from app.items.jobs import PUBLISH, PublishItem  # example-only
from app.items.models import Item  # example-only
from app.items.schemas import ItemPublic  # example-only
from app.jobs.definitions import Job, JobContext
from app.jobs.queue import Jobs
from devtools.pgcluster import APP_USER


class Empty(BaseModel):
    pass


class Stamp(BaseModel):
    number: int


async def nothing(_: Empty, __: JobContext) -> None:
    pass


async def stamp(payload: Stamp, context: JobContext) -> None:
    await context.session.execute(
        text("INSERT INTO bench_job_starts (number, started) VALUES (:n, :t)"),
        {"n": payload.number, "t": time.time()},
    )


NOOP = Job("bench.nothing", Empty, nothing)
STAMP = Job("bench.stamp", Stamp, stamp)
JOBS: list[Job[Any]] = [NOOP, STAMP]
TABLES = (
    "CREATE TABLE bench_writes (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE bench_job_starts (number int PRIMARY KEY, started double precision NOT NULL);"
    f"ALTER TABLE bench_writes OWNER TO {APP_USER};"
    f"ALTER TABLE bench_job_starts OWNER TO {APP_USER};"
)

router = APIRouter(prefix="/bench")


@router.post("/writes", status_code=status.HTTP_201_CREATED, openapi_extra=PUBLIC)
async def write(session: DbSession, jobs: Jobs, job: bool = False) -> dict[str, bool]:
    await session.execute(text("INSERT INTO bench_writes DEFAULT VALUES"))
    if job:
        await jobs.enqueue(NOOP, Empty())
    return {"job": job}


# example-only
@router.post("/items", status_code=status.HTTP_201_CREATED, openapi_extra=PUBLIC)
async def create_item(session: DbSession, jobs: Jobs, job: bool = False) -> ItemPublic:
    """What `ItemService.create` does (an item added, flushed, its job enqueued), with the job
    or without; a new name each time."""
    item = Item(name=f"bench {uuid.uuid4().hex}", description="a row to read")
    session.add(item)
    await session.flush()
    if job:
        await jobs.enqueue(PUBLISH, PublishItem(item_id=item.id))
    return ItemPublic.model_validate(item)


# /example-only
def create_bench_app() -> FastAPI:
    """The service with the benchmark's route, for Gunicorn's factory form
    (`bench.jobs_app:create_bench_app()`)."""
    app = create_app()
    add_routes(app, router)
    return app
