"""Test-only jobs and routes for the job queue, so its tests never depend on the example.

`test.record` writes one row per successful run into `test_job_runs`, in the job's own
transaction, after sleeping and failing as its payload asks; `test_job_starts` gets a row per
start on a connection of its own, so a run that was killed still shows. The routes enqueue it
and then commit, raise, or fail at COMMIT (a deferred unique constraint).
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.policy import PUBLIC
from app.db.session import DbSession
from app.jobs.definitions import Job, JobContext, Schedule
from app.jobs.queue import Jobs
from devtools.pgcluster import APP_USER, PgCluster

TABLES = ("test_job_runs", "test_job_starts", "test_deferred")
QUEUE_TABLES = ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics", "pgqueuer_schedules")


def create_tables(cluster: PgCluster, database: str = "app") -> None:
    cluster.psql(
        "CREATE TABLE IF NOT EXISTS test_job_runs (key text NOT NULL, attempt int NOT NULL,"
        " pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());"
        "CREATE TABLE IF NOT EXISTS test_job_starts (key text NOT NULL, attempt int NOT NULL,"
        " pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());"
        "CREATE TABLE IF NOT EXISTS test_deferred (v int UNIQUE DEFERRABLE INITIALLY DEFERRED);"
        + "".join(f"ALTER TABLE {table} OWNER TO {APP_USER};" for table in TABLES),
        database,
    )


class Record(BaseModel):
    key: str
    sleep_s: float = 0
    # Runs that raise before one succeeds.
    fail_runs: int = 0


async def record(payload: Record, context: JobContext) -> None:
    engine = context.session.bind
    assert isinstance(engine, AsyncEngine)
    async with engine.connect() as own:  # not the job's transaction: kept if the run is killed
        await own.execute(
            text("INSERT INTO test_job_starts (key, attempt, pid) VALUES (:k, :a, :p)"),
            {"k": payload.key, "a": context.attempt, "p": os.getpid()},
        )
        await own.commit()
    await asyncio.sleep(payload.sleep_s)
    if context.attempt <= payload.fail_runs:
        raise RuntimeError(f"failing run {context.attempt} on purpose")
    await context.session.execute(
        text("INSERT INTO test_job_runs (key, attempt, pid) VALUES (:k, :a, :p)"),
        {"k": payload.key, "a": context.attempt, "p": os.getpid()},
    )


RECORD = Job("test.record", Record, record)  # JOBS__TIMEOUT_SECONDS
JOBS = [RECORD]


async def tick(session: AsyncSession) -> None:
    await session.execute(
        text("INSERT INTO test_job_runs (key, attempt, pid) VALUES ('tick', 1, :p)"),
        {"p": os.getpid()},
    )


# Every 2 seconds (croniter's sixth field is seconds); on when TEST_JOBS_TICK is set.
TICK = Schedule("test.tick", "* * * * * */2", tick)


class Enqueue(Record):
    then: Literal["commit", "raise", "fail_commit"] = "commit"


router = APIRouter(prefix="/_test/jobs")


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=PUBLIC)
async def enqueue(body: Enqueue, jobs: Jobs, session: DbSession) -> dict[str, int]:
    job_id = await jobs.enqueue(RECORD, Record.model_validate(body.model_dump(exclude={"then"})))
    if body.then == "raise":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "rolled back on purpose")
    if body.then == "fail_commit":
        # Checked at COMMIT: the response must be the commit's error, and the job never exist.
        await session.execute(text("INSERT INTO test_deferred (v) VALUES (1), (1)"))
    return {"job_id": job_id}
